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
sim_world over real rclpy/DDS: the PushT world as the arm driver.

Everything through public interfaces: /joint_states, /world/state, /world/image, /vla/episode,
the controller's command topics, the ~/reset service and /rosout.
"""
import re
import time

import numpy as np
import pytest
from rcl_interfaces.msg import Log
from ros_harness import wait_for
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter import names
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.nodes.common import LATCHED_QOS

pytest.importorskip('gym_pusht')
from vla_safety_filter.nodes.sim_world import SimWorld  # noqa: E402

CONTROLLER = 'arm'
JOINTS = ['pusher_x', 'pusher_y']
STATE_NAMES = ['agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle']


class Probe:
    """Records what sim_world publishes and sends it commands."""

    def __init__(self, ros):
        self.node = ros.node('probe')
        self.joints, self.world, self.images, self.episodes, self.errors = [], [], [], [], []
        node = self.node
        node.create_subscription(JointState, names.JOINT_STATES, self.joints.append, 100)
        node.create_subscription(JointState, names.WORLD_STATE, self.world.append, 100)
        node.create_subscription(Image, names.WORLD_IMAGE, self.images.append, 10)
        node.create_subscription(String, names.EPISODE, lambda m: self.episodes.append(m.data),
                                 LATCHED_QOS)
        node.create_subscription(Log, '/rosout', self._on_log, 100)
        self._forward = node.create_publisher(Float64MultiArray, f'/{CONTROLLER}/commands', 10)
        self._trajectory = node.create_publisher(JointTrajectory,
                                                 f'/{CONTROLLER}/joint_trajectory', 10)

    def _on_log(self, msg: Log) -> None:
        if msg.name == 'sim_world' and msg.level >= Log.ERROR:
            self.errors.append(msg.msg)

    def connected(self) -> bool:
        """sim_world hears our commands and we hear its states."""
        return (self._forward.get_subscription_count() > 0
                and self._trajectory.get_subscription_count() > 0 and len(self.joints) > 0)

    def forward(self, values) -> None:
        self._forward.publish(Float64MultiArray(data=[float(v) for v in values]))

    def trajectory(self, names, positions) -> None:
        """Publish a one-point trajectory to `positions` (None: a trajectory without points)."""
        points = [] if positions is None else [
            JointTrajectoryPoint(positions=[float(v) for v in positions])]
        self._trajectory.publish(JointTrajectory(joint_names=list(names), points=points))

    def position(self) -> np.ndarray:
        return np.array(self.joints[-1].position)

    def reset(self) -> Trigger.Response:
        client = self.node.create_client(Trigger, '/sim_world/reset')
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=10)
        return future.result()


def start(ros, **params) -> Probe:
    ros.add(SimWorld, 'sim_world', controller_name=CONTROLLER, **params)
    probe = Probe(ros)
    assert wait_for(probe.connected, timeout=10)
    return probe


def drive_to(probe, target, send, timeout=8.0) -> float:
    """Send `target` each 0.1 s until the pusher is within 2 px; returns the last distance."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send(target)
        if np.linalg.norm(probe.position() - target) < 2.0:
            break
        time.sleep(0.1)
    return float(np.linalg.norm(probe.position() - target))


def test_joint_and_world_state_are_published_at_the_rate(ros):
    probe = start(ros, rate_hz=20.0, seed=3)
    first_joints, first_world = len(probe.joints), len(probe.world)
    time.sleep(2.0)
    joints, world = probe.joints[first_joints:], probe.world[first_world:]
    # 40 periods elapsed: allow a loaded machine to miss many, but never to invent periods
    for received in (joints, world):
        assert 15 <= len(received) <= 46
    assert all(list(m.name) == JOINTS for m in joints)
    assert all(list(m.name) == STATE_NAMES for m in world)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in joints]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    # the joints are the agent's position in the full world state of the same step
    world_at = {(m.header.stamp.sec, m.header.stamp.nanosec): m.position for m in world}
    paired = [(m.position, world_at[(m.header.stamp.sec, m.header.stamp.nanosec)])
              for m in joints if (m.header.stamp.sec, m.header.stamp.nanosec) in world_at]
    assert len(paired) >= 10
    assert all(np.allclose(position, state[:2]) for position, state in paired)
    assert all(0.0 <= v <= 512.0 for m in world for v in m.position[:4])


def test_forward_commands_and_trajectories_move_the_pusher(ros):
    probe = start(ros, rate_hz=20.0, seed=0)
    home = probe.position()
    target = np.clip(home + [-60.0, 40.0], 60.0, 450.0)
    assert drive_to(probe, target, probe.forward) < 2.0
    # a trajectory names its joints: the reversed order must still reach (x, y)
    second = np.clip(target + [40.0, -50.0], 60.0, 450.0)
    assert drive_to(probe, second, lambda t: probe.trajectory(JOINTS[::-1], t[::-1])) < 2.0
    assert probe.errors == []


BAD_COMMANDS = {
    'short': lambda p: p.forward([100.0]),
    'long': lambda p: p.forward([100.0, 200.0, 300.0]),
    'nan': lambda p: p.forward([float('nan'), 200.0]),
    'inf': lambda p: p.trajectory(JOINTS, [200.0, float('inf')]),
    'unknown joint': lambda p: p.trajectory(['pusher_x', 'pusher_z'], [200.0, 200.0]),
    'no points': lambda p: p.trajectory(JOINTS, None),
}


@pytest.mark.parametrize('bad', sorted(BAD_COMMANDS))
def test_bad_commands_are_rejected_and_the_world_keeps_stepping(ros, bad):
    probe = start(ros, rate_hz=20.0, seed=1)
    target = np.clip(probe.position() + [30.0, 30.0], 60.0, 450.0)
    assert drive_to(probe, target, probe.forward) < 2.0
    before = len(probe.joints)
    for _ in range(5):
        BAD_COMMANDS[bad](probe)
        time.sleep(0.05)
    assert wait_for(lambda: probe.errors, timeout=5)
    assert probe.errors[0].startswith('rejected')
    assert wait_for(lambda: len(probe.joints) >= before + 10, timeout=5)
    # held at the last accepted target over every state published since
    assert all(np.linalg.norm(np.array(m.position) - target) < 2.0
               for m in probe.joints[before:])


def test_episode_done_at_max_steps_then_holds_and_reset_starts_the_next_seed(ros):
    probe = start(ros, rate_hz=20.0, seed=5, max_steps=10)
    assert wait_for(lambda: probe.episodes, timeout=10)
    assert len(probe.episodes) == 1
    assert re.fullmatch(r'done success=false steps=10 seed=5 coverage=0\.\d{3}', probe.episodes[0])
    held = probe.position()
    start_state = list(probe.world[-1].position)
    count = len(probe.joints)
    for _ in range(5):      # the episode is over: commands no longer move the pusher
        probe.forward(held + [40.0, 40.0])
        time.sleep(0.05)
    assert wait_for(lambda: len(probe.joints) >= count + 5, timeout=5)
    assert all(np.allclose(m.position, held) for m in probe.joints[count:])

    answer = probe.reset()
    assert answer.success and answer.message == 'episode seed=6'
    assert wait_for(lambda: len(probe.episodes) == 2, timeout=10)
    assert probe.episodes[1].startswith('done success=false steps=10 seed=6 coverage=')
    assert probe.world[-1].position != start_state


def test_with_wait_for_command_an_episode_steps_from_its_first_command(ros):
    probe = start(ros, rate_hz=20.0, seed=5, max_steps=10, wait_for_command=True)
    time.sleep(1.0)                      # 20 periods without a command: not a step taken
    assert probe.episodes == []
    probe.forward(probe.position() + [10.0, 10.0])
    assert wait_for(lambda: probe.episodes, timeout=10)
    assert probe.episodes[0].startswith('done success=false steps=10 seed=5')
    probe.reset()
    time.sleep(1.0)                      # the next episode waits for its own first command
    assert len(probe.episodes) == 1


def test_render_publishes_a_well_formed_rgb8_image(ros):
    probe = start(ros, render=True)
    assert wait_for(lambda: probe.images, timeout=10)
    image = probe.images[-1]
    assert image.encoding == 'rgb8' and image.is_bigendian == 0
    assert image.height > 0 and image.width > 0 and image.step == image.width * 3
    assert len(image.data) == image.height * image.step
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    assert pixels.std() > 0    # a drawn scene, not a blank frame


def test_no_image_without_render(ros):
    probe = start(ros)
    time.sleep(0.5)
    assert probe.images == []


@pytest.mark.parametrize('params', [{'world': 'cartpole'}, {'joint_names': ['only_one']},
                                    {'rate_hz': 0.0}, {'max_steps': 0}, {'seed': -1},
                                    {'rate_hz': 'fast'}])
def test_invalid_parameters_are_refused(ros, params):
    with pytest.raises(InputError):
        ros.add(SimWorld, 'sim_world', **params)
