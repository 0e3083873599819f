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
The monitor's shortcuts change no reported value: spared window queries and lazy window scores.

The window nearest-neighbour query is skipped when the last neighbour already bounds a score
below every threshold; these invariants check, on real PushT episodes with injected faults, that
the episode's window statistics and the diagnostic window score equal the exact scores.
"""
import os

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.faults import action_range, FAULT_FAMILIES, inject
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.windows import WindowScorer

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400')) // 10


@pytest.fixture(scope='module')
def pusht():
    """Return the PushT calibration (10 Hz, motion scores armed) and held-out faulted episodes."""
    cal = CalibrationData.load(os.path.join(HERE, 'monitor_golden_cal_pusht.npz'))
    with np.load(os.path.join(HERE, 'monitor_golden_streams.npz'), allow_pickle=False) as z:
        actions, index = z['pusht_actions'], z['pusht_episode']
    episodes = [actions[index == i] for i in np.unique(index)]
    return cal, [e for e in episodes if np.isfinite(e).all()]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 100), st.sampled_from(FAULT_FAMILIES), st.floats(0.1, 0.9),
       st.integers(0, 2 ** 16), st.floats(-0.5, 3.0))
def test_bounded_scores_are_exact_above_the_bound_and_bounds_below(pusht, episode, family,
                                                                   where, seed, bound):
    cal, episodes = pusht
    rows = episodes[episode % len(episodes)]
    rows, _ = inject(rows, family, int(where * len(rows)), seed, action_range(cal.sigma),
                     cal.mu, cal.dt)
    scorer = WindowScorer(cal.motion.windows, 3.0)
    exact = scorer.scores_of(rows)
    for start in range(0, len(rows) - scorer.span - 1, 5):  # blocks of up to 5 windows
        chunk = rows[start:start + scorer.span + 5]
        got, features = scorer.bounded_scores(chunk, bound)
        want = exact[start:start + len(got)]
        assert np.array_equal(np.isnan(got), np.isnan(want))
        for g, w in zip(got, want):
            if w == w:
                assert g == w or w <= g <= bound  # an upper bound, never above the bound
                assert g == w or not w > bound
        assert np.shape(features) == (len(got), 2 * rows.shape[1])


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 100), st.sampled_from(FAULT_FAMILIES), st.floats(0.1, 0.9),
       st.integers(0, 2 ** 16), st.integers(0, 12))
def test_window_statistics_equal_the_exact_scores(pusht, episode, family, where, seed, probe):
    cal, episodes = pusht
    rows = episodes[episode % len(episodes)]
    rows, _ = inject(rows, family, int(where * len(rows)), seed, action_range(cal.sigma),
                     cal.mu, cal.dt)
    monitor = ActionMonitor(cal, cal.dt, 'generic', motion=cal.motion)
    scorer = WindowScorer(cal.motion.windows, monitor.profile.window_margin)
    exact = scorer.scores_of(rows)
    seen = []
    for t, row in enumerate(rows):
        monitor.update(row)
        if probe and t % probe == 0:
            live = monitor.window_metrics()['window_score']
            finite = exact[:max(0, t + 1 - scorer.span)]
            finite = finite[np.isfinite(finite)]
            seen.append((live, finite[-1] if finite.size else float('nan')))
    for live, want in seen:
        assert live == pytest.approx(want, rel=1e-12, nan_ok=True)
    summary = monitor.episode_summary()
    finite = exact[np.isfinite(exact)]
    assert summary['window_score_max'] == pytest.approx(max(finite.max(), 0.0), rel=1e-12)
    limit = scorer.exceedance_threshold(cal.alpha)
    assert summary['window_exceedance_rate'] == pytest.approx(np.mean(finite > limit))
    spikes = [a['step'] for a in summary['alarms'] if a['kind'] == 'window_spike']
    onsets = [t + scorer.span for t in np.flatnonzero(exact > scorer.spike_score)
              if t == 0 or not exact[t - 1] > scorer.spike_score]
    assert spikes == onsets
