# Copyright 2026 vla_safety_filter maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The ALOHA world (gym-aloha, MuJoCo): 14 joints at 50 Hz, seeded episodes, physical costs.

Skipped when gym-aloha is not installed (the `aloha` extra). Uses the real recorded ALOHA sim
episodes (aloha_sim_lerobot_4ep.npz) for the policy and the calibration.
"""
import contextlib
import dataclasses
import io
import json
import os

from data_paths import DATA
import numpy as np
import pytest
from vla_safety_filter.cli import main
from vla_safety_filter.core.drill.conditions import parse_condition, parse_conditions
from vla_safety_filter.core.drill.policies import load_demos, make_policy
from vla_safety_filter.core.drill.runner import (DrillSettings, EpisodeRunner, run_drill,
                                                 safety_from_demos)
from vla_safety_filter.core.drill.worlds import make_world

pytest.importorskip('gym_aloha', reason='gym-aloha (MuJoCo) is not installed: pip install '
                                        '"vla_safety_filter[aloha]"')
ALOHA = os.path.join(DATA, 'aloha_sim_lerobot_4ep.npz')
LEFT_SHOULDER = 1  # action index; its actuator's range is -1.85..1.26 rad


@pytest.fixture(scope='module')
def demos():
    """Return the recorded ALOHA sim episodes (skip without them, fail in CI)."""
    if not os.path.exists(ALOHA):
        if os.environ.get('VLA_REQUIRE_DATA') == '1':
            pytest.fail(f'real data {ALOHA} not found')
        pytest.skip(f'real data {ALOHA} not found')
    return ALOHA


@pytest.fixture(scope='module')
def world():
    """Yield one ALOHA transfer-cube world for the module."""
    w = make_world('aloha')
    yield w
    w.close()


@pytest.fixture(scope='module')
def safety(demos, world):
    """Return the contract and monitor calibration of the recorded episodes."""
    return safety_from_demos(demos, world)


class Reaching:
    """A policy that always asks for the recorded start pose with the left shoulder at `angle`."""

    name = 'reaching'

    def __init__(self, start: np.ndarray, angle: float):
        self.target = start.copy()
        self.target[LEFT_SHOULDER] = angle

    def reset(self, seed, task):
        """Keep nothing between episodes."""

    def act(self, observation):
        """Return a chunk of 10 identical targets."""
        return np.repeat(self.target[None, :], 10, axis=0)

    def close(self):
        """Release nothing."""


def test_the_world_has_14_joints_at_50_hz_and_a_seed_repeats_its_episode(world, demos):
    actions, _, episodes = load_demos(demos)
    recorded = actions[episodes == 2][:40]
    runs = []
    for _ in range(2):
        start = world.reset(7)
        runs.append([start] + [world.step(a).state for a in recorded])
    assert len(world.action_names) == 14 and world.dt == 0.02
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    moved = np.abs(np.array(runs[0])[-1] - runs[0][0])
    assert moved.max() > 0.01  # the arms followed the recorded commands


def test_filter_keeps_aloha_commands_within_the_velocity_limit(world, demos, safety):
    """Over elapsed time, under an offset fault, every executed step is within vmax * dt."""
    settings = DrillSettings(episodes=1, seed=1, conditions=tuple(parse_conditions(
        'offset,offset+filter')), max_steps=60, fault_at_s=0.2)
    plain, filtered = run_drill(world, make_policy(f'nn:{demos}'), safety, settings)
    vstep = safety.contract.max_velocity * world.dt * (1 + 1e-9) + 1e-9
    executed = np.vstack([world.reset(1), filtered.executed])
    assert np.all(np.abs(np.diff(executed, axis=0)) <= vstep)
    raw = np.vstack([world.reset(1), plain.executed])
    assert np.any(np.abs(np.diff(raw, axis=0)) > vstep)  # the fault did jump without the filter


def test_joint_limit_hits_are_a_physical_cost_the_filter_removes(world, demos, safety):
    """
    Charge a shoulder commanded beyond its range every step; a 1.2 rad contract removes it.

    With the filter, every command stays inside the contract and the cost is zero.
    """
    start = load_demos(demos)[1][0]
    policy = Reaching(start, angle=2.0)
    upper = safety.contract.upper.copy()
    upper[LEFT_SHOULDER] = 1.2
    tight = dataclasses.replace(safety, contract=dataclasses.replace(safety.contract,
                                                                     upper=upper))
    outcomes = {}
    for name, guard in (('none', safety), ('filter', tight)):
        settings = DrillSettings(episodes=1, seed=0, conditions=(parse_condition(name),),
                                 max_steps=50)
        outcomes[name] = EpisodeRunner(world, policy, guard, settings).run(
            settings.conditions[0], 0)
    assert outcomes['none'].cost_by_kind['world.joint_limit'] == pytest.approx(50 * 1.0)
    assert 'world.joint_limit' not in outcomes['filter'].cost_by_kind
    assert np.all(outcomes['filter'].executed[:, LEFT_SHOULDER] <= 1.2 + 1e-9)


def test_the_drill_command_runs_aloha_with_the_recorded_episodes(tmp_path, demos):
    out = tmp_path / 'out'
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(['drill', '--world', 'aloha', '--policy', f'replay:{demos}', '--episodes',
                     '1', '--max-steps', '25', '--conditions', 'none,filter', '--no-plots',
                     '--output', str(out)])
    assert code == 0, stderr.getvalue()
    report = json.loads((out / 'drill.json').read_text())
    assert report['world'] == 'aloha' and report['conditions']['filter']['n'] == 1
    with np.load(out / 'episodes.npz') as z:
        assert z['raw_action'].shape == (50, 14) and z['world_state'].shape == (50, 14)


def test_the_calibrated_contract_respects_the_actuator_ranges(safety):
    """Four recorded episodes give wide bounds; the arm joints are cut to their actuators."""
    arm = [j + 7 * side for side in (0, 1) for j in range(6)]
    assert np.all(np.abs(safety.contract.upper[arm]) <= np.pi)
    assert np.all(np.abs(safety.contract.lower[arm]) <= np.pi)
    assert safety.contract.upper[LEFT_SHOULDER] == pytest.approx(1.25664)
