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
The contract's optional limits reach the safety_filter node through its parameters (issue 14).

Over real rclpy/DDS: soft limits with k_position and a jerk limit given as ROS parameters shape
what the controller receives, judged over the guard's own stamps on /vla/safe_action; a bad
optional limit is a refused configure with the reason, never a filter without it.
"""
import os
import time

from lifecycle_msgs.msg import State, Transition
import numpy as np
import pytest
from ros_harness import wait_for
from vla_safety_filter.nodes.safety_filter import SafetyFilter

SOFT_UPPER, K, JERK = 0.3, 5.0, 400.0


def _stream(probe):
    """Return the guard's commands [N, D] and their stamps (s) from /vla/safe_action."""
    times = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in probe.safe])
    return np.array([m.points[0].positions for m in probe.safe]), times


def test_soft_and_jerk_limits_given_as_parameters_shape_the_commands(
        ros, small_contract, filter_probe, fake_arm):
    fake_arm([0.0, 0.0, 0.0])
    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', command_timeout=0.5,
            soft_lower_limit=[-0.5] * 3, soft_upper_limit=[SOFT_UPPER, 0.8, 0.8],
            k_position=[K] * 3, max_jerk=[JERK] * 3, max_acceleration=[10.0] * 3,
            **small_contract)
    probe = filter_probe()
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    for _ in range(60):                                  # ask for the hard bound, 0.6 s
        probe.send([[0.95, 0.0, 0.0]] * 5)
        time.sleep(0.01)
    assert wait_for(lambda: len(probe.safe) > 50)
    commands, times = _stream(probe)
    # the soft bound holds (the request is 0.95, the hard bound 1.0) and is approached
    assert commands[:, 0].max() <= SOFT_UPPER + 1e-9
    assert commands[-1, 0] > SOFT_UPPER - 0.05
    # near the soft bound the speed is at most k x the distance left (ros2_control's rule)
    h = np.diff(times)
    speed = np.diff(commands[:, 0]) / h
    # (1 % slack: the stamps are the ticks' times, the guard's elapsed time is read a few
    # microseconds later)
    assert np.all(speed <= K * (SOFT_UPPER - commands[:-1, 0]) * 1.01 + 1e-4)
    # the jerk limit: the acceleration (between step midpoints) changes by at most max_jerk
    # times the last step's duration, until the soft limit's speed cap takes over (it ranks
    # above jerk: doc/safety.md). Stamps a few microseconds off the guard's own clock make
    # accelerations over millisecond steps noisy, hence the slack; without the limit the first
    # step alone changes the acceleration by 10 (0 -> max_acceleration) against 4 allowed.
    capped = np.flatnonzero(speed >= 0.95 * K * (SOFT_UPPER - commands[:-1, 0]))
    ramp = capped[0] - 1 if capped.size else speed.size - 1
    assert ramp > 5
    accel = np.diff(speed[:ramp]) / (0.5 * (h[1:ramp] + h[:ramp - 1]))
    change = np.abs(np.diff(accel))
    assert np.all(change <= 1.5 * JERK * h[1:ramp - 1] + 0.5)
    assert accel.max() > 5.0                          # it did accelerate, gradually
    assert any('soft_limit' in event for event in probe.events)


@pytest.mark.parametrize('bad, reason', [
    ({'k_position': [5.0] * 3}, 'soft'),                                  # soft bounds missing
    ({'max_jerk': [1.0, 2.0]}, 'max_jerk'),                               # wrong length
    ({'workspace_urdf': '/nonexistent.urdf'}, 'workspace'),              # no frame, no box
])
def test_a_bad_optional_limit_refuses_configure_with_the_reason(
        ros, small_contract, filter_probe, bad, reason):
    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', **small_contract, **bad)
    probe = filter_probe()
    assert not probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert wait_for(lambda: probe.status is not None and reason in probe.status.message,
                    timeout=5), probe.status


def test_the_workspace_box_given_as_parameters_keeps_the_tool_inside(ros, filter_probe,
                                                                     fake_arm):
    """The planar 3-link arm (test/data/planar3.urdf) reaches out of its box and is cut."""
    pytest.importorskip('pinocchio')
    from vla_safety_filter.core.kinematics import UrdfKinematics

    urdf = os.path.join(os.path.dirname(__file__), 'data', 'planar3.urdf')
    lower, upper = [0.2, -0.6, 0.0], [1.0, 0.6, 0.2]
    joints = ['j1', 'j2', 'j3']
    start = [0.0, 0.8, 0.8]                                 # bent: tool inside, x 0.77, y 0.59
    fake_arm(start, names=joints)
    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', command_timeout=0.5,
            joint_names=joints, lower=[-2.5] * 3, upper=[2.5] * 3, max_velocity=[2.0] * 3,
            control_rate_hz=100.0, workspace_urdf=urdf, workspace_frame='tool',
            workspace_lower=lower, workspace_upper=upper)
    probe = filter_probe()
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    for _ in range(80):                                     # stretch out: tool at x = 1.2 > 1.0
        probe.send([[0.0, 0.0, 0.0]] * 3, names=joints)
        time.sleep(0.01)
    assert wait_for(lambda: len(probe.safe) > 60)
    commands, _ = _stream(probe)
    fk = UrdfKinematics(urdf, 'tool', joints)
    tool = np.array([fk(q) for q in commands])
    assert np.all(tool >= np.array(lower) - 1e-6) and np.all(tool <= np.array(upper) + 1e-6)
    assert tool[:, 0].max() > 0.95                          # it went as far as the box allows
    assert any('workspace' in event for event in probe.events)
