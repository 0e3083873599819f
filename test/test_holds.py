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

"""Calibrated holds (issue 12): a freeze is caught within 2 s, operator pauses raise nothing."""

from dataclasses import replace
import os

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.calibration import calibrate, motion_report
from vla_safety_filter.core.costs import CostModel
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.faults import action_range, inject
from vla_safety_filter.core.holds import (armed_kinds, HoldCalibration, HoldDetector,
                                          HoldThresholds, longest_runs)
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.profiles import get_profile

DT = 0.1   # PushT runs at 10 Hz
EPS = np.array([0.5, 2.0])
OLD_CALIBRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                               'monitor_golden_cal_pusht.npz')   # written before holds existed


def reference_onsets(rows: np.ndarray, freeze_n: int, stall_n: int) -> list:
    """Alarm onsets by the definition, one step at a time in plain Python."""
    onsets, runs, previous = [], {'freeze': 0, 'stall': 0}, None
    for t, row in enumerate(rows.tolist()):
        finite = all(np.isfinite(row))
        held = {'freeze': False, 'stall': False}
        if finite and previous is not None:
            held['freeze'] = row == previous
            held['stall'] = all(abs(a - b) < e for a, b, e in zip(row, previous, EPS))
        for kind, limit in (('freeze', freeze_n), ('stall', stall_n)):
            runs[kind] = runs[kind] + 1 if held[kind] else 0
            if runs[kind] == limit:
                onsets.append((kind, t))
        previous = row if finite else None
    return onsets


def segments_stream(segments: list, seed: int) -> np.ndarray:
    """Rows from (kind, length) segments: move, freeze, wander (in deadband), gap (NaN, inf)."""
    rng = np.random.default_rng(seed)
    rows, last = [], np.zeros(2)
    for kind, length in segments:
        for _ in range(length):
            if kind == 'move':
                last = last + rng.choice([-1.0, 1.0], size=2) * EPS * rng.uniform(1.0, 3.0, 2)
            elif kind == 'wander':
                last = last + rng.uniform(-0.9, 0.9, size=2) * EPS
            gap = np.array([np.nan, np.nan] if rng.random() < 0.5 else [np.inf, last[1]])
            rows.append(gap if kind == 'gap' else last.copy())
    return np.array(rows)


def detector_onsets(rows: np.ndarray, cuts: list, thresholds: HoldThresholds,
                    kinds=('freeze', 'stall')) -> list:
    """Stream rows through one detector in blocks ending at the sorted cut points."""
    detector = HoldDetector(EPS, thresholds, kinds)
    onsets, start = [], 0
    for end in sorted(set(cuts)) + [len(rows)]:
        onsets += detector.block(rows[start:end], start)
        start = end
    # the calibration measures whole episodes by the same definition, vectorized
    assert longest_runs(rows, 1.0 / EPS) == (detector.longest['freeze'],
                                             detector.longest['stall'])
    return onsets


SEGMENTS = st.lists(st.tuples(st.sampled_from(['move', 'freeze', 'wander', 'gap']),
                              st.integers(1, 14)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(segments=SEGMENTS, seed=st.integers(0, 2**16), data=st.data(),
       freeze_n=st.integers(1, 8), stall_n=st.integers(1, 12))
def test_onsets_are_the_definition_whatever_the_blocks(segments, seed, data, freeze_n, stall_n):
    rows = segments_stream(segments, seed)
    cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=10))
    want = reference_onsets(rows, freeze_n, stall_n)
    limits = HoldThresholds(freeze_n, stall_n, True)
    assert detector_onsets(rows, cuts, limits) == want
    assert detector_onsets(rows, list(range(len(rows))), limits) == want   # one row per block
    for kind in ('freeze', 'stall'):   # a disarmed kind raises nothing, the other is unchanged
        only = [onset for onset in want if onset[0] == kind]
        assert detector_onsets(rows, cuts, limits, (kind,)) == only


def test_exact_freeze_alarms_at_its_threshold_and_not_one_step_earlier():
    moving = segments_stream([('move', 20)], 1)
    frozen = np.concatenate([moving, np.repeat(moving[-1:], 19, axis=0)])   # runs 1 .. 19
    limits = HoldThresholds(19, 100, True)
    assert detector_onsets(frozen, [7, 23], limits) == [('freeze', 19 + 19)]
    assert detector_onsets(frozen[:-1], [7, 23], limits) == []   # a run of 18 stays quiet


def test_wander_inside_the_deadband_is_a_stall_never_a_freeze():
    rows = segments_stream([('move', 5), ('wander', 200)], 2)
    detector = HoldDetector(EPS, HoldThresholds(3, 50, True))
    onsets = detector.block(rows, 0)
    assert onsets == [('stall', 4 + 50)]
    assert detector.longest['freeze'] == 0 and detector.runs['stall'] == 200
    assert detector.active('stall') and not detector.active('freeze')


def test_a_nan_row_breaks_both_runs():
    still = np.repeat(segments_stream([('move', 3)], 3)[-1:], 10, axis=0)   # runs up to 9
    rows = np.concatenate([still, np.full((1, 2), np.nan), still])
    detector = HoldDetector(EPS, HoldThresholds(10, 10, True))
    assert detector.block(rows[:15], 0) + detector.block(rows[15:], 15) == []
    assert detector.longest == {'freeze': 9, 'stall': 9}
    joined = np.concatenate([still, still])   # without the gap: one run of 19
    assert HoldDetector(EPS, HoldThresholds(10, 10, True)).block(joined, 0) == [
        ('freeze', 10), ('stall', 10)]


def test_thresholds_margin_floor_and_the_fixed_fallback():
    profile = get_profile('generic')
    runs = np.array([[3, 10]] * 18 + [[15, 48]])
    enough = HoldCalibration(runs, EPS, DT)
    assert enough.thresholds(profile, DT, 0.05) == HoldThresholds(19, 59, True)  # 18 + 1, 58 + 1
    quiet = HoldCalibration(np.array([[0, 2]] * 19), EPS, DT)
    assert quiet.thresholds(profile, DT, 0.05) == HoldThresholds(5, 15, True)   # the floors
    slow = HoldCalibration(np.zeros((19, 2), dtype=np.int64), EPS, 0.2)   # 5 Hz: 2.5, 7.5 steps
    assert slow.thresholds(profile, 0.2, 0.05) == HoldThresholds(3, 8, True)   # never below
    few = HoldCalibration(runs[:18], EPS, DT)   # 18 < (1 - 0.05) / 0.05 episodes
    assert few.thresholds(profile, DT, 0.05) == HoldThresholds(15, 15, False)
    assert few.thresholds(get_profile('generic', freeze_s=0.7), DT, 0.05).freeze == 7


@pytest.fixture(scope='module')
def keypoint(data_file):
    """Calibrate the PushT keypoint demos as `vla-safety calibrate` does; keep the held-out."""
    with np.load(data_file('pusht_keypoint_x356_y356.npz'), allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    result = calibrate(episodes, ['x', 'y'], DT)
    held = [episodes[i] for i in result.report['holdout_episodes']]
    return result.data, result.report, held


def stream_alarms(monitor: ActionMonitor, episode: np.ndarray) -> list:
    """Stream one episode; return its alarms and reset the monitor."""
    for row in episode:
        monitor.update(row)
    alarms = monitor.episode_summary()['alarms']
    monitor.reset_episode()
    return alarms


def test_keypoint_thresholds_separate_pauses_from_a_freeze(keypoint):
    cal, report, _ = keypoint
    holds = cal.motion.holds
    assert holds.n_episodes == report['n_calibration_episodes'] >= 19
    freeze_longest, stall_longest = holds.longest()
    limits = holds.thresholds(get_profile('generic'), DT, cal.alpha)
    # a demonstrator never repeats an action exactly for as long as it pauses
    assert freeze_longest < stall_longest
    assert freeze_longest < limits.freeze <= round(2.0 / DT)   # a freeze is caught within 2 s
    assert limits.stall > stall_longest >= round(1.5 / DT)   # pauses outlast the old 1.5 s
    assert report['motion']['holds']['freeze_threshold_steps'] == limits.freeze


def test_keypoint_held_out_pauses_quiet_and_freezes_caught(keypoint):
    cal, _, held = keypoint
    monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
    kinds = ('freeze', 'stall')
    quiet = [a for e in held for a in stream_alarms(monitor, e) if a['kind'] in kinds]
    assert quiet == []
    old = ActionMonitor(cal, DT, 'generic', motion=replace(cal.motion, holds=None))
    assert any(a['kind'] == 'stall' for e in held for a in stream_alarms(old, e))
    rng = np.random.default_rng(0)
    delays = []
    for k, episode in enumerate(held):
        at = int(rng.integers(10, len(episode) - 21))
        frozen, _ = inject(episode, 'freeze', at, k, action_range(cal.sigma), cal.mu, DT)
        late = [a for a in stream_alarms(monitor, frozen) if a['step'] >= at]
        delays.append((late[0]['step'] - at) * DT if late else np.inf)
        assert late and late[0]['kind'] == 'freeze', (k, late)
    assert max(delays) <= 2.0


def test_diagnostics_and_summary_show_the_runs(keypoint):
    cal, _, held = keypoint
    monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
    for row in np.concatenate([held[0][:20], np.repeat(held[0][19:20], 6, axis=0)]):
        monitor.update(row)
    metrics = monitor.window_metrics()
    assert metrics['freeze_run_steps'] == 6 and metrics['stall_run_steps'] >= 6
    assert metrics['freeze_threshold_steps'] == cal.motion.holds.thresholds(
        monitor.profile, DT, cal.alpha).freeze
    assert monitor.episode_summary()['freeze_longest_run_steps'] >= 6
    assert CostModel().cost_of('alarm.freeze') == 2.0


def test_hold_calibration_round_trips_and_rejects_malformed(keypoint, tmp_path):
    cal, _, _ = keypoint
    path = str(tmp_path / 'cal.npz')
    cal.save(path)
    loaded = CalibrationData.load(path).motion.holds
    assert np.array_equal(loaded.runs, cal.motion.holds.runs)
    assert np.array_equal(loaded.stall_eps, cal.motion.holds.stall_eps) and loaded.dt == DT
    arrays = cal.motion.to_arrays()
    with pytest.raises(InputError):
        HoldCalibration.from_arrays({**arrays, 'motion_hold_eps': np.array([1.0])}, 2)
    with pytest.raises(InputError):
        HoldCalibration.from_arrays({**arrays, 'motion_hold_runs': np.array([[1.5, 2.0]])}, 2)


def test_old_calibration_files_load_and_the_monitor_behaves_as_before():
    cal = CalibrationData.load(OLD_CALIBRATION)
    assert cal.motion is not None and cal.motion.holds is None
    assert motion_report(cal.motion, 40, cal.alpha)['holds'] is None
    monitor = ActionMonitor(cal, cal.dt, 'generic', motion=cal.motion)
    ramp = np.asarray(cal.mu) + np.outer(np.arange(20), cal.velocity_scale * cal.dt)
    alarms = stream_alarms(monitor, np.concatenate([ramp, np.repeat(ramp[-1:], 30, axis=0)]))
    held = [a['step'] for a in alarms if a['kind'] in ('stall', 'freeze')]
    assert held == [19 + round(1.5 / cal.dt)]   # the fixed 1.5 s stall, no freeze alarm
    assert 'freeze_run_steps' not in monitor.window_metrics()


def test_too_few_episodes_warn_and_keep_the_fixed_thresholds(keypoint):
    cal, _, held = keypoint
    few = replace(cal.motion, holds=HoldCalibration.from_episodes(held[:5],
                                                                  cal.motion.holds.stall_eps, DT))
    report = motion_report(few, 5, cal.alpha)
    assert report['holds']['calibrated'] is False
    assert any(w.startswith('holds:') for w in report['warnings'])
    assert report['holds']['armed'] == ['stall']
    monitor = ActionMonitor(cal, DT, 'generic', motion=few)
    assert monitor.window_metrics()['freeze_threshold_steps'] == round(1.5 / DT)
    frozen = np.concatenate([held[0][:20], np.repeat(held[0][19:20], 30, axis=0)])
    kinds = [a['kind'] for a in stream_alarms(monitor, frozen) if a['step'] >= 19]
    assert 'stall' in kinds and 'freeze' not in kinds   # as before holds: no duplicate alarm


def test_freeze_is_armed_only_where_it_is_earlier_than_stall():
    assert armed_kinds(HoldThresholds(19, 59, True), stall=True) == ('freeze', 'stall')
    assert armed_kinds(HoldThresholds(15, 15, False), stall=True) == ('stall',)
    assert armed_kinds(HoldThresholds(15, 15, False), stall=False) == ('freeze',)
