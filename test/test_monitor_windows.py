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
Nearest-neighbour window score and chunk-seam score (issue 12 part 2).

Calibrated out of fold on real PushT demos: unseen demos raise neither alarm; a seam jump beyond
every demonstrated step alarms at once, an unnormalized stream leaves every demonstrated window;
p-values are valid on exchangeable episodes; the arrays survive the calibration file.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.faults import action_range, inject, UNNORMALIZED
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.sequential import MotionCalibration, SeamScorer
from vla_safety_filter.core.windows import (window_features, WindowCalibration, WindowScorer)

DT = 0.1


@pytest.fixture(scope='module')
def pusht(pusht_demos):
    """Calibrate PushT as `vla-safety calibrate` does; the held-out episodes are unseen."""
    with np.load(pusht_demos, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    result = calibrate(episodes, ('x', 'y'), DT, holdout=0.2)
    return result.data, [episodes[i] for i in result.report['holdout_episodes']]


def stream(monitor: ActionMonitor, actions: np.ndarray) -> list:
    alarms = [a for row in actions for a in monitor.update(row).alarms]
    monitor.episode_summary()
    return alarms + list(monitor.update(actions[-1]).alarms)


def test_unseen_demos_raise_no_window_or_seam_alarm(pusht):
    cal, held = pusht
    monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
    exceeded = scored = 0
    for episode in held:
        monitor.reset_episode()
        kinds = {a.kind for a in stream(monitor, episode)}
        for prev, row in zip(episode[:-1], episode[1:]):   # every step a chunk boundary
            kinds |= {a.kind for a in monitor.check_seam(row, prev)}
        assert not kinds & {'window_spike', 'seam_spike'}, kinds
        summary = monitor.episode_summary()
        n = episode.shape[0] - monitor.window_scorer.span
        scored += n
        exceeded += round(summary['window_exceedance_rate'] * n)
    assert 0.0 < exceeded / scored < 0.15   # near alpha on unseen demos, not always


def test_a_seam_jump_alarms_at_the_step_of_the_new_first_point(pusht):
    cal, held = pusht
    monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
    episode = held[0]
    for row in episode[:20]:
        monitor.update(row)
    executed = episode[19]
    beyond = monitor.seam_scorer.spike_score * cal.motion.step_scale * np.array([1.0, 0.0])
    assert monitor.check_seam(executed + 0.99 * beyond, executed) == ()
    [alarm] = monitor.check_seam(executed - 1.01 * beyond, executed)
    assert alarm.kind == 'seam_spike' and alarm.step == 20
    # the margin: 1.5 x the largest seam of 165 demonstrations (a jump of well over 1 sigma)
    assert np.linalg.norm(beyond) > cal.sigma[0]
    assert monitor.check_seam(episode[20], executed) == ()      # the demonstrated next point
    assert monitor.check_seam([np.nan, 0.0], executed) == ()    # not finite: the update alarms
    assert monitor.check_seam([1.0, 2.0, 3.0], executed) == ()  # wrong length: likewise
    metrics = monitor.window_metrics()
    assert 0.0 < metrics['seam_p_value'] <= 1.0 and metrics['seam_score'] >= 0.0


def test_unnormalized_outputs_leave_every_demonstrated_window(pusht):
    """The policy's normalized output reaching the robot: alarmed within 2 s, mostly by windows."""
    cal, held = pusht
    by_window = by_any = 0
    for k, episode in enumerate(held):
        at = episode.shape[0] // 2
        faulty, _ = inject(episode, UNNORMALIZED, at, k, action_range(cal.sigma), cal.mu, DT)
        monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
        alarms = [a for a in stream(monitor, faulty) if at <= a.step <= at + round(2.0 / DT)]
        by_window += any(a.kind == 'window_spike' for a in alarms)
        by_any += bool(alarms)
    assert by_any >= 0.95 * len(held)
    assert by_window >= 0.8 * len(held)


def test_window_p_values_are_valid_on_exchangeable_episodes():
    """Seeded: smooth random motions; P(p <= level) <= level + Monte Carlo margin."""
    rng = np.random.default_rng(11)
    rates = {0.05: [], 0.2: []}
    for _ in range(8):
        episodes = [np.cumsum(np.cumsum(rng.normal(size=(80, 2)), axis=0), axis=0) * 0.01
                    for _ in range(41)]
        motion = MotionCalibration.from_episodes(episodes[:40], np.ones(2), dt=DT)
        scorer = WindowScorer(motion.windows, 3.0)
        p = scorer.p_value(scorer.scores_of(episodes[40])[:])
        for level in rates:
            rates[level].append(np.mean(p <= level))
    for level, values in rates.items():
        assert np.mean(values) <= level + 0.05, (level, np.mean(values))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=8, max_size=80), st.integers(1, 3),
       st.integers(1, 4))
def test_window_features_are_finite_scaled_and_nan_only_at_gaps(values, dim, span):
    rows = np.array(values[:len(values) // dim * dim]).reshape(-1, dim)
    if rows.shape[0] <= span:
        return
    norm = np.stack([rows.mean(axis=0), np.ones(dim) * 2.0, np.ones(dim) * 0.5])
    features = window_features(rows, norm, span)
    assert features.shape == (rows.shape[0] - span, 2 * dim)
    np.testing.assert_allclose(features[:, :dim], (rows[span:] - norm[0]) / 2.0)
    gapped = rows.copy()
    gapped[span] = np.nan
    bad = ~np.isfinite(window_features(gapped, norm, span)).all(axis=1)
    assert bad[0] and bad.sum() <= 2   # the gap row and the row whose velocity spans it


def test_seam_and_window_arrays_round_trip_and_malformed_are_refused(pusht):
    cal, _ = pusht
    arrays = cal.motion.to_arrays()
    back = MotionCalibration.from_arrays(arrays)
    np.testing.assert_array_equal(back.seam_scores, cal.motion.seam_scores)
    np.testing.assert_array_equal(back.windows.points, cal.motion.windows.points)
    assert back.windows.span == cal.motion.windows.span == 3
    assert SeamScorer(back, 1.5).spike_score == pytest.approx(1.5 * back.seam_scores[-1])
    for key, value in (('motion_window_points', np.zeros((5, 3))),
                       ('motion_window_norm', np.zeros((3, 2))),
                       ('motion_seam_scores', np.array([np.inf]))):
        with pytest.raises(InputError):
            MotionCalibration.from_arrays({**arrays, key: value})
    assert WindowCalibration.from_arrays({}, 2) is None
