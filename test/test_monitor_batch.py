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
A recorded episode scored at once (`ActionMonitor.score_episode`) equals stepping it.

Everything the monitor reports is compared as JSON text (floats bit for bit, NaN equal to
itself): both summaries, the window metrics, /diagnostics values, the active alarms, the CUSUM
statistics, the budget by kind and the alarms in their order, on the golden streams (every fault
family, every profile scenario, malformed rows) and on hypothesis' streams (gaps, malformed rows,
freezes, spikes, interleaved charges, block lengths of 1, 2 and 5 steps); and a monitor that goes
on stepping after a scored episode reports what it would have after stepping all of it.
"""
import copy
from dataclasses import replace
import json

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from test_monitor_golden import _bad_input, _episodes, _monitor, SCENARIOS, STREAMS
from vla_safety_filter.core.holds import HoldCalibration
from vla_safety_filter.core.monitors import (ActionMonitor, AlarmScan, spectral_low_ratio,
                                             spectral_low_ratios)
from vla_safety_filter.core.params import CalibrationData

REASONS = ('position', 'velocity', 'hold', 'soft_limit')
WORLD = ('world.outside_workspace', 'world.joint_limit')
EARLY = 50   # the drill's default first steps


@pytest.fixture(scope='module')
def streams():
    with np.load(STREAMS, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def charges_of(n: int, seed: int) -> list:
    """Return a step's filter reasons and world costs for n steps (about a fifth charged)."""
    rng = np.random.default_rng(seed)
    return [(tuple(rng.choice(REASONS, size=rng.integers(1, 3), replace=False))
             if rng.random() < 0.2 else (),
             (WORLD[rng.integers(2)],) if rng.random() < 0.1 else ()) for _ in range(n)]


def step_through(monitor: ActionMonitor, actions: list, charges, early) -> tuple:
    """Step the episode as the drill does; (whole summary, early summary, alarms per update)."""
    monitor.reset_episode()
    summary, raised = None, []
    for k, action in enumerate(actions):
        raised.append(monitor.update(action).alarms)
        if charges is not None:
            monitor.record_interventions(charges[k][0])
            for kind in charges[k][1]:
                monitor.budget.charge(kind)
        if k + 1 == early:
            summary = copy.deepcopy(monitor).episode_summary()
    return monitor.episode_summary(), summary, raised


def reports(monitor: ActionMonitor) -> str:
    """Return everything the monitor reports now, as JSON text."""
    level, message, values = monitor.status()
    return json.dumps([monitor.window_metrics(), level, message, values, monitor.active_alarms(),
                       monitor.cusum.statistic, monitor.budget.total, monitor.budget.by_kind,
                       monitor.alarm_counts, [tuple(a) for a in monitor.alarms]])


def assert_same(stepped: ActionMonitor, scored: ActionMonitor, actions: list, charges,
                early) -> dict:
    """Step one monitor and score the other; assert equal reports; return the summary."""
    whole, first, _ = step_through(stepped, actions, charges, early)
    result = scored.score_episode(actions, charges, early)
    assert json.dumps(result.whole) == json.dumps(whole)
    assert json.dumps(result.early) == json.dumps(first)
    assert reports(scored) == reports(stepped)
    if stepped.step_scorer is not None:
        assert scored.motion_cusum.statistic == stepped.motion_cusum.statistic
    return whole


@pytest.mark.parametrize('name', sorted(SCENARIOS))
def test_scoring_a_golden_episode_equals_stepping_it(streams, name):
    """Every golden episode of the scenario, with malformed rows, with and without charges."""
    stepped, scored = _monitor(name), _monitor(name)
    kinds = set()
    for i, episode in enumerate(_episodes(streams, SCENARIOS[name][0])):
        actions = [row if _bad_input(k) is None else _bad_input(k)
                   for k, row in enumerate(episode)]
        assert_same(stepped, scored, actions, None, None)
        whole = assert_same(stepped, scored, actions, charges_of(len(actions), i), EARLY)
        kinds |= set(whole['alarm_counts'])
    assert {'nonfinite', 'shape'} < kinds   # the faults raised more alarms to compare


# ---- hypothesis: random corruptions of real episodes -----------------------------------------
CONFIGS = {   # name: (golden scenario whose calibration is used, dt, with calibrated holds)
    'pusht_10hz': ('pusht_generic', None, False),          # blocks of 1, 2 and 5 steps
    'pusht_20hz_chunked': ('pusht_chunked', 0.05, False),
    'aloha_50hz': ('aloha_generic', None, False),
    'aloha_plain_flow': ('aloha_flow_plain', None, False),
    'pusht_10hz_holds': ('pusht_generic', None, True),
    'aloha_50hz_holds': ('aloha_generic', None, True),
}
# 20 calibration episodes whose longest runs were 3 repeated and 8 still steps: short freeze
# and stall thresholds, so that the corrupted streams' freezes raise both alarms
HOLD_RUNS = np.tile([3, 8], (20, 1))


def _built(name: str) -> ActionMonitor:
    scenario, dt, holds = CONFIGS[name]
    monitor = _monitor(scenario)
    if dt is None and not holds:
        return monitor
    cal: CalibrationData = monitor.calibration
    motion = cal.motion
    if holds:
        eps = monitor.profile.deadband * monitor.velocity_scale * monitor.dt
        motion = replace(motion, holds=HoldCalibration(HOLD_RUNS, eps, monitor.dt))
    return ActionMonitor(cal, dt or monitor.dt, monitor.profile, motion=motion)


@pytest.fixture(scope='module')
def monitors(streams):
    pairs = {name: (_built(name), _built(name)) for name in CONFIGS}
    return pairs, streams


def _drawn(monitors, config: str, data) -> tuple:
    """Return the config's stepped and scored monitors and a real episode hypothesis drew."""
    pairs, streams = monitors
    episodes = _episodes(streams, CONFIGS[config][0].split('_')[0])
    return (*pairs[config], episodes[data.draw(st.integers(0, len(episodes) - 1))])


def _corrupt(rows: np.ndarray, draw) -> list:
    """Freeze, spike, NaN, Inf and malformed rows drawn by hypothesis into a real episode."""
    rows = rows.copy()
    n, dim = rows.shape
    span = np.ptp(rows, axis=0) + 1e-3
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, n - 1))
        stop = draw(st.integers(start, min(n, start + 40)))
        rows[start:stop] = rows[start]                       # a freeze
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.integers(0, n - 1))
        rows[k] += draw(st.floats(-5.0, 5.0)) * span         # a spike
    actions = list(rows)
    for _ in range(draw(st.integers(0, 6))):
        k = draw(st.integers(0, n - 1))
        actions[k] = draw(st.sampled_from([
            np.full(dim, np.nan), np.where(np.arange(dim) == 0, np.inf, rows[k]),
            np.full(dim, 1e16), rows[k][:-1], 'text', [None] * dim]))
    return actions


@settings(max_examples=60, deadline=None)
@given(config=st.sampled_from(sorted(CONFIGS)), data=st.data())
def test_scoring_a_corrupted_episode_equals_stepping_it(monitors, config, data):
    stepped, scored, episode = _drawn(monitors, config, data)
    start = data.draw(st.integers(0, len(episode) - 2))
    actions = _corrupt(episode[start:start + data.draw(st.integers(1, 160))], data.draw)
    charges = data.draw(st.none() | st.lists(
        st.tuples(st.lists(st.sampled_from(REASONS), max_size=3).map(tuple),
                  st.lists(st.sampled_from(WORLD), max_size=2).map(tuple)),
        min_size=len(actions), max_size=len(actions)))
    early = data.draw(st.none() | st.integers(0, len(actions) + 5))
    assert_same(stepped, scored, actions, charges, early)


@settings(max_examples=40, deadline=None)
@given(config=st.sampled_from(sorted(CONFIGS)), data=st.data())
def test_episodes_scored_together_equal_each_scored_alone(monitors, config, data):
    """score_episodes (the drill's blocks): each summary, and the monitor after the last."""
    alone, together, _ = _drawn(monitors, config, data)
    episodes = []
    for _ in range(data.draw(st.integers(0, 4))):
        episode = _drawn(monitors, config, data)[2]
        actions = _corrupt(episode[:data.draw(st.integers(1, 130))], data.draw) \
            if data.draw(st.booleans()) else []
        charges = charges_of(len(actions), data.draw(st.integers(0, 99)))
        episodes.append((actions, charges if data.draw(st.booleans()) else None))
    early = data.draw(st.none() | st.integers(1, 60))
    want = [alone.score_episode(actions, charges, early) for actions, charges in episodes]
    got = together.score_episodes(episodes, early)
    assert json.dumps(got) == json.dumps(want)
    if episodes:
        assert reports(together) == reports(alone)


@pytest.mark.parametrize('early', [None, 1, 7, EARLY, 119])
def test_windows_drifting_past_both_thresholds_score_as_stepping(streams, early):
    """
    A real episode drifting away: window scores cross the exceedance and spike thresholds.

    score_episode queries a third of them and bounds the others; the exceedance rates, maxima
    and spikes of both summaries are stepping's.
    """
    stepped, scored = _built('pusht_10hz'), _built('pusht_10hz')
    rows = _episodes(streams, 'pusht')[2][:120]
    drift = np.linspace(0.0, 1.0, len(rows))[:, None] ** 2 * 8.0 * np.ptp(rows, axis=0)
    whole = assert_same(stepped, scored, list(rows + drift), None, early)
    assert 0.0 < whole['window_exceedance_rate'] < 1.0
    assert 'window_spike' in whole['alarm_counts']


@settings(max_examples=25, deadline=None)
@given(config=st.sampled_from(sorted(CONFIGS)), data=st.data())
def test_stepping_on_after_a_scored_episode_equals_stepping_throughout(monitors, config, data):
    """The scored monitor is left exactly as stepping and a summary leave it (windows, buffer)."""
    stepped, scored, episode = _drawn(monitors, config, data)
    actions = _corrupt(episode[:data.draw(st.integers(20, 200))], data.draw)
    cut = data.draw(st.integers(1, len(actions) - 1))
    step_through(stepped, actions[:cut], None, None)
    scored.score_episode(actions[:cut])
    later = [(stepped.update(a).alarms, scored.update(a).alarms) for a in actions[cut:]]
    assert all(a == b for a, b in later)
    assert json.dumps(scored.episode_summary()) == json.dumps(stepped.episode_summary())
    assert reports(scored) == reports(stepped)


def test_a_float32_array_is_scored_as_its_rows(streams):
    """[T, D] float32 (as a policy replies): the same as stepping its rows one by one."""
    stepped, scored = _monitor('pusht_generic'), _monitor('pusht_generic')
    rows = _episodes(streams, 'pusht')[3].astype(np.float32)
    assert_same(stepped, scored, list(rows), None, EARLY)
    assert json.dumps(scored.score_episode(rows).whole) == \
        json.dumps(step_through(stepped, list(rows), None, None)[0])


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 6), n=st.integers(8, 60), dim=st.integers(1, 4), seed=st.integers(0, 99),
       gaps=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 60)), max_size=5),
       dt=st.sampled_from([0.02, 0.05, 0.1]))
def test_fft_metric_of_a_batch_equals_each_window_alone(k, n, dim, seed, gaps, dt):
    """score_episode computes the FFT checks together: each value is the one-window value."""
    rng = np.random.default_rng(seed)
    windows = np.cumsum(rng.normal(size=(k, n + 1, dim)), axis=1)
    windows[1 % k] = windows[1 % k, :1]           # a still window
    for w, t in gaps:
        windows[w % k, t % (n + 1)] = np.nan
    scale = rng.uniform(0.5, 2.0, dim)
    batch = spectral_low_ratios(windows, scale, dt, 2.0)
    alone = [spectral_low_ratio(w, scale, dt, 2.0) for w in windows]
    assert batch.tolist() == alone
    assert all(0.0 <= r <= 1.0 for r in alone)


@settings(max_examples=50, deadline=None)
@given(config=st.sampled_from(sorted(CONFIGS)), data=st.data())
def test_scanning_chunks_finds_the_alarms_stepping_raises(monitors, config, data):
    """AlarmScan: each update's alarms, chunk by chunk ahead of stepping (the drill's +stop)."""
    stepped, _, episode = _drawn(monitors, config, data)
    actions = _corrupt(episode[:data.draw(st.integers(1, 200))], data.draw)
    stepped.reset_episode()
    want = {k: status.alarms for k, action in enumerate(actions)
            if (status := stepped.update(action)).alarms}
    scan, got, k = AlarmScan(stepped), {}, 0
    while k < len(actions):
        size = data.draw(st.integers(1, 12))
        got.update(scan.scan(actions[k:k + size]))
        k += size
    assert {s: a for s, a in got.items() if s < len(actions)} == want


@pytest.mark.parametrize('config', ['pusht_10hz_holds', 'aloha_50hz_holds'])
def test_holds_scored_at_once_equal_stepping_and_alarm(streams, config):
    """A long freeze (freeze, then stall alarms) and a NaN inside one: as stepping raises them."""
    stepped, scored = _built(config), _built(config)
    rows = _episodes(streams, CONFIGS[config][0].split('_')[0])[0][:130].copy()
    rows[20:120] = rows[20]
    actions = list(rows)
    actions[100] = np.full(rows.shape[1], np.nan)
    whole = assert_same(stepped, scored, actions, charges_of(len(actions), 7), EARLY)
    assert {'freeze', 'stall'} <= set(whole['alarm_counts'])
    stepped.reset_episode()
    want = {k: status.alarms for k, action in enumerate(actions)
            if (status := stepped.update(action)).alarms}
    scan, got = AlarmScan(stepped), {}
    for k in range(0, len(actions), 8):
        got.update(scan.scan(actions[k:k + 8]))
    assert {s: a for s, a in got.items() if s < len(actions)} == want
