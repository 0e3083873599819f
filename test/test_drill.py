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
Closed-loop drill core on the real gym-pusht world.

Determinism, pairing, the monitor scoring afterwards and stops read from twins as stepping
gives them, the filter's guarantees over every executed step, faults across chunks (mean_std and
min_max unnormalizers), policy faults, and the measures.
"""
import dataclasses

from drill_support import outcome, SHORT
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.drill.conditions import (action_normalizer, ChunkFault,
                                                     parse_condition, parse_conditions)
from vla_safety_filter.core.drill.measures import (mcnemar_exact, roc_curve, score_aurocs,
                                                   wilson_interval)
from vla_safety_filter.core.drill.policies import make_policy, PolicyFault
from vla_safety_filter.core.drill.runner import (check_settings, DrillSettings, DrillSetup,
                                                 EpisodeRunner, run_drill, run_drill_parallel,
                                                 summarize)
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.execspec import Metadata
from vla_safety_filter.core.faults import action_range, FAULT_FAMILIES, inject
from vla_safety_filter.core.monitors import AlarmScan

pytest.importorskip('gym_pusht')


def test_same_seed_gives_identical_episodes(pusht_drill):
    first, _ = pusht_drill('none,drift+filter,noise+filter+stop', seed=7)
    second, _ = pusht_drill('none,drift+filter,noise+filter+stop', seed=7)
    for a, b in zip(first, second):
        assert (a.seed, a.condition, a.success, a.cost) == (b.seed, b.condition, b.success, b.cost)
        assert np.array_equal(a.executed, b.executed) and np.array_equal(a.raw, b.raw)
        assert np.array_equal(a.states, b.states)


def test_conditions_are_paired_seed_by_seed(pusht_drill):
    episodes, _ = pusht_drill('none,filter,offset', episodes=3, seed=11)
    by = {c: [ep for ep in episodes if ep.condition == c] for c in ('none', 'filter', 'offset')}
    for eps in by.values():
        assert [ep.seed for ep in eps] == [11, 12, 13]
    for k in range(3):
        # the same start: the policy's first request is answered identically in every condition
        # (the offset fault starts at 2 s, after the first chunk)
        first = [np.asarray(by[c][k].raw[:8]) for c in by]
        assert all(np.array_equal(first[0], f) for f in first[1:])
    # different seeds start differently
    assert not np.array_equal(by['none'][0].raw[:8], by['none'][1].raw[:8])


PASSIVE = 'none,filter,drift,offset+filter,nan,nan+filter,unnormalized'


def _equal_to_the_stepped_monitor(world, demos, safety, conditions: str):
    """
    Yield each condition's episodes on seeds 2 and 9, asserted equal to the stepped monitor's.

    The two run as one block (run_all: the monitor scores them together), as the drill's
    workers run their seeds.
    """
    settings = DrillSettings(episodes=1, seed=0, conditions=tuple(parse_conditions(conditions)),
                             max_steps=SHORT)
    runner = EpisodeRunner(world, make_policy(f'nn:{demos}'), safety, settings)
    for condition in settings.conditions:
        for seed, episode in zip((2, 9), runner.run_all(condition, [2, 9])):
            live = runner.run(condition, seed, live_monitor=True)
            assert outcome(episode) == outcome(live), condition.name
            for name in ('raw', 'executed', 'states'):
                np.testing.assert_array_equal(getattr(episode, name), getattr(live, name))
            yield episode


def test_the_monitor_scoring_afterwards_equals_it_step_by_step(pusht_world, pusht_demos,
                                                               pusht_safety):
    """
    Without +stop the monitor runs after the episode: the same results as interleaved.

    Alarms, costs by kind, whole and first-steps summaries and every step are identical to the
    run with the monitor stepped beside the world, on the same seeds.
    """
    alarms = charged = 0
    for after in _equal_to_the_stepped_monitor(pusht_world, pusht_demos, pusht_safety, PASSIVE):
        alarms += len(after.whole['alarms'])
        charged += after.cost > 0
    assert alarms > 0 and charged > 0  # the faults did raise alarms and costs to compare


STOPPING = 'filter+stop,drift+filter+stop,spike+filter+stop,nan+filter+stop,scale+filter+stop'


def test_a_stop_found_by_scanning_chunks_equals_the_stepped_monitors(pusht_world, pusht_demos,
                                                                     pusht_safety):
    """
    Under +stop the first alarm is found chunk by chunk ahead: the episodes of stepping it.

    The same stop step (the episode ends there), alarms, costs, summaries and every step as
    with the monitor stepped beside the world, on the same seeds.
    """
    stopped = sum(scanned.stopped for scanned in _equal_to_the_stepped_monitor(
        pusht_world, pusht_demos, pusht_safety, STOPPING))
    assert stopped >= 3   # alarms did stop episodes (at the step stepping stops them)


TWINS = 'filter,drift+filter,spike+filter,nan+filter,scale+filter'   # STOPPING's twins


def _same_episodes(first, second) -> None:
    """Assert two lists of episodes equal: outcomes, summaries and every step."""
    assert [outcome(ep) for ep in first] == [outcome(ep) for ep in second]
    for a, b in zip(first, second):
        for name in ('raw', 'executed', 'states'):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_a_stop_read_from_the_twin_equals_the_scanned_stop(pusht_drill, monkeypatch):
    """
    With its twin in the drill a +stop episode takes the stop from the twin's, scanning nothing.

    The +stop episodes are those of the drill without the twins (scanned chunk by chunk), in
    the drill's order whatever the order of the conditions, and alarms did stop them early.
    """
    scanned, _ = pusht_drill(STOPPING, episodes=3, seed=4)

    def no_scan(*_):
        raise AssertionError('a +stop episode with a twin scanned its chunks')
    monkeypatch.setattr(AlarmScan, 'scan', no_scan)
    both, drill = pusht_drill(f'{STOPPING},{TWINS}', episodes=3, seed=4)
    assert [ep.condition for ep in both] == [c.name for c in drill.conditions for _ in range(3)]
    _same_episodes(scanned, both[:len(scanned)])
    stops = [ep.n_steps for ep in scanned if ep.stopped]
    assert len(stops) >= 5 and min(stops) < SHORT // 2   # alarms did stop episodes there


def test_workers_take_stops_from_twins(pusht_world, pusht_demos, pusht_safety):
    """Worker processes send a +stop block after its twin's: the episodes one process scans."""
    conditions = f'{TWINS},{STOPPING}'
    drill = DrillSettings(episodes=3, seed=4, conditions=tuple(parse_conditions(conditions)),
                          max_steps=SHORT)
    parallel = run_drill_parallel(DrillSetup('pusht', f'nn:{pusht_demos}'), pusht_safety,
                                  drill, 2)
    alone = dataclasses.replace(drill, conditions=tuple(parse_conditions(STOPPING)))
    serial = run_drill(pusht_world, make_policy(f'nn:{pusht_demos}'), pusht_safety, alone)
    _same_episodes(serial, parallel[-len(serial):])
    assert sum(ep.stopped for ep in serial) >= 5


class Unrepeatable:
    """The nn policy, but its second reply in the n-th episode of a seed is `replies[n]`."""

    name = 'unrepeatable'

    def __init__(self, inner, replies: dict):
        self.inner, self.replies, self.episodes, self.calls = inner, replies, {}, 0

    def reset(self, seed, task):
        self.episodes[seed] = self.episodes.get(seed, 0) + 1
        self.seed, self.calls = seed, 0
        self.inner.reset(seed, task)

    def act(self, observation):
        self.calls += 1
        chunk = self.inner.act(observation)
        reply = self.replies.get(self.episodes[self.seed]) if self.calls == 2 else None
        if reply == 'fail':
            raise PolicyFault('server unreachable')
        return chunk + 150.0 if reply == 'jump' else chunk

    def close(self):
        pass


@pytest.mark.parametrize('replies', [{1: 'jump'}, {2: 'jump'}, {1: 'fail', 2: 'jump'}])
def test_a_stop_episode_parting_from_its_twin_scans_its_own(pusht_world, pusht_demos,
                                                            pusht_safety, replies):
    """
    A policy that does not repeat itself: a +stop episode stops on its own actions' alarms.

    The twin (each seed's first episode) or the +stop episode jumps 150 px at step 8, or the
    twin ends there on a policy fault: the +stop episodes are those scanned after a condition
    that is no twin, not the twin's stops.
    """
    def drill(conditions: str) -> list:
        settings = DrillSettings(episodes=3, seed=0, max_steps=SHORT,
                                 conditions=tuple(parse_conditions(conditions)))
        policy = Unrepeatable(make_policy(f'nn:{pusht_demos}'), replies)
        return run_drill(pusht_world, policy, pusht_safety, settings)
    with_twins, scanned = drill('filter,filter+stop'), drill('none,filter+stop')
    _same_episodes(scanned[3:], with_twins[3:])
    twins, stops = with_twins[:3], with_twins[3:]
    assert all(bool(ep.policy_fault) == (replies.get(1) == 'fail') for ep in twins)
    assert all((ep.whole['first_alarm_step'] is None) == (replies.get(1) != 'jump')
               for ep in twins)
    jumps = replies.get(2) == 'jump'   # the +stop episodes' own alarms stop them
    assert all(ep.stopped == jumps and (ep.n_steps <= 10 if jumps else ep.n_steps == SHORT)
               for ep in stops)


FILTERED = 'filter,drift+filter,offset+filter,spike+filter,unnormalized+filter,scale+filter'


def test_filter_keeps_every_executed_command_in_the_contract(pusht_world, pusht_safety,
                                                             pusht_drill):
    """
    Keep every executed command within the contract over elapsed (simulated) time.

    Each step moves at most vmax * dt from the last executed command (the first from the
    measured start), and the distance outside the bounds never grows and shrinks at the
    velocity limit until the command is inside.
    """
    c = pusht_safety.contract
    vstep = c.max_velocity * c.dt * (1 + 1e-9) + 1e-9
    episodes, _ = pusht_drill(FILTERED, episodes=2, seed=3)
    moved_by_filter = 0
    for ep in episodes:
        start = pusht_world.reset(ep.seed)[:2]
        executed = np.vstack([start, ep.executed])
        assert np.all(np.abs(np.diff(executed, axis=0)) <= vstep), ep.condition
        outside = np.maximum(c.lower - executed, 0) + np.maximum(executed - c.upper, 0)
        assert np.all(outside[1:] <= np.maximum(outside[:-1] - c.max_step(), 0) + 1e-9)
        moved_by_filter += int(np.any(np.asarray(ep.raw) != np.asarray(ep.executed)))
    assert moved_by_filter > 0  # the faults did ask for more than the contract allows


def test_without_the_filter_faults_reach_the_world(pusht_drill):
    (ep,), _ = pusht_drill('unnormalized', episodes=1, seed=3)
    raw, executed = np.asarray(ep.raw), np.asarray(ep.executed)
    assert np.array_equal(raw, executed)
    assert np.all(np.abs(executed[20:]) < 10)  # normalized units: the pusher heads for a corner


def test_stop_on_alarm_latches_the_filter_and_ends_the_episode(pusht_drill):
    episodes, _ = pusht_drill('nan+filter+stop,nan+filter,nan', episodes=1, seed=5)
    stopped, filtered, plain = episodes
    assert stopped.stopped and not stopped.success and stopped.n_steps < SHORT
    assert stopped.whole['alarm_counts'].get('nonfinite') == 1
    assert not filtered.stopped and filtered.n_steps == SHORT
    # without the filter the world refuses the non-finite commands itself, at a cost
    assert plain.cost_by_kind.get('world.nonfinite_command', 0) > 0
    assert np.all(np.isfinite(plain.executed))


class FaultyPolicy:
    """A policy whose k-th reply is bad in one way (the rest are the nn policy's)."""

    name = 'faulty'

    def __init__(self, inner, bad, at=2):
        self.inner, self.bad, self.at, self.count = inner, bad, at, 0

    def reset(self, seed, task):
        self.count = 0
        self.inner.reset(seed, task)

    def act(self, observation):
        self.count += 1
        chunk = self.inner.act(observation)
        if self.count < self.at:
            return chunk
        if self.bad == 'raise':
            raise PolicyFault('server unreachable')
        return {'nan': chunk * np.nan, 'shape': chunk[:, :1], 'text': 'error'}[self.bad]

    def close(self):
        pass


@pytest.mark.parametrize('bad', ['raise', 'nan', 'shape', 'text'])
def test_a_bad_policy_reply_is_a_policy_fault_not_a_crash(pusht_world, pusht_demos, pusht_safety,
                                                          bad):
    policy = FaultyPolicy(make_policy(f'nn:{pusht_demos}'), bad)
    settings = DrillSettings(episodes=1, seed=0, conditions=(parse_condition('filter'),),
                             max_steps=SHORT)
    ep = EpisodeRunner(pusht_world, policy, pusht_safety, settings).run(settings.conditions[0], 0)
    assert ep.policy_fault and not ep.success and ep.n_steps == 8
    report = summarize([ep], settings, pusht_safety.costs.budget, pusht_world.dt)
    assert report['filter']['policy_faults'] == 1


def test_replan_every_asks_the_policy_more_often(pusht_world, pusht_demos, pusht_safety):
    calls = []

    class Counting(FaultyPolicy):

        def act(self, observation):
            calls.append(1)
            return self.inner.act(observation)

    policy = Counting(make_policy(f'nn:{pusht_demos}'), None)
    for every in (None, 2):
        calls.clear()
        settings = DrillSettings(episodes=1, seed=0, conditions=(parse_condition('none'),),
                                 max_steps=20, replan_every=every)
        EpisodeRunner(pusht_world, policy, pusht_safety, settings).run(settings.conditions[0], 1)
        assert len(calls) == (3 if every is None else 10)


# ---- faults across chunks --------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(family=st.sampled_from(FAULT_FAMILIES),
       at=st.integers(0, 30), seed=st.integers(0, 2**16),
       lengths=st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_a_fault_on_chunks_equals_the_fault_on_the_whole_stream(family, at, seed, lengths):
    """Chunk by chunk as they arrive, each family corrupts exactly as on the recorded stream."""
    rng = np.random.default_rng(seed)
    stream = rng.normal(size=(sum(lengths) + 31, 2)) * 50 + 250
    mu, sigma = np.array([250.0, 250.0]), np.array([50.0, 40.0])
    fault = ChunkFault(family, at, seed, mu, sigma, 0.1)
    out, t0 = [], 0
    for n in lengths:
        out.append(fault.apply(stream[t0:t0 + n], t0))
        t0 += n
    got = np.concatenate(out)
    if at < t0:
        expected, _ = inject(stream[:t0], family, at, seed, action_range(sigma), mu, 0.1)
    else:
        expected = stream[:t0]
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(expected), rtol=0, atol=1e-9)


def test_unnormalized_sends_normalized_units_from_the_onset():
    fault = ChunkFault('unnormalized', 3, 0, [100.0, 200.0], [10.0, 20.0], 0.1)
    out = fault.apply(np.array([[110.0, 220.0]] * 5), 0)
    np.testing.assert_array_equal(out, [[110, 220]] * 3 + [[1, 1]] * 2)


def test_wrong_unnormalizer_uses_the_siblings_statistics_from_the_onset():
    sibling = Metadata('mean_std', np.ones(2, dtype=bool), mean=[300.0, 400.0],
                       std=[30.0, 10.0])
    fault = ChunkFault('wrong-unnormalizer', 2, 0, [100.0, 200.0], [10.0, 20.0], 0.1,
                       sibling=sibling)
    out = fault.apply(np.array([[110.0, 220.0]] * 4), 0)
    np.testing.assert_array_equal(out, [[110, 220]] * 2 + [[330, 410]] * 2)
    with pytest.raises(InputError, match='sibling'):
        ChunkFault('wrong-unnormalizer', 2, 0, [0.0], [1.0], 0.1)


MIN_MAX = action_normalizer([[0.0, 100.0], [512.0, 300.0], [256.0, 150.0]], 'min_max')


def test_min_max_unnormalized_sends_outputs_in_minus_one_to_one():
    """A min_max policy's raw output is 2 (a - min) / (max - min) - 1 from the onset on."""
    fault = ChunkFault('unnormalized', 1, 0, [250.0, 200.0], [50.0, 40.0], 0.1, own=MIN_MAX)
    out = fault.apply(np.array([[0.0, 100.0], [512.0, 300.0], [384.0, 250.0]]), 0)
    np.testing.assert_allclose(out, [[0, 100], [1, 1], [0.5, 0.5]])


def test_min_max_wrong_unnormalizer_maps_onto_the_siblings_range():
    """A sibling's min..max replaces the policy's: the same relative place in another range."""
    sibling = action_normalizer([[100.0, 0.0], [200.0, 10.0]], 'min_max', source='sibling')
    fault = ChunkFault('wrong-unnormalizer', 0, 0, [250.0, 200.0], [50.0, 40.0], 0.1,
                       sibling=sibling, own=MIN_MAX)
    out = fault.apply(np.array([[0.0, 100.0], [256.0, 200.0], [512.0, 300.0]]), 0)
    np.testing.assert_allclose(out, [[100, 0], [150, 5], [200, 10]])


def test_a_sibling_of_another_mode_is_refused():
    mean_std = action_normalizer([[0.0, 1.0], [2.0, 3.0]], 'mean_std', source='sib.npz')
    with pytest.raises(InputError, match='sib.npz.*mean_std.*min_max'):
        ChunkFault('wrong-unnormalizer', 0, 0, [0.0, 0.0], [1.0, 1.0], 0.1, sibling=mean_std,
                   own=MIN_MAX)
    settings = DrillSettings(1, 0, tuple(parse_conditions('wrong-unnormalizer')),
                             sibling=mean_std, own=MIN_MAX)
    with pytest.raises(InputError, match='sibling'):
        check_settings(settings)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=2,
                     max_size=30).filter(lambda r: np.all(np.ptp(np.array(r), axis=0) > 1e-3)))
def test_min_max_outputs_of_the_demonstrations_stay_in_minus_one_to_one(rows):
    """Every demonstration action normalizes into [-1, 1], its min to -1 and its max to 1."""
    actions = np.array(rows)
    fault = ChunkFault('unnormalized', 0, 0, actions.mean(0), actions.std(0) + 1, 0.1,
                       own=action_normalizer(actions, 'min_max'))
    out = fault.apply(actions, 0)
    assert np.all(out >= -1 - 1e-9) and np.all(out <= 1 + 1e-9)
    np.testing.assert_allclose(out.min(axis=0), -1, atol=1e-9)
    np.testing.assert_allclose(out.max(axis=0), 1, atol=1e-9)


@pytest.mark.parametrize('name', ['bogus', 'drift+stop', 'filter+filter', 'none+filter', ''])
def test_unknown_conditions_are_refused(name):
    with pytest.raises(InputError):
        parse_conditions(name)


def test_conditions_parse_into_fault_filter_and_stop():
    got = [(c.fault, c.filtered, c.stop) for c in
           parse_conditions('none,filter,filter+stop,drift,nan+filter,unnormalized+filter+stop')]
    assert got == [(None, False, False), (None, True, False), (None, True, True),
                   ('drift', False, False), ('nan', True, False), ('unnormalized', True, True)]


# ---- measures against hand-computed values ----------------------------------------------------
def test_wilson_interval_matches_the_closed_form():
    # 6 of 20, z = 1.959964: centre (0.3 + z^2/40) / (1 + z^2/20),
    # half z / (1 + z^2/20) * sqrt(0.3 * 0.7 / 20 + z^2 / 1600)
    lo, hi = wilson_interval(6, 20)
    assert lo == pytest.approx(0.145477, abs=1e-6) and hi == pytest.approx(0.518973, abs=1e-6)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_uses_only_discordant_pairs():
    # b = 3 (only baseline), c = 1: p = 2 * (1 + 4) / 16
    test = mcnemar_exact([1, 1, 1, 0, 0, 1], [0, 0, 0, 0, 1, 1])
    assert (test['only_baseline'], test['only_treated']) == (3, 1)
    assert test['p'] == pytest.approx(0.625)
    assert mcnemar_exact([1] * 5, [0] * 5)['p'] == pytest.approx(2 / 32)
    assert mcnemar_exact([1, 0], [1, 0])['p'] == 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_mcnemar_is_symmetric_and_a_probability(pairs):
    a, b = zip(*pairs)
    p = mcnemar_exact(a, b)['p']
    assert 0 < p <= 1 and p == mcnemar_exact(b, a)['p']


def test_auroc_and_roc_against_hand_counts():
    # failed {0.9, 0.3} vs succeeded {0.8, 0.1}: 3 of 4 pairs ordered right
    scores, failed = [0.9, 0.8, 0.3, 0.1], [True, False, True, False]
    assert score_aurocs({'m': scores}, failed) == {'m': 0.75}
    fpr, tpr = roc_curve(scores, failed)
    assert fpr == [0.0, 0.0, 0.5, 0.5, 1.0] and tpr == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert score_aurocs({'m': [1, 2]}, [True, True]) == {'m': None}


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_interval_contains_the_rate(k, n):
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_replay_policy_executes_the_recorded_episode_in_order(pusht_world, pusht_demos,
                                                              pusht_safety):
    settings = DrillSettings(episodes=1, seed=0, conditions=(parse_condition('none'),),
                             max_steps=30)
    policy = make_policy(f'replay:{pusht_demos}')
    runner = EpisodeRunner(pusht_world, policy, pusht_safety, settings)
    ep = runner.run(settings.conditions[0], 207)  # episode 207 % 206 = 1
    with np.load(pusht_demos) as z:
        recorded = z['actions'][z['episode_index'] == 1][:30]
    np.testing.assert_array_equal(np.asarray(ep.executed), recorded)


def test_the_calibrated_contract_stays_inside_the_worlds_workspace(pusht_safety):
    """Whole-episode bounds of the demos reach past 512 px; the world's limits cut them."""
    contract = pusht_safety.contract
    assert np.all(contract.lower >= 0.0) and np.all(contract.upper <= 512.0)
    assert contract.upper.max() == 512.0  # the workspace, not the data, binds here
