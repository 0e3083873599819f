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
Speed-ups of the drill that must change nothing: worker processes, the k-d tree, the coverage.

Worker processes give the same episodes as one process, in the same order; the nearest-neighbour
policy's k-d tree returns the brute-force nearest frame (earliest of ties); the PushT world's
cached, vectorized coverage equals gym-pusht's own to round-off and is the same on every run.
"""
from drill_support import outcome
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.drill.conditions import parse_conditions
from vla_safety_filter.core.drill.policies import load_demos, make_policy, pusht_features
from vla_safety_filter.core.drill.runner import (DrillSettings, DrillSetup, run_drill,
                                                 run_drill_parallel)
from vla_safety_filter.core.drill.worlds import make_world
from vla_safety_filter.core.errors import InputError

pytest.importorskip('gym_pusht')
CONDITIONS = 'none,drift+filter,noise+filter+stop,wrong-unnormalizer'


def test_workers_give_the_same_episodes_as_one_process(pusht_world, pusht_demos, pusht_safety):
    """Two worker processes reproduce the serial drill: outcomes, scores and every step."""
    from vla_safety_filter.core.drill.conditions import action_normalizer
    sibling = action_normalizer(load_demos(pusht_demos)[0][:500] + 40.0, 'mean_std', 'sibling')
    drill = DrillSettings(episodes=3, seed=21, conditions=tuple(parse_conditions(CONDITIONS)),
                          max_steps=60, sibling=sibling)
    serial = run_drill(pusht_world, make_policy(f'nn:{pusht_demos}'), pusht_safety, drill)
    seen = []
    parallel = run_drill_parallel(DrillSetup('pusht', f'nn:{pusht_demos}'), pusht_safety, drill, 2,
                                  progress=lambda ep: seen.append((ep.condition, ep.seed)))
    assert [outcome(ep) for ep in parallel] == [outcome(ep) for ep in serial]
    for a, b in zip(serial, parallel):
        for name in ('raw', 'executed', 'states'):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert sorted(seen) == sorted((ep.condition, ep.seed) for ep in serial)
    assert {ep.n_steps for ep in serial} != {0}


def test_a_bad_policy_name_fails_in_the_caller_not_in_a_worker(pusht_safety):
    drill = DrillSettings(episodes=1, seed=0, conditions=tuple(parse_conditions('none')))
    with pytest.raises(InputError, match='not found'):
        run_drill_parallel(DrillSetup('pusht', 'nn:/nonexistent.npz'), pusht_safety, drill, 2)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_kd_tree_finds_the_brute_force_nearest_frame(pusht_demos, data):
    """Queries at, near and far from demonstration states give the brute-force chunk."""
    policy = make_policy(f'nn:{pusht_demos}')
    actions, states, _ = load_demos(pusht_demos)
    i = data.draw(st.integers(0, len(states) - 1))
    scale = data.draw(st.sampled_from([0.0, 1e-3, 1.0, 30.0, 300.0]))
    noise = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=5, max_size=5)))
    query = (states[i] + scale * noise).astype(np.float32)
    distances = ((pusht_features(states) - pusht_features(query[None, :])) ** 2).sum(axis=1)
    nearest = int(np.argmin(distances))
    chunk = policy.act({'observation.state': query})
    np.testing.assert_array_equal(chunk[0], actions[nearest])


def test_ties_go_to_the_earliest_frame(tmp_path):
    """Duplicate demonstration states: the chunk follows the first of them."""
    states = np.array([[1.0, 2.0, 3.0, 4.0, 0.5]] * 3 + [[9.0, 9.0, 9.0, 9.0, 0.1]] * 2)
    actions = np.arange(10, dtype=np.float64).reshape(5, 2)
    path = tmp_path / 'ties.npz'
    np.savez(path, actions=actions, **{'observation.state': states},
             episode_index=np.array([0, 0, 1, 1, 1]))
    policy = make_policy(f'nn:{path}', horizon=1)
    assert policy.act({'observation.state': states[0]}).tolist() == [[0.0, 1.0]]
    assert policy.act({'observation.state': states[4]}).tolist() == [[6.0, 7.0]]


def test_coverage_equals_gym_pushts_own_and_is_reproducible(pusht_demos):
    """Replay demonstration commands: same physics, same coverage to 1e-12 on two worlds."""
    from gym_pusht.envs import PushTEnv
    plain = PushTEnv(obs_type='state', render_mode='rgb_array')
    worlds = [make_world('pusht'), make_world('pusht')]
    actions, _, episodes = load_demos(pusht_demos)
    covered = []
    for seed, episode in ((0, 3), (5, 17), (9, 40)):
        plain.reset(seed=seed)
        for w in worlds:
            w.reset(seed)
        for command in actions[episodes == episode]:
            state, _, _, _, info = plain.step(command)
            a, b = (w.step(command) for w in worlds)
            np.testing.assert_array_equal(a.state, state)
            assert a.coverage == b.coverage and a.success == b.success == info['is_success']
            assert abs(a.coverage - info['coverage']) <= 1e-12
            covered.append(a.coverage)
    assert max(covered) > 0.05  # the block was pushed onto the goal, not only missed
