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
Probes of the safety filter shared by the node tests: a publisher/recorder and a tracking arm.

A plain helper module like ros_harness.py (test modules import it; they never import each other);
conftest.py wraps these in the fixtures `filter_probe`, `fake_arm`, `service_call` and
`small_contract`.
"""
import sys
import time

import numpy as np


def filter_argv(params: dict) -> list:
    """Return the command line of the filter's entry point with `params` as -p overrides."""
    argv = [sys.executable, '-c',
            'from vla_safety_filter.nodes.safety_filter import main; main()', '--ros-args']
    for key, value in params.items():
        text = f'[{",".join(map(str, value))}]' if isinstance(value, list) else str(value)
        argv += ['-p', f'{key}:={text}']
    return argv


#: A small 3-joint contract for the filter's tests (100 Hz, 2 rad/s).
SMALL_CONTRACT = {'joint_names': ['j0', 'j1', 'j2'], 'lower': [-1.0, -1.0, -1.0],
                  'upper': [1.0, 1.0, 1.0], 'max_velocity': [2.0, 2.0, 2.0],
                  'control_rate_hz': 100.0}


def call_service(node, srv_type, name, request, timeout=10.0):
    """Call a service from the test thread (the harness spins the node in the background)."""
    from ros_harness import wait_for

    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), name
    future = client.call_async(request)
    assert wait_for(future.done, timeout=timeout), f'{name} did not answer'
    node.destroy_client(client)
    return future.result()


class FilterProbe:
    """
    Publish raw actions, stops and episodes; record what the filter sends.

    Commands (with arrival times), the safe action, events and the filter's /diagnostics.
    """

    def __init__(self, ros, controller='arm'):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Bool, Float64MultiArray, String
        from trajectory_msgs.msg import JointTrajectory
        from vla_safety_filter import names
        from vla_safety_filter.nodes.common import LATCHED_QOS

        self.node = ros.node('probe')
        self.raw = self.node.create_publisher(JointTrajectory, names.RAW_ACTION, 10)
        self.stop = self.node.create_publisher(Bool, names.SAFETY_STOP, LATCHED_QOS)
        self.episode = self.node.create_publisher(String, names.EPISODE, LATCHED_QOS)
        self.commands, self.times, self.trajectories, self.safe, self.events = [], [], [], [], []
        self.status = None
        self.node.create_subscription(Float64MultiArray, names.forward_commands(controller),
                                      self._on_command, 1000)
        self.node.create_subscription(JointTrajectory, names.joint_trajectory(controller),
                                      self.trajectories.append, 100)
        self.node.create_subscription(JointTrajectory, names.SAFE_ACTION, self.safe.append, 1000)
        self.node.create_subscription(DiagnosticArray, names.FILTER_EVENTS,
                                      lambda m: self.events.extend(s.message for s in m.status),
                                      1000)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 100)

    def _on_command(self, msg):
        self.times.append(time.monotonic())
        self.commands.append(list(msg.data))

    def _on_diag(self, msg):
        from vla_safety_filter import names

        for s in msg.status:
            if s.name == names.FILTER_STATUS:
                self.status = s

    def state(self):
        """Return the filter's state as /diagnostics reports it."""
        if self.status is None:
            return None
        return {kv.key: kv.value for kv in self.status.values}.get('state')

    def send(self, positions, names=SMALL_CONTRACT['joint_names'], dt=0.01, stamp=None):
        """Publish one raw action chunk, one point per row, `dt` apart."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        points = [JointTrajectoryPoint(positions=[float(x) for x in p], time_from_start=Duration(
            nanosec=int((k + 1) * dt * 1e9))) for k, p in enumerate(np.atleast_2d(positions))]
        msg = JointTrajectory(joint_names=list(names), points=points)
        if stamp is not None:
            msg.header.stamp = stamp
        self.raw.publish(msg)

    def transition(self, transition_id, name='safety_filter', attempts=6):
        """
        Request a lifecycle transition; return whether it succeeded.

        A request sent while a new process's service has not yet matched the client's reply
        reader is lost in DDS: each attempt waits 5 s, then sends again (a repeat refused because
        the lost one's transition happened counts when the node is in the target state).
        """
        from lifecycle_msgs.msg import State, Transition
        from lifecycle_msgs.srv import ChangeState
        from ros_harness import wait_for

        target = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
                  Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
                  Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
                  Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED}
        client = self.node.create_client(ChangeState, f'/{name}/change_state')
        try:
            assert client.wait_for_service(timeout_sec=30.0), f'/{name}/change_state'
            for attempt in range(attempts):
                future = client.call_async(ChangeState.Request(
                    transition=Transition(id=transition_id)))
                if wait_for(future.done, timeout=5.0):
                    return future.result().success or (
                        attempt > 0 and self.lifecycle_state(name) == target.get(transition_id))
                client.remove_pending_request(future)
            raise AssertionError(f'/{name}/change_state did not answer')
        finally:
            self.node.destroy_client(client)

    def lifecycle_state(self, name='safety_filter'):
        """Return the node's lifecycle state id."""
        from lifecycle_msgs.srv import GetState

        return call_service(self.node, GetState, f'/{name}/get_state',
                            GetState.Request()).current_state.id

    def reset(self):
        """Call the filter's reset service; return its response."""
        from std_srvs.srv import Trigger

        return call_service(self.node, Trigger, '/safety_filter/reset', Trigger.Request())


class FakeArm:
    """A perfectly tracking arm: /joint_states at 100 Hz = the last command, unless moved."""

    def __init__(self, ros, start, controller='arm', names=SMALL_CONTRACT['joint_names']):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from vla_safety_filter import names as topics

        self._state = JointState
        self.node = ros.node('fake_arm')
        self.names, self.position = list(names), np.array(start, dtype=float)
        self.follow = True
        self.pub = self.node.create_publisher(JointState, topics.JOINT_STATES, 10)
        self.node.create_subscription(Float64MultiArray, topics.forward_commands(controller),
                                      self._on_command, 100)
        self.node.create_timer(0.01, self._publish)

    def _on_command(self, msg):
        if self.follow:
            self.position = np.array(msg.data)

    def move_by_hand(self, position):
        """Stop following the commands and stand at `position`."""
        self.follow, self.position = False, np.array(position, dtype=float)

    def _publish(self):
        self.pub.publish(self._state(name=self.names, position=self.position.tolist()))
