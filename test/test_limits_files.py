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


"""Soft and jerk limits from URDF and ros2_control YAML into the Contract and its parameters."""
import os

import numpy as np
import pytest

from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.contract import Contract, Guard
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.limits import (contract_limits, optional_limit_params,
                                           read_hardware_limits, with_optional_limits)
from vla_safety_filter.core.params import (contract_from_params, read_node_params,
                                           write_filter_params)

PLANAR = os.path.join(os.path.dirname(__file__), 'data', 'planar3.urdf')

YAML = """controller_manager:
  ros__parameters:
    joint_limits:
      a:
        has_position_limits: true
        min_position: -2.0
        max_position: 2.0
        has_velocity_limits: true
        max_velocity: 1.5
        has_acceleration_limits: true
        max_acceleration: 4.0
        has_jerk_limits: true
        max_jerk: 80.0
        has_soft_limits: true
        k_position: 10.0
        k_velocity: 1.0
        soft_lower_limit: -1.8
        soft_upper_limit: 1.7
      b:
        has_position_limits: true
        min_position: -1.0
        max_position: 1.0
        has_acceleration_limits: true
        max_acceleration: 3.0
        has_jerk_limits: true
        max_jerk: 50.0
        has_soft_limits: false
        k_position: 10.0
        soft_lower_limit: -0.1
        soft_upper_limit: 0.1
"""


def _write(tmp_path, text, name='limits.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_ros2_control_yaml_soft_and_jerk_limits_respect_their_flags(tmp_path):
    hw = read_hardware_limits(_write(tmp_path, YAML), ['a', 'b'])
    np.testing.assert_array_equal(hw.max_jerk, [80.0, 50.0])
    assert hw.k_position[0] == 10.0 and np.isnan(hw.k_position[1])    # b: has_soft_limits false
    assert (hw.soft_lower[0], hw.soft_upper[0]) == (-1.8, 1.7)
    # the soft limiter clamps positions to the soft range: the position bounds narrow to it
    np.testing.assert_array_equal(hw.lower, [-1.8, -1.0])
    np.testing.assert_array_equal(hw.upper, [1.7, 1.0])


@pytest.mark.parametrize('entry, match', [
    ('{has_soft_limits: true, k_position: 1.0, soft_lower_limit: -1.0}', 'soft_upper_limit'),
    ('{has_jerk_limits: true}', 'max_jerk'),
    ('{has_soft_limits: true, k_position: 1.0, soft_lower_limit: 1.0, soft_upper_limit: 0.0}',
     'soft_lower_limit > soft_upper_limit'),
])
def test_an_incomplete_or_inverted_flagged_limit_is_refused(tmp_path, entry, match):
    with pytest.raises(InputError, match=match):
        read_hardware_limits(_write(tmp_path, f'joint_limits:\n  a: {entry}\n'), ['a'])


def test_urdf_safety_controller_gives_soft_limits_with_k_position():
    hw = read_hardware_limits(PLANAR, ['j1', 'j2', 'j3'])
    assert (hw.soft_lower[0], hw.soft_upper[0], hw.k_position[0]) == (-2.3, 2.3, 10.0)
    assert np.isnan(hw.k_position[1:]).all()
    assert (hw.lower[0], hw.upper[0]) == (-2.3, 2.3)     # narrowed as before
    assert hw.max_jerk is not None and np.isnan(hw.max_jerk).all()   # URDF has no jerk


def test_urdf_soft_bounds_without_k_position_only_narrow_the_bounds(tmp_path):
    path = _write(tmp_path, '<robot name="r"><joint name="a" type="revolute">'
                  '<limit lower="-2" upper="2" velocity="1"/>'
                  '<safety_controller soft_upper_limit="1.5" k_velocity="1"/></joint></robot>',
                  'r.urdf')
    hw = read_hardware_limits(path, ['a'])
    assert hw.upper[0] == 1.5 and np.isnan(hw.k_position[0])
    fields, _ = contract_limits(hw)
    assert 'k_position' not in fields


def test_hardware_limits_become_contract_fields_that_the_guard_enforces(tmp_path):
    hw = read_hardware_limits(_write(tmp_path, YAML), ['a', 'b'])
    fields, notes = contract_limits(hw)
    assert notes == []
    np.testing.assert_array_equal(fields['k_position'], [10.0, 1.0])
    np.testing.assert_array_equal(fields['soft_lower'], [-1.8, -np.inf])    # b: no soft limits
    np.testing.assert_array_equal(fields['soft_upper'], [1.7, np.inf])
    c = Contract(('a', 'b'), hw.lower, hw.upper, [1.5, 1.5], dt=0.01, **fields)
    guard = Guard(c)
    guard.reset([1.6, 0.0])
    out, events = guard.step([1.6002, 0.0])    # 2 units/s^2: within max_acceleration
    assert out[0] == pytest.approx(1.6 + 80.0 * 0.01 * 0.01 * 0.01)   # jerk 80 from rest
    assert [(e.joint, e.reason) for e in events] == [('a', 'jerk')]
    path = [guard.step([2.0, 0.0])[0][0] for _ in range(400)]
    assert max(path) <= 1.7 and path[-1] == pytest.approx(1.7, abs=1e-3)   # the soft bound


def test_partial_jerk_limits_are_left_out_with_a_note(tmp_path):
    text = YAML.replace('        has_jerk_limits: true\n        max_jerk: 50.0\n', '')
    fields, notes = contract_limits(read_hardware_limits(_write(tmp_path, text), ['a', 'b']))
    assert 'max_jerk' not in fields and notes == ['hardware max_jerk not used: not given for '
                                                  'every joint']


def test_optional_limits_round_trip_through_the_filter_parameters():
    c = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [1.0, 1.0], dt=0.01,
                 max_acceleration=[2.0, 2.0], soft_lower=[-0.9, -np.inf],
                 soft_upper=[0.9, np.inf], k_position=[5.0, 1.0], max_jerk=[40.0, 30.0])
    params = optional_limit_params(c)
    assert set(params) == {'soft_lower_limit', 'soft_upper_limit', 'k_position', 'max_jerk'}
    plain = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [1.0, 1.0], dt=0.01,
                     max_acceleration=[2.0, 2.0])
    back = with_optional_limits(plain, params)
    for key in ('soft_lower', 'soft_upper', 'k_position', 'max_jerk'):
        np.testing.assert_array_equal(getattr(back, key), getattr(c, key))
    assert with_optional_limits(plain, {'max_jerk': [], 'workspace_urdf': ''}) is plain
    with pytest.raises(InputError, match='filter: .*max_jerk'):
        with_optional_limits(plain, {'max_jerk': [1.0]}, source='filter')


def test_a_one_sided_urdf_soft_limit_leaves_the_other_side_unbounded(tmp_path):
    path = _write(tmp_path, '<robot name="r"><joint name="a" type="revolute">'
                  '<limit lower="-2" upper="2" velocity="1"/>'
                  '<safety_controller soft_upper_limit="1.5" k_position="20" k_velocity="1"/>'
                  '</joint></robot>', 'r.urdf')
    fields, _ = contract_limits(read_hardware_limits(path, ['a']))
    assert (fields['soft_lower'][0], fields['soft_upper'][0]) == (-np.inf, 1.5)
    c = Contract(('a',), [-2.0], [1.5], [1.0], dt=0.01, **fields)
    guard = Guard(c)
    guard.reset([-1.9])
    assert guard.step([-2.5])[0][0] == pytest.approx(-1.91)     # no soft shaping downward
    guard.reset([1.49])
    assert guard.step([1.6])[0][0] == pytest.approx(1.49 + 20 * 0.01 * 0.01)


def test_calibrated_contract_keeps_hardware_soft_and_jerk_limits_through_its_yaml(tmp_path):
    """`calibrate --hardware-limits` -> parameter YAML -> the contract the node builds."""
    rng = np.random.default_rng(0)
    episodes = [np.cumsum(rng.normal(0, 0.002, (200, 2)), axis=0) for _ in range(25)]
    hw = read_hardware_limits(_write(tmp_path, YAML), ['a', 'b'])
    result = calibrate(episodes, ['a', 'b'], dt=0.05, hardware=hw)
    path = str(tmp_path / 'filter.yaml')
    write_filter_params(path, result.contract)
    back = contract_from_params(read_node_params(path), source=path)
    for key in ('soft_lower', 'soft_upper', 'k_position', 'max_jerk', 'max_acceleration'):
        np.testing.assert_array_equal(getattr(back, key), getattr(result.contract, key))
    np.testing.assert_array_equal(back.max_jerk, [80.0, 50.0])
    np.testing.assert_array_equal(back.soft_upper, [1.7, np.inf])
