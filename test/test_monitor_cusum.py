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
The motion CUSUM on autocorrelated streams (issue 12 part 3).

Its threshold comes from in-control run lengths of held-out episodes (episode-block bootstrap);
on streams whose exceedances come in runs the i.i.d. design false-alarms far above its promise,
the measured threshold keeps it; no alarm comes from episode starts or resets.
"""
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.profiles import get_profile
from vla_safety_filter.core.sequential import (BernoulliCusum, cusum_alarms, cusum_path,
                                               design_cusum, MotionCalibration,
                                               run_length_threshold, RunLengthThreshold)

DT = 0.1
ALPHA, RHO = 0.05, 3.0
MOTION_KINDS = ('step_spike', 'motion_cusum', 'window_spike', 'seam_spike')


def sticky_exceedances(rng, episodes: int, steps: int, stay: float) -> list[np.ndarray]:
    """In-control exceedances with marginal rate ALPHA that come in runs (mean 1/(1-stay))."""
    start = ALPHA * (1.0 - stay) / (1.0 - ALPHA)   # P(0 -> 1) keeps the stationary rate ALPHA
    out = []
    for _ in range(episodes):
        u = rng.random(steps)
        x = np.empty(steps, dtype=bool)
        x[0] = u[0] < ALPHA
        for t in range(1, steps):
            x[t] = u[t] < (stay if x[t - 1] else start)
        out.append(x)
    return out


def alarms_per_hour(episodes: list[np.ndarray], h: float) -> float:
    design = design_cusum(ALPHA, RHO, 100.0)
    hours = sum(x.size for x in episodes) * DT / 3600.0
    return sum(cusum_alarms(x, design.up, -design.down, h) for x in episodes) / hours


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.floats(0.5, 12.0))
def test_closed_form_path_and_alarm_count_match_the_streaming_cusum(bits, h):
    """cusum_path (Lindley in closed form) and cusum_alarms agree with BernoulliCusum."""
    x = np.array(bits)
    design = design_cusum(ALPHA, RHO, 100.0)
    up, down = design.up, -design.down
    streaming = BernoulliCusum(replace(design, h=h))
    alarms, path, free = 0, [], 0.0
    for bit in bits:
        alarms += streaming.update(bit)
        free = max(0.0, free + (up if bit else -down))
        path.append(free)
    np.testing.assert_allclose(cusum_path(x, up, down), path, atol=1e-9)
    assert cusum_alarms(x, up, down, h) == alarms


def test_run_length_threshold_keeps_the_false_alarm_rate_where_the_iid_design_fails():
    """Seeded: exceedances in runs of mean 5 steps, a target of 1 false alarm per hour."""
    rng = np.random.default_rng(3)
    calibration = sticky_exceedances(rng, 240, 600, stay=0.8)    # 4 h of held-out episodes
    fresh = sticky_exceedances(rng, 1200, 600, stay=0.8)         # 20 h never seen
    design = run_length_threshold(calibration, DT, ALPHA, RHO, target_per_hour=1.0)
    assert design.h > design.h_iid
    assert design.measured_iid_per_hour > 5.0            # the i.i.d. design's promise fails ...
    assert alarms_per_hour(fresh, design.h_iid) > 5.0    # ... on unseen episodes too
    assert alarms_per_hour(fresh, design.h) <= 1.5       # the measured threshold keeps it
    assert design.measured_per_hour <= 1.5
    assert design.n_episodes == 240 and design.hours == pytest.approx(4.0)


def test_on_iid_input_the_measured_threshold_stays_near_the_iid_design():
    rng = np.random.default_rng(5)
    calibration = [rng.random(600) < ALPHA for _ in range(240)]
    design = run_length_threshold(calibration, DT, ALPHA, RHO, target_per_hour=1.0)
    assert 0.7 * design.h_iid < design.h < 1.6 * design.h_iid
    fresh = [rng.random(600) < ALPHA for _ in range(1200)]
    assert alarms_per_hour(fresh, design.h) <= 1.5


def test_too_few_episodes_give_no_measured_threshold():
    assert run_length_threshold([np.zeros(50, bool)] * 3, DT, ALPHA, RHO, 0.1) is None
    calm = [np.cumsum(np.random.default_rng(k).normal(size=(40, 2)), axis=0) for k in range(3)]
    assert MotionCalibration.from_episodes(calm, np.ones(2), dt=DT).cusum is None


@pytest.fixture(scope='module')
def pusht(pusht_demos):
    """Calibrate PushT as `vla-safety calibrate` does; the held-out episodes are unseen."""
    with np.load(pusht_demos, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    result = calibrate(episodes, ('x', 'y'), DT, holdout=0.2)
    held = [episodes[i] for i in result.report['holdout_episodes']]
    return result, held


def test_real_pusht_exceedances_are_autocorrelated_and_the_threshold_says_so(pusht):
    result, _ = pusht
    measured = result.data.motion.cusum
    assert measured is not None and measured.n_episodes == result.report['n_calibration_episodes']
    assert measured.h > measured.h_iid
    assert measured.measured_iid_per_hour > 10 * measured.target_per_hour
    assert measured.measured_per_hour <= measured.target_per_hour * 10  # 0 alarms in 0.5 h
    reported = result.report['motion']['cusum']
    assert reported['h'] == measured.h and reported['iid_design_per_hour'] == 0.1
    position = result.data.motion.position_cusum   # places are even more autocorrelated
    assert position.n_episodes == result.report['n_score_episodes']
    assert position.h > measured.h and position.measured_iid_per_hour > 100 * 0.1
    assert result.report['motion']['position_cusum']['h'] == position.h


def test_every_step_cusum_raises_nothing_on_unseen_demos_nor_at_resets(pusht):
    """Held-out demos back to back through one monitor, reset between: no CUSUM alarm at all."""
    result, held = pusht
    monitor = ActionMonitor(result.data, DT, 'generic', motion=result.data.motion)
    assert monitor.motion_stride == 1 and monitor.cusum_stride == 1
    peak = 0.0
    for episode in held:
        monitor.reset_episode()
        kinds = set()
        for row in episode:
            kinds |= {a.kind for a in monitor.update(row).alarms}
            peak = max(peak, monitor.motion_cusum.statistic)
        monitor.episode_summary()
        assert not kinds & {*MOTION_KINDS, 'cusum'}, kinds
    assert 0.0 < peak < monitor.motion_cusum.design.h


def test_cusum_rises_on_a_sustained_fault_and_alarms(pusht):
    """The demo's complaint: the CUSUM never left 0. An oscillation drives it to an alarm."""
    result, held = pusht
    cal = result.data
    monitor = ActionMonitor(cal, DT, 'generic', motion=cal.motion)
    episode = np.concatenate(held[:4])
    t = np.arange(episode.shape[0])[:, None] * DT
    wobble = episode + 0.1 * 4 * cal.sigma * np.sin(2 * np.pi * 3.0 * t)
    kinds = [a.kind for row in wobble for a in monitor.update(row).alarms]
    assert 'motion_cusum' in kinds


def test_the_designed_threshold_survives_the_calibration_file(tmp_path, pusht):
    result, _ = pusht
    path = str(tmp_path / 'cal.npz')
    result.data.save(path)
    loaded = CalibrationData.load(path)
    assert loaded.motion.cusum == result.data.motion.cusum
    metrics = ActionMonitor(loaded, DT, 'generic', motion=loaded.motion).window_metrics()
    assert metrics['motion_cusum_threshold'] == pytest.approx(result.data.motion.cusum.h)
    assert metrics['motion_cusum_threshold_iid'] == pytest.approx(result.data.motion.cusum.h_iid)
    assert metrics['motion_cusum_measured_per_hour_iid'] > metrics['motion_cusum_target_per_hour']
    assert metrics['cusum_threshold'] == pytest.approx(result.data.motion.position_cusum.h)
    assert metrics['cusum_stride_steps'] == 1 and metrics['cusum_measured_per_hour_iid'] > 10
    with pytest.raises(InputError):
        RunLengthThreshold.from_array(np.array([1.0, 2.0]))


def test_old_files_and_other_targets_fall_back_to_the_thinned_iid_design(pusht):
    result, _ = pusht
    motion = result.data.motion
    old = MotionCalibration.from_arrays({k: v for k, v in motion.to_arrays().items()
                                         if k in MotionCalibration.ARRAY_KEYS})
    assert old.cusum is None and old.windows is None and old.seam_scores is None
    assert old.position_cusum is None
    plain = ActionMonitor(result.data, DT, 'generic', motion=old)
    assert plain.motion_stride == 5 and 'motion_cusum_threshold_iid' not in plain.window_metrics()
    assert plain.cusum_stride == 10 and 'cusum_threshold_iid' not in plain.window_metrics()
    other = ActionMonitor(result.data, DT, get_profile('generic', cusum_arl0_hours=100.0),
                          motion=motion)
    assert other.motion_stride == 5  # the measured h was designed for another target
