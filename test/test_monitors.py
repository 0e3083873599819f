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

"""Action-health metrics: hand-computed cases, streaming == batch, NaN never sticks, bounded."""
import itertools
import os

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.costs import CostModel, DEFAULT_COSTS, ERROR, OK
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.monitors import ActionMonitor, episode_metrics, spectral_low_ratio
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.profiles import get_profile

METRICS = ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'spectral_low_ratio', 'stall_s')
DT = 0.02  # 50 Hz


def calibration(dim, velocity_scale=1.0, scores=None):
    scores = np.linspace(0.0, 3.0, 400) if scores is None else scores
    return CalibrationData(tuple(f'j{i}' for i in range(dim)), np.zeros(dim), np.ones(dim),
                           np.sort(scores), np.full(dim, velocity_scale), 2.9, 0.05, DT)


@pytest.fixture(scope='module')
def aloha(data_file):
    """Return the four real ALOHA episodes and a calibration of all of them."""
    with np.load(data_file('aloha_sim_lerobot_4ep.npz'), allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in range(4)]
    cal = CalibrationData(tuple(f'j{i}' for i in range(14)), actions.mean(0), actions.std(0),
                          np.sort(np.abs((actions - actions.mean(0)) / actions.std(0)).max(1)),
                          np.diff(episodes[0], axis=0).std(0) / DT + 1e-3, 3.0, 0.05, DT)
    return episodes, cal


def run(monitor, actions):
    alarms = []
    for row in actions:
        alarms.extend(monitor.update(row).alarms)
    return alarms


# --- hand-computed metric values (profile generic: window 1 s = 50 steps, deadband 0.1) ----------

def test_reversal_rate_alternating_steps_is_one_and_zero_steps_do_not_count():
    # one joint moving +1, -1, +1, ... (every consecutive pair flips): rate 1 (not D, not > 1)
    zigzag = np.cumsum(np.tile([1.0, -1.0], 40))[:, None] * np.ones((1, 3))
    batch = episode_metrics(zigzag, calibration(3, velocity_scale=10.0), DT)
    assert batch['reversal_rate'][-1] == pytest.approx(1.0)
    # +1, 0, -1, 0, +1 ...: a zero step sits between every sign change -> no eligible pair -> 0
    steps = np.tile([1.0, 0.0, -1.0, 0.0], 20)
    paused = np.cumsum(steps)[:, None] * np.ones((1, 3))
    assert episode_metrics(paused, calibration(3, 10.0), DT)['reversal_rate'][-1] == 0.0


def test_reversal_rate_counts_pairs_by_hand():
    # joint 0 reverses every step, joint 1 moves steadily: 49 flips of 98 eligible pairs per window
    t = np.arange(60)
    actions = np.stack([np.where(t % 2 == 0, 0.0, 1.0), t * 1.0], axis=1)
    rate = episode_metrics(actions, calibration(2, velocity_scale=10.0), DT)['reversal_rate']
    assert rate[-1] == pytest.approx(49 / 98)
    assert np.all((rate >= 0) & (rate <= 1))


def test_jerk_rms_of_a_cubic_by_hand():
    # a = c t^3: third difference is 6 c dt^3 everywhere -> jerk = 6 c / velocity_scale
    c, vs = 2.0, 4.0
    t = np.arange(80) * DT
    actions = np.stack([c * t ** 3, -c * t ** 3], axis=1)
    jerk = episode_metrics(actions, calibration(2, velocity_scale=vs), DT)['jerk_rms']
    assert jerk[-1] == pytest.approx(6 * c / vs, rel=1e-6)


def test_momentum_coherence_straight_line_and_zigzag():
    line = np.arange(70)[:, None] * np.array([[1.0, 2.0]])
    coherence = episode_metrics(line, calibration(2, 10.0), DT)['momentum_coherence']
    assert coherence[-1] == pytest.approx(1.0)
    zigzag = np.cumsum(np.tile([[1.0, 1.0], [-1.0, -1.0]], (35, 1)), axis=0)
    coherence = episode_metrics(zigzag, calibration(2, 10.0), DT)['momentum_coherence']
    assert coherence[-1] == pytest.approx(-1.0)
    still = np.zeros((70, 2))
    assert episode_metrics(still, calibration(2, 10.0), DT)['momentum_coherence'][-1] == 1.0


def test_spectral_ratio_uses_mean_removed_velocity():
    t = np.arange(51) * DT
    slow = np.sin(2 * np.pi * 1.0 * t)[:, None]  # resolution is 1 / window = 1 Hz
    fast = np.sin(2 * np.pi * 8.0 * t)[:, None]
    vs = np.ones(1)
    assert spectral_low_ratio(slow, vs, DT, 2.0) > 0.9
    assert spectral_low_ratio(fast, vs, DT, 2.0) < 0.1
    # a pure ramp has constant velocity: nothing left after the mean is removed -> neutral 1
    assert spectral_low_ratio(3.0 * t[:, None], vs, DT, 2.0) == 1.0
    # a big position offset does not change it (it ran on positions with the mean left in before)
    shifted = spectral_low_ratio(fast + 100.0, vs, DT, 2.0)
    assert shifted == pytest.approx(spectral_low_ratio(fast, vs, DT, 2.0))


def test_stall_alarm_after_configured_time():
    monitor = ActionMonitor(calibration(2, 10.0), DT, get_profile('generic', stall_s=0.5))
    moving = np.arange(60)[:, None] * np.array([[1.0, 1.0]])
    assert run(monitor, moving) == []
    frozen = np.repeat(moving[-1:], 40, axis=0)
    alarms = run(monitor, frozen)
    assert [a.kind for a in alarms] == ['stall']
    assert alarms[0].step == 60 + 25 - 1  # 25 still steps = 0.5 s


# --- streaming equals batch --------------------------------------------------------------------

@pytest.mark.parametrize('episode', [0, 3])
def test_streaming_equals_batch_on_real_aloha(episode, aloha):
    episodes, cal = aloha
    actions = episodes[episode].copy()
    actions[120:124, 5] = np.nan  # a gap inside the episode
    batch = episode_metrics(actions, cal, DT)
    monitor = ActionMonitor(cal, DT)
    rng = np.random.default_rng(episode)
    checks = set(rng.integers(60, len(actions), size=25).tolist()) | {len(actions) - 1}
    for t, row in enumerate(actions):
        monitor.update(row)
        if t in checks:  # irregular flushes: block boundaries must not matter
            live = monitor.window_metrics()
            for name in METRICS:
                assert live[name] == pytest.approx(batch[name][t], rel=1e-9, abs=1e-9), (name, t)
            if np.isfinite(batch['score'][t]):
                assert live['p_value'] == pytest.approx(batch['p_value'][t])


def test_alarm_steps_do_not_depend_on_block_size(aloha):
    episodes, cal = aloha
    actions = np.concatenate([episodes[1], np.repeat(episodes[1][-1:], 120, axis=0)])
    results = []
    for block_s in (0.02, 0.1, 0.34):
        monitor = ActionMonitor(cal, DT, get_profile('generic', block_s=block_s))
        run(monitor, actions)
        results.append(monitor.episode_summary()['alarms'])
    assert results[0] == results[1] == results[2]
    assert any(a['kind'] == 'stall' for a in results[0])
    # alarms raised by a flush that window_metrics() forces come out of the next update()
    monitor = ActionMonitor(cal, DT)
    returned = []
    for t, row in enumerate(actions):
        returned.extend(monitor.update(row).alarms)
        if t % 7 == 3:
            monitor.window_metrics()
    returned.extend(monitor.update(actions[-1]).alarms)
    assert [{'kind': a.kind, 'step': a.step} for a in returned] == results[0]


# --- bad input -----------------------------------------------------------------------------------

def test_nan_is_an_alarm_and_never_sticks(aloha):
    episodes, cal = aloha
    clean = episodes[2]
    dirty = clean.copy()
    dirty[100:103] = np.nan
    dirty[150, 4] = np.inf
    monitor = ActionMonitor(cal, DT)
    alarms = run(monitor, dirty)
    nonfinite = [a for a in alarms if a.kind == 'nonfinite']
    assert [a.step for a in nonfinite] == [100, 150]  # one alarm per burst
    metrics = monitor.window_metrics()
    assert all(np.isfinite(metrics[k]) for k in (*METRICS[:4], 'cusum_statistic'))
    # once the window has passed the gap, the metrics equal those of the clean stream
    reference = ActionMonitor(cal, DT)
    run(reference, clean)
    assert metrics['jerk_rms'] == pytest.approx(reference.window_metrics()['jerk_rms'])
    summary = monitor.episode_summary()
    assert summary['nonfinite_steps'] == 4
    assert all(np.isfinite(v) for v in summary['metric_mean'].values())


def test_wrong_length_action_is_a_shape_alarm():
    monitor = ActionMonitor(calibration(3), DT)
    status = monitor.update([1.0, 2.0])
    assert [a.kind for a in status.alarms] == ['shape']
    assert monitor.update(np.zeros(3)).alarms == ()
    assert [a.kind for a in monitor.update(['x', 'y', 'z']).alarms] == ['shape']


def test_bad_monitor_settings():
    with pytest.raises(InputError, match='dt'):
        ActionMonitor(calibration(2), 0.0)
    with pytest.raises(InputError, match='unknown monitor profile'):
        ActionMonitor(calibration(2), DT, 'nope')
    bad = CalibrationData(('a', 'b'), np.zeros(2), np.ones(2), np.ones(5), np.array([1.0, 0.0]),
                          1.0, 0.05, DT)
    with pytest.raises(InputError, match='velocity_scale'):
        ActionMonitor(bad, DT)


# --- memory, reset, status, cost ------------------------------------------------------------

def test_memory_is_bounded_and_reset_clears_the_episode():
    monitor = ActionMonitor(calibration(2, 10.0), DT)
    rng = np.random.default_rng(0)
    stream = np.cumsum(rng.normal(size=(5000, 2)), axis=0)

    def sizes():
        return {k: v.shape for k, v in vars(monitor).items() if isinstance(v, np.ndarray)}
    run(monitor, stream[:300])
    early = sizes()
    run(monitor, stream[300:])
    assert sizes() == early  # nothing grows with the stream
    assert sum(np.prod(s) for s in early.values()) < 5000
    monitor.reset_episode()
    summary = monitor.episode_summary()
    assert summary['n_steps'] == 0 and summary['alarms'] == [] and summary['cost'] == 0.0


def test_status_levels_and_keys():
    costs = CostModel(budget=3.0)
    monitor = ActionMonitor(calibration(2, 10.0), DT, costs=costs)
    run(monitor, np.arange(60)[:, None] * np.ones((1, 2)))
    level, message, values = monitor.status()
    keys = dict(values)
    assert level == OK and message == 'ok'
    for key in ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'spectral_low_ratio', 'stall_s',
                'p_value', 'cusum_statistic', 'episode_cost', 'level', 'profile'):
        assert isinstance(keys[key], str)
    monitor.update([np.nan, 0.0])
    monitor.update([0.0, 0.0])
    monitor.update([np.nan, 0.0])  # two nonfinite alarms at cost 2 each > budget 3
    level, message, _ = monitor.status()
    assert level == ERROR and 'over budget' in message
    monitor.record_interventions(['position', 'position', 'velocity'])
    assert monitor.budget.by_kind['intervention.position'] == pytest.approx(0.05)


def test_a_steps_interventions_are_charged_in_the_order_given():
    # a set's order follows the string hash seed: charged in it, the cost's float sum and the
    # order of its kinds (cost_by_kind in reports) could differ between processes
    names = ['position', 'velocity', 'acceleration', 'hold']
    given = next(list(p) for p in itertools.permutations(names) if list(set(p)) != list(p))
    monitor = ActionMonitor(calibration(2), DT)
    monitor.record_interventions(given + given[:1])
    assert list(monitor.budget.by_kind) == ['intervention.' + name for name in given]
    costs = DEFAULT_COSTS
    total = 0.0
    for name in given:
        total += costs['intervention.' + name]
    assert monitor.budget.total == total


# --- any input stream ------------------------------------------------------------------------


@settings(max_examples=int(os.environ.get('HYPOTHESIS_EXAMPLES', '400')) // 10, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float('nan')),
                                   st.just(float('inf'))),
                         min_size=2, max_size=2), min_size=1, max_size=90),
       st.integers(1, 9))
def test_any_stream_gives_finite_bounded_metrics_equal_to_batch(rows, flush_every):
    actions = np.array(rows, dtype=np.float64)
    cal = calibration(2, velocity_scale=3.0)
    monitor = ActionMonitor(cal, DT)
    for t, row in enumerate(actions):
        monitor.update(row)
        if t % flush_every == 0:
            monitor.window_metrics()
    live = monitor.window_metrics()
    batch = episode_metrics(actions, cal, DT)
    assert 0.0 <= live['reversal_rate'] <= 1.0 and -1.0 <= live['momentum_coherence'] <= 1.0
    for name in METRICS:
        assert np.isfinite(live[name])
        assert live[name] == pytest.approx(batch[name][-1], rel=1e-6, abs=1e-6), name
    bad_rows = int((~np.isfinite(actions).all(axis=1)).sum())
    assert monitor.episode_summary()['nonfinite_steps'] == bad_rows
