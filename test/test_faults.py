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

"""Fault injection: each family does what it says; the monitor catches them on real PushT demos."""

import numpy as np
import pytest
from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.costs import CostModel
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.evaluation import EvalSettings, run_episode
from vla_safety_filter.core.faults import (action_range, EVALUATE_FAMILIES, FAULT_FAMILIES, inject,
                                           parse_families, UNNORMALIZED)
from vla_safety_filter.core.profiles import get_profile

DT = 0.1
SPAN = np.array([2.0, 4.0])
CENTRE = np.array([1.0, -1.0])


def smooth(t_len=60):
    t = np.arange(t_len) * DT
    return np.stack([np.sin(t), np.cos(0.5 * t)], axis=1)


@pytest.mark.parametrize('family', EVALUATE_FAMILIES)
def test_every_family_leaves_the_past_alone_and_changes_the_future(family):
    actions = smooth()
    faulty, fault = inject(actions, family, 20, seed=1, action_range=SPAN, centre=CENTRE, dt=DT)
    np.testing.assert_array_equal(faulty[:20], actions[:20])
    assert not np.array_equal(faulty[20:], actions[20:], equal_nan=False)
    assert fault.family == family and fault.at == 20 and fault.to_dict()['params'] == fault.params
    np.testing.assert_array_equal(actions, smooth())  # input untouched


def test_family_shapes_by_hand():
    actions = smooth()
    spike, _ = inject(actions, 'spike', 10, 0, SPAN, CENTRE, DT, amplitude=0.5)
    diff = spike - actions
    assert np.count_nonzero(diff) == 1
    j = np.flatnonzero(diff[10])[0]
    assert abs(diff[10, j]) == pytest.approx(0.5 * SPAN[j])
    frozen, _ = inject(actions, 'freeze', 10, 0, SPAN, CENTRE, DT)
    assert np.all(frozen[10:] == actions[10])
    offset, _ = inject(actions, 'offset', 10, 0, SPAN, CENTRE, DT, amplitude=0.2)
    np.testing.assert_allclose(np.abs(offset[10:] - actions[10:]), np.tile(0.2 * SPAN, (50, 1)))
    scaled, _ = inject(actions, 'scale', 10, 0, SPAN, CENTRE, DT, factor=1.3)
    np.testing.assert_allclose(scaled[10:] - CENTRE, 1.3 * (actions[10:] - CENTRE))
    nan, _ = inject(actions, 'nan', 10, 0, SPAN, CENTRE, DT, duration_steps=4)
    assert np.isnan(nan[10:14]).all() and np.isfinite(nan[14:]).all()
    drift, _ = inject(actions, 'drift', 10, 0, SPAN, CENTRE, DT, rate=0.1)
    np.testing.assert_allclose(np.abs(drift[30] - actions[30]), 0.1 * SPAN * 20 * DT)
    noise, _ = inject(actions, 'noise', 10, 0, SPAN, CENTRE, DT, duration=1.0)
    assert np.count_nonzero((noise != actions).any(axis=1)) == 10
    raw, _ = inject(actions, UNNORMALIZED, 10, 0, SPAN, CENTRE, DT)
    # quantile normalization with q01, q99 = centre -+ range / 2: q99 -> 1, q01 -> -1
    np.testing.assert_allclose(raw[10:] * SPAN / 2 + CENTRE, actions[10:])


def test_oscillation_has_the_requested_frequency():
    actions = np.zeros((200, 2))
    osc, _ = inject(actions, 'oscillation', 0, 0, SPAN, CENTRE, 0.02, frequency=4.0, amplitude=0.1)
    spectrum = np.abs(np.fft.rfft(osc[:, 0]))
    assert np.fft.rfftfreq(200, 0.02)[spectrum.argmax()] == pytest.approx(4.0)
    assert np.abs(osc).max(axis=0) == pytest.approx(0.1 * SPAN, rel=0.01)


def test_bad_fault_requests():
    with pytest.raises(InputError, match='unknown fault family'):
        inject(smooth(), 'gremlin', 5, 0, SPAN, CENTRE, DT)
    with pytest.raises(InputError, match='outside the episode'):
        inject(smooth(), 'spike', 60, 0, SPAN, CENTRE, DT)
    with pytest.raises(InputError, match='no parameter'):
        inject(smooth(), 'spike', 5, 0, SPAN, CENTRE, DT, frequency=3.0)
    with pytest.raises(InputError, match='unknown fault family'):
        parse_families('spike,gremlin')
    assert parse_families('all') == [*FAULT_FAMILIES, UNNORMALIZED]


@pytest.fixture(scope='module')
def pusht(data_file):
    with np.load(data_file('pusht_cchi_v7_replay.npz'), allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in range(60)]
    result = calibrate(episodes[:50], ('x', 'y'), DT, holdout=0.0)
    settings = EvalSettings(result.data, DT, get_profile('generic'), CostModel(), result.contract)
    return settings, episodes[50:]


@pytest.mark.parametrize('family', ['spike', 'oscillation', 'freeze', 'offset', 'nan'])
def test_monitor_detects_injected_faults_on_real_pusht(pusht, family):
    settings, held_out = pusht
    cal = settings.calibration
    span = action_range(cal.sigma)
    detected = 0
    for k, actions in enumerate(held_out):
        at = len(actions) // 2
        faulty, _ = inject(actions, family, at, k, span, cal.mu, DT)
        record = run_episode(settings, k, faulty, fault_step=at)
        detected += record['detected']
    assert detected >= 0.9 * len(held_out)
