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
The filter's outgoing messages, serialized once and rewritten in place (nodes/common.py).

Whatever the joint count, positions and stamp, the bytes published read back as exactly the
message the filter means: a forward command's data, a one-point trajectory's positions with its
joint names and time_from_start kept, and the /vla/safe_action stamp; a strict reader (rosbags,
as the flight recorder reads its bags) takes them too: no byte past the encoding.
"""
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
from rclpy.serialization import deserialize_message
from rosbags.typesys import get_typestore, Stores
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter.nodes.common import duration, SerializedMessage

FINITE = st.floats(allow_nan=False, allow_infinity=False)
#: A strict CDR reader (the flight recorder's): it refuses bytes past the encoding.
STRICT = get_typestore(Stores.ROS2_JAZZY)


def _positions(msg):
    return msg.points[0].positions


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 40), st.integers(0, 2**31 - 1), st.integers(0, 999_999_999))
def test_a_serialized_trajectory_reads_back_as_the_command_and_stamp(data, dim, sec, nanosec):
    names = [f'joint_{k}' for k in range(dim)]
    msg = JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(
        positions=[0.0] * dim, time_from_start=duration(0.002))])
    out = SerializedMessage(msg, _positions, stamped=True)
    for _ in range(3):                                      # rewritten in place, again and again
        command = np.array(data.draw(st.lists(FINITE, min_size=dim, max_size=dim)))
        np.copyto(out.values, command)
        out.set_stamp(sec, nanosec)
        back = deserialize_message(out.payload(), JointTrajectory)
        assert np.array_equal(np.asarray(back.points[0].positions), command)
        assert (back.header.stamp.sec, back.header.stamp.nanosec) == (sec, nanosec)
        assert list(back.joint_names) == names
        assert back.points[0].time_from_start == duration(0.002)
        strict = STRICT.deserialize_cdr(out.payload(), 'trajectory_msgs/msg/JointTrajectory')
        assert np.array_equal(strict.points[0].positions, command)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 40))
def test_a_serialized_forward_command_reads_back_in_controller_order(data, dim):
    out = SerializedMessage(Float64MultiArray(data=[0.0] * dim), lambda m: m.data)
    command = np.array(data.draw(st.lists(FINITE, min_size=dim, max_size=dim)))
    order = np.array(data.draw(st.permutations(range(dim))))
    np.take(command, order, out=out.values)
    back = deserialize_message(out.payload(), Float64MultiArray)
    assert np.array_equal(np.asarray(back.data), command[order])
    strict = STRICT.deserialize_cdr(out.payload(), 'std_msgs/msg/Float64MultiArray')
    assert np.array_equal(strict.data, command[order])
