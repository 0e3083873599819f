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
import dataclasses
import json

from drill_support import run_cli
import numpy as np
import pytest
from vla_safety_filter.core.drill.conditions import parse_condition, parse_conditions
from vla_safety_filter.core.drill.policies import load_demos, make_policy
from vla_safety_filter.core.drill.runner import DrillSettings, EpisodeRunner, run_drill

pytest.importorskip('gym_aloha', reason='gym-aloha (MuJoCo) is not installed: pip install '
                                        '"vla_safety_filter[aloha]"')
LEFT_SHOULDER = 1  # action index; its actuator's range is -1.85..1.26 rad


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


def test_the_world_has_14_joints_at_50_hz_and_a_seed_repeats_its_episode(aloha_world, aloha_demos):
    actions, _, episodes = load_demos(aloha_demos)
    recorded = actions[episodes == 2][:40]
    runs = []
    for _ in range(2):
        start = aloha_world.reset(7)
        runs.append([start] + [aloha_world.step(a).state for a in recorded])
    assert len(aloha_world.action_names) == 14 and aloha_world.dt == 0.02
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    moved = np.abs(np.array(runs[0])[-1] - runs[0][0])
    assert moved.max() > 0.01  # the arms followed the recorded commands


def test_filter_keeps_aloha_commands_within_the_velocity_limit(aloha_world, aloha_demos,
                                                               aloha_safety):
    """Over elapsed time, under an offset fault, every executed step is within vmax * dt."""
    settings = DrillSettings(episodes=1, seed=1, conditions=tuple(parse_conditions(
        'offset,offset+filter')), max_steps=60, fault_at_s=0.2)
    policy = make_policy(f'nn:{aloha_demos}')
    plain, filtered = run_drill(aloha_world, policy, aloha_safety, settings)
    vstep = aloha_safety.contract.max_velocity * aloha_world.dt * (1 + 1e-9) + 1e-9
    executed = np.vstack([aloha_world.reset(1), filtered.executed])
    assert np.all(np.abs(np.diff(executed, axis=0)) <= vstep)
    raw = np.vstack([aloha_world.reset(1), plain.executed])
    assert np.any(np.abs(np.diff(raw, axis=0)) > vstep)  # the fault did jump without the filter


def test_joint_limit_hits_are_a_physical_cost_the_filter_removes(aloha_world, aloha_demos,
                                                                 aloha_safety):
    """
    Charge a shoulder commanded beyond its range every step; a 1.2 rad contract removes it.

    With the filter, every command stays inside the contract and the cost is zero.
    """
    start = load_demos(aloha_demos)[1][0]
    policy = Reaching(start, angle=2.0)
    upper = aloha_safety.contract.upper.copy()
    upper[LEFT_SHOULDER] = 1.2
    contract = dataclasses.replace(aloha_safety.contract, upper=upper)
    tight = dataclasses.replace(aloha_safety, contract=contract)
    outcomes = {}
    for name, guard in (('none', aloha_safety), ('filter', tight)):
        settings = DrillSettings(episodes=1, seed=0, conditions=(parse_condition(name),),
                                 max_steps=50)
        outcomes[name] = EpisodeRunner(aloha_world, policy, guard, settings).run(
            settings.conditions[0], 0)
    assert outcomes['none'].cost_by_kind['world.joint_limit'] == pytest.approx(50 * 1.0)
    assert 'world.joint_limit' not in outcomes['filter'].cost_by_kind
    assert np.all(outcomes['filter'].executed[:, LEFT_SHOULDER] <= 1.2 + 1e-9)


def test_the_drill_command_runs_aloha_with_the_recorded_episodes(tmp_path, aloha_demos):
    out = tmp_path / 'out'
    code, _, err = run_cli('drill', '--world', 'aloha', '--policy', f'replay:{aloha_demos}',
                           '--episodes', '1', '--max-steps', '25', '--conditions', 'none,filter',
                           '--no-plots', '--output', str(out))
    assert code == 0, err
    report = json.loads((out / 'drill.json').read_text())
    assert report['world'] == 'aloha' and report['conditions']['filter']['n'] == 1
    with np.load(out / 'episodes.npz') as z:
        assert z['raw_action'].shape == (50, 14) and z['world_state'].shape == (50, 14)


def test_the_calibrated_contract_respects_the_actuator_ranges(aloha_safety):
    """Four recorded episodes give wide bounds; the arm joints are cut to their actuators."""
    arm = [j + 7 * side for side in (0, 1) for j in range(6)]
    assert np.all(np.abs(aloha_safety.contract.upper[arm]) <= np.pi)
    assert np.all(np.abs(aloha_safety.contract.lower[arm]) <= np.pi)
    assert aloha_safety.contract.upper[LEFT_SHOULDER] == pytest.approx(1.25664)
