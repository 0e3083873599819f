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
sim_arm: a stand-in arm driver for demos and tests.

Listens like a ForwardCommandController (`/<controller>/commands`, Float64MultiArray in joint
order) and a JointTrajectoryController (`/<controller>/joint_trajectory`, last point taken as the
target), tracks the target with a first-order lag and publishes `/joint_states`. Wrong-length or
non-finite commands are rejected (logged, ignored) as a careful driver would.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from .common import COMMAND_QOS, declare, require_valid_parameters, run
from .. import names
from ..core.errors import InputError
from ..core.joints import JointMap


class SimArm(Node):
    """First-order joint tracking of the last accepted command."""

    def __init__(self, name: str = names.SIM_ARM, **kwargs):
        super().__init__(name, **kwargs)
        self.joints = tuple(declare(self, 'joint_names', Parameter.Type.STRING_ARRAY,
                                    'joints of the simulated arm') or ())
        if not self.joints:
            raise InputError('sim_arm: parameter joint_names is required')
        start = declare(self, 'initial_positions', Parameter.Type.DOUBLE_ARRAY,
                        'start pose (default: zeros)')
        self.position = np.zeros(len(self.joints)) if start is None else np.array(start, float)
        if self.position.shape != (len(self.joints),):
            raise InputError('sim_arm: initial_positions must have one value per joint')
        self.velocity = np.zeros(len(self.joints))
        self.target = self.position.copy()
        rate = declare(self, 'rate_hz', 100.0, 'joint_states rate')
        self.tau = declare(self, 'time_constant', 0.02, 'first-order tracking time constant (s)')
        controller = declare(self, 'controller_name', names.DEFAULT_CONTROLLER,
                             'controller name the commands arrive on')
        require_valid_parameters(self)
        self.dt = 1.0 / rate
        self.received = 0
        self.rejected = 0
        self._map = JointMap(self.joints)
        self._pub = self.create_publisher(JointState, names.JOINT_STATES, 10)
        self.create_subscription(Float64MultiArray, names.forward_commands(controller),
                                 self._on_forward, COMMAND_QOS)
        self.create_subscription(JointTrajectory, names.joint_trajectory(controller),
                                 self._on_trajectory, COMMAND_QOS)
        self.create_timer(self.dt, self._on_timer)

    def _accept(self, values) -> None:
        values = np.asarray(values, dtype=float)
        if values.shape != self.position.shape or not np.all(np.isfinite(values)):
            self.rejected += 1
            self.get_logger().error(f'rejected command of {values.size} values '
                                    f'(need {self.position.size} finite)',
                                    throttle_duration_sec=1.0)
            return
        self.received += 1
        self.target = values

    def _on_forward(self, msg: Float64MultiArray) -> None:
        self._accept(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self.rejected += 1
            return
        try:
            self._accept(self._map.reorder(msg.joint_names, msg.points[-1].positions))
        except InputError as exc:
            self.rejected += 1
            self.get_logger().error(f'rejected trajectory: {exc}', throttle_duration_sec=1.0)

    def _on_timer(self) -> None:
        gain = 1.0 - np.exp(-self.dt / self.tau)
        new = self.position + gain * (self.target - self.position)
        self.velocity = (new - self.position) / self.dt
        self.position = new
        msg = JointState(name=list(self.joints), position=new.tolist(),
                         velocity=self.velocity.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pub.publish(msg)


def main() -> None:
    run(SimArm)
