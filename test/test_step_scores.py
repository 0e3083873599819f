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

"""Step scores (issue 12 part 2): spikes alarm at once, smooth held-out demos do not, p valid."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.faults import action_range, inject
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.profiles import get_profile
from vla_safety_filter.core.sequential import MotionCalibration, StepScorer

DT = 0.1  # PushT runs at 10 Hz
MOTION_KINDS = ('step_spike', 'motion_cusum')


def position_calibration(frames: np.ndarray, dim: int, dt: float) -> CalibrationData:
    """Build a calibration by hand from demonstration frames (what the monitor reads)."""
    mu, sigma = frames.mean(0), frames.std(0)
    scores = np.sort(np.abs((frames - mu) / sigma).max(1))
    velocity = np.diff(frames, axis=0).std(0) / dt + 1e-6
    return CalibrationData(tuple(f'j{i}' for i in range(dim)), mu, sigma, scores, velocity,
                           float(scores[int(0.95 * scores.size)]), 0.05, dt)


@pytest.fixture(scope='module')
def pusht(pusht_demos):
    """Split the PushT demos by episode: every 5th held out, the rest calibrate both scores."""
    with np.load(pusht_demos, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    seen = [e for k, e in enumerate(episodes) if k % 5]
    held = [e for k, e in enumerate(episodes) if k % 5 == 0]
    cal = position_calibration(np.concatenate(seen), actions.shape[1], DT)
    return cal, MotionCalibration.from_episodes(seen, cal.sigma), held


def stream(monitor: ActionMonitor, actions: np.ndarray) -> list:
    alarms = []
    for row in actions:
        alarms.extend(monitor.update(row).alarms)
    monitor.episode_summary()  # flushes the last block
    return alarms + list(monitor.update(actions[-1]).alarms)


def test_spike_in_a_real_held_out_stream_alarms_at_once(pusht):
    cal, motion, held = pusht
    monitor = ActionMonitor(cal, DT, 'generic', motion=motion)
    for k, episode in enumerate(held[:20]):
        at = 15 + 3 * k
        faulty, _ = inject(episode, 'spike', at, seed=k, action_range=action_range(cal.sigma),
                           centre=cal.mu, dt=DT)
        monitor.reset_episode()
        spikes = [a.step for a in stream(monitor, faulty) if a.kind == 'step_spike']
        assert spikes and spikes[0] in (at, at + 1), (k, at, spikes)


def test_smooth_held_out_real_episodes_raise_no_motion_alarm(pusht):
    cal, motion, held = pusht
    monitor = ActionMonitor(cal, DT, 'generic', motion=motion)
    scored = exceeded = 0
    for episode in held:
        monitor.reset_episode()
        kinds = {a.kind for a in stream(monitor, episode)}
        assert not kinds & set(MOTION_KINDS)
        summary = monitor.episode_summary()
        assert summary['step_score_max'] <= monitor.step_scorer.spike_score
        n = episode.shape[0] - 2
        scored += n
        exceeded += round(summary['step_exceedance_rate'] * n)
    assert 0.0 < exceeded / scored < 0.1  # about alpha on unseen demos, nowhere near always


def test_motion_cusum_alarms_on_sustained_exceedance():
    dim, dt = 3, 0.1
    rng = np.random.default_rng(1)
    calm = [np.cumsum(rng.normal(size=(200, dim)), axis=0) for _ in range(10)]
    cal = position_calibration(np.concatenate(calm), dim, dt)
    motion = MotionCalibration.from_episodes(calm, cal.sigma)
    monitor = ActionMonitor(cal, dt, 'generic', motion=motion)
    wild = np.cumsum(rng.normal(size=(600, dim)) * 4.0, axis=0)  # 4x the demonstrated steps
    kinds = [a.kind for a in stream(monitor, wild)]
    assert 'motion_cusum' in kinds


def test_step_p_values_are_valid_under_exchangeability():
    """Seeded simulation: i.i.d. random-walk episodes, P(p <= level) <= level (+ MC error)."""
    rng = np.random.default_rng(7)
    dim, rejections = 4, {0.05: [], 0.2: []}
    for _ in range(40):
        episodes = [np.cumsum(rng.normal(size=(60, dim)) * rng.uniform(0.5, 2, dim), axis=0)
                    for _ in range(31)]
        motion = MotionCalibration.from_episodes(episodes[:30], np.ones(dim))
        scorer = StepScorer(motion, spike_margin=1.5)
        p = scorer.p_value(scorer.scores_of(episodes[30]))
        for level in rejections:
            rejections[level].append(np.mean(p <= level))
    for level, rates in rejections.items():
        assert abs(np.mean(rates) - level) < 0.03, (level, np.mean(rates))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=9, max_size=60), st.integers(1, 4))
def test_step_score_is_scale_free_and_p_value_in_range(values, dim):
    rows = np.array(values[:len(values) // dim * dim]).reshape(-1, dim)
    if rows.shape[0] < 3:
        return
    motion = MotionCalibration.from_episodes([rows], np.ones(dim))
    scorer = StepScorer(motion, 1.5)
    scores = scorer.scores_of(rows)
    assert np.all(scores >= 0)
    p = scorer.p_value(scores)
    assert np.all((p > 0) & (p <= 1))
    scaled = StepScorer(MotionCalibration.from_episodes([rows * 10.0], 10.0 * np.ones(dim)), 1.5)
    np.testing.assert_allclose(scaled.scores_of(rows * 10.0), scores, rtol=1e-9, atol=1e-9)


def test_gaps_and_episode_starts_give_no_step_score(pusht):
    cal, motion, held = pusht
    monitor = ActionMonitor(cal, DT, 'generic', motion=motion)
    episode = held[0].copy()
    episode[30:33] = np.nan  # a NaN burst, then the stream resumes elsewhere
    episode[33:] += 5 * cal.sigma
    kinds = [a.kind for a in stream(monitor, episode)]
    assert 'nonfinite' in kinds and 'step_spike' not in kinds


def test_alarm_steps_do_not_depend_on_block_size(pusht):
    cal, motion, held = pusht
    faulty, _ = inject(held[1], 'spike', 40, 0, action_range(cal.sigma), cal.mu, DT)
    runs = []
    for block_s in (0.1, 0.3, 0.7):
        monitor = ActionMonitor(cal, DT, get_profile('generic', block_s=block_s), motion=motion)
        runs.append([a for a in stream(monitor, faulty) if a.kind in MOTION_KINDS])
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_without_motion_calibration_the_monitor_is_unchanged(tmp_path, pusht):
    cal, motion, held = pusht
    path = str(tmp_path / 'old.npz')
    cal.save(path)  # a calibration file as written before step scores existed
    loaded = CalibrationData.load(path)
    with np.load(path) as z:
        assert MotionCalibration.from_arrays(z) is None
    monitor = ActionMonitor(loaded, DT, 'generic')
    assert 'step_score' not in monitor.window_metrics()
    faulty, _ = inject(held[2], 'spike', 30, 0, action_range(cal.sigma), cal.mu, DT)
    assert not {a.kind for a in stream(monitor, faulty)} & set(MOTION_KINDS)


def test_motion_arrays_round_trip_and_malformed_are_refused(pusht):
    _, motion, _ = pusht
    back = MotionCalibration.from_arrays(motion.to_arrays())
    np.testing.assert_array_equal(back.scores, motion.scores)
    np.testing.assert_array_equal(back.step_scale, motion.step_scale)
    bad = {**motion.to_arrays(), 'motion_step_scale': -motion.step_scale}
    with pytest.raises(InputError):
        MotionCalibration.from_arrays(bad)
    with pytest.raises(InputError):
        MotionCalibration.from_episodes([np.zeros((2, 3))], np.ones(3))
