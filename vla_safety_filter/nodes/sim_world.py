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
sim_world: a physics world (gym-pusht) as the arm driver, so a policy loop closes over ROS.

Listens like sim_arm: a ForwardCommandController (`/<controller>/commands`, Float64MultiArray in
joint order) and a JointTrajectoryController (`/<controller>/joint_trajectory`, last point). Each
period it steps the world once with the last accepted command (wrong-length or non-finite commands
are rejected and logged; the world keeps its last target) and publishes the pusher as
`/joint_states`, the full world state as a JointState on `/world/state` (the drills'
`observation.state`), an rgb8 camera image on `/world/image` when `render`, and, on success or at
`max_steps`, `done success=<bool> steps=<n> seed=<seed> coverage=<c>` on the latched
`/vla/episode`; then it holds (keeps publishing the frozen state) until `~/reset` starts the
episode of the next seed. With `wait_for_command` an episode's steps start at its first accepted
command (the world is still until then), as a drill's do.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from .common import COMMAND_QOS, declare, LATCHED_QOS, require_valid_parameters, run
from .. import names
from ..core.drill.worlds import make_world
from ..core.errors import InputError
from ..core.joints import JointMap

#: Default joint names of each world's commanded axes (its `action_names`, in order).
WORLD_JOINTS = {'pusht': ('pusher_x', 'pusher_y')}
#: Names of each world's state vector, published on /world/state.
WORLD_STATE_NAMES = {'pusht': ('agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle')}
IMAGE_PREFIX = 'observation.images.'


class SimWorld(Node):
    """Steps a drill world once per period with the last accepted command; reports its episode."""

    def __init__(self, name: str = names.SIM_WORLD, **kwargs):
        super().__init__(name, **kwargs)
        world_name = declare(self, 'world', 'pusht', 'world to simulate: pusht')
        render = declare(self, 'render', False, 'publish the camera image on /world/image')
        self.world = make_world(world_name, render=render)
        self.seed = declare(self, 'seed', 0, 'first episode seed; each ~/reset takes the next')
        rate = declare(self, 'rate_hz', 1.0 / self.world.dt,
                       'world steps per second (each step is one world period of physics)')
        controller = declare(self, 'controller_name', names.DEFAULT_CONTROLLER,
                             'controller name the commands arrive on')
        joints = declare(self, 'joint_names', Parameter.Type.STRING_ARRAY,
                         "names of the commanded axes (default: the world's, e.g. pusher_x, "
                         'pusher_y)')
        self.max_steps = declare(self, 'max_steps', self.world.max_steps,
                                 'episode length in steps; then /vla/episode reports done')
        self.wait_for_command = declare(
            self, 'wait_for_command', False, 'an episode steps from its first accepted command '
            "(as a drill's step 0 is the first action), not from its reset")
        require_valid_parameters(self)
        self.joints = tuple(joints or WORLD_JOINTS[self.world.name])
        self._check(rate)
        self.dt = 1.0 / rate
        self._map = JointMap(self.joints)
        self._start_episode()
        self._joint_pub = self.create_publisher(JointState, names.JOINT_STATES, 10)
        self._state_pub = self.create_publisher(JointState, names.WORLD_STATE, 10)
        self._image_pub = self.create_publisher(Image, names.WORLD_IMAGE, 2) if render else None
        self._episode_pub = self.create_publisher(String, names.EPISODE, LATCHED_QOS)
        self.create_subscription(Float64MultiArray, names.forward_commands(controller),
                                 self._on_forward, COMMAND_QOS)
        self.create_subscription(JointTrajectory, names.joint_trajectory(controller),
                                 self._on_trajectory, COMMAND_QOS)
        self.create_service(Trigger, names.RESET, self._on_reset)
        self.create_timer(self.dt, self._on_timer)

    def _check(self, rate: float) -> None:
        """Refuse parameters the world cannot run with (InputError names the parameter)."""
        if len(self.joints) != len(self.world.action_names):
            raise InputError(f'sim_world: joint_names needs {len(self.world.action_names)} names '
                             f'for world {self.world.name}, got {list(self.joints)}')
        if not rate > 0:
            raise InputError(f'sim_world: rate_hz must be > 0, got {rate}')
        if self.max_steps < 1:
            raise InputError(f'sim_world: max_steps must be >= 1, got {self.max_steps}')
        if self.seed < 0:
            raise InputError(f'sim_world: seed must be >= 0, got {self.seed}')

    def _start_episode(self) -> None:
        """Reset the world to the current seed; the pusher holds where it starts."""
        self.state = self.world.reset(self.seed)
        self.position = self.world.measured_position()
        self.velocity = np.zeros_like(self.position)
        self.steps = 0
        self.done = False
        self._pending = None
        self._started = not self.wait_for_command

    def _accept(self, values) -> None:
        values = np.asarray(values, dtype=float)
        if values.shape != self.position.shape or not np.all(np.isfinite(values)):
            self.get_logger().error(f'rejected command of {values.size} values (need '
                                    f'{self.position.size} finite)', throttle_duration_sec=1.0)
            return
        self._pending = values
        self._started = True

    def _on_forward(self, msg: Float64MultiArray) -> None:
        self._accept(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self.get_logger().error('rejected trajectory without points',
                                    throttle_duration_sec=1.0)
            return
        try:
            self._accept(self._map.reorder(msg.joint_names, msg.points[-1].positions))
        except InputError as exc:
            self.get_logger().error(f'rejected trajectory: {exc}', throttle_duration_sec=1.0)

    def _on_reset(self, _request, response):
        """Start the episode of the next seed."""
        self.seed += 1
        self._start_episode()
        response.success, response.message = True, f'episode seed={self.seed}'
        self.get_logger().info(f'reset: episode seed={self.seed}')
        return response

    def _on_timer(self) -> None:
        if not self.done and self._started:
            self._step()
        stamp = self.get_clock().now().to_msg()
        self._publish_states(stamp)
        if self._image_pub is not None:
            self._publish_image(stamp)

    def _step(self) -> None:
        """One world step with the newest accepted command (None: the world keeps its target)."""
        command, self._pending = self._pending, None
        result = self.world.step(command)
        self.state = result.state
        self.steps += 1
        new = self.world.measured_position()
        self.velocity = (new - self.position) / self.dt
        self.position = new
        if result.success or self.steps >= self.max_steps:
            self.done = True
            text = (f'done success={str(result.success).lower()} steps={self.steps} '
                    f'seed={self.seed} coverage={result.coverage:.3f}')
            self._episode_pub.publish(String(data=text))
            self.get_logger().info(f'episode {text}; holding until ~/reset')

    def _publish_states(self, stamp) -> None:
        joints = JointState(name=list(self.joints), position=self.position.tolist(),
                            velocity=self.velocity.tolist())
        joints.header.stamp = stamp
        self._joint_pub.publish(joints)
        world = JointState(name=list(WORLD_STATE_NAMES[self.world.name]),
                           position=self.state.tolist())
        world.header.stamp = stamp
        self._state_pub.publish(world)

    def _publish_image(self, stamp) -> None:
        """Publish the world's first camera as rgb8 (H x W x 3 uint8)."""
        obs = self.world.observation()
        pixels = next(v for k, v in obs.items() if k.startswith(IMAGE_PREFIX))
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding='rgb8',
                    is_bigendian=0, step=pixels.shape[1] * 3, data=pixels.tobytes())
        msg.header.stamp = stamp
        msg.header.frame_id = f'{self.world.name}_camera'
        self._image_pub.publish(msg)

    def destroy_node(self):
        self.world.close()
        return super().destroy_node()


def main() -> None:
    run(SimWorld)
