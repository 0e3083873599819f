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
The executor choice (issue 15): the filter under the single-threaded and the events executor.

Everything the node needs, verified under each over real DDS: lifecycle services, parameter
services, timers, subscriptions (with message info), /diagnostics; and the process entry point
`executor:=events` started as `ros2 run` starts it, ended by Ctrl-C. Where rclpy has no
EventsExecutor, or a node has coroutine callbacks (which it never runs), the choice falls back to
the single-threaded one with a warning.
"""
import os
import signal
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from ros_harness import next_domain, wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter import names
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.nodes import common
from vla_safety_filter.nodes.common import make_executor, spin_until_shutdown
from vla_safety_filter.nodes.safety_filter import SafetyFilter

NAMES = ['a', 'b']
PARAMS = {'joint_names': NAMES, 'lower': [-1.0, -1.0], 'upper': [1.0, 1.0],
          'max_velocity': [1.0, 1.0], 'controller_name': 'arm', 'control_rate_hz': 100.0}
EXECUTORS = ['single', 'events']


class World:
    """One context on its own domain, spun by the chosen executor; a probe node and an arm."""

    def __init__(self, executor: str):
        self.context = Context()
        self.domain = next_domain()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.executor = make_executor(executor, self.context)
        self.probe = rclpy.create_node('probe', context=self.context)
        self.commands, self.status = [], None
        self.probe.create_subscription(Float64MultiArray, '/arm/commands',
                                       lambda m: self.commands.append(list(m.data)), 100)
        self.probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 100)
        self.raw = self.probe.create_publisher(JointTrajectory, names.RAW_ACTION, 10)
        states = self.probe.create_publisher(JointState, names.JOINT_STATES, 10)
        self.probe.create_timer(0.02, lambda: states.publish(
            JointState(name=NAMES, position=[0.0, 0.0])))
        self.nodes = [self.probe]
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=spin_until_shutdown,
                                       args=(self.executor, self.context), daemon=True)
        self.thread.start()

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name == 'vla_safety/filter':
                self.status = {kv.key: kv.value for kv in s.values}

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def call(self, srv_type, name, request):
        """Call a service from the test thread; return the response (None on timeout)."""
        client = self.probe.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10.0), name
        future = client.call_async(request)
        wait_for(future.done, timeout=10.0)
        self.probe.destroy_client(client)
        return future.result()

    def transition(self, transition_id):
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, '/safety_filter/change_state', request).success

    def state(self):
        return self.call(GetState, '/safety_filter/get_state',
                         GetState.Request()).current_state.id

    def stream(self, target, seconds):
        """Send one-point actions due now every 10 ms for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.raw.publish(JointTrajectory(joint_names=NAMES, points=[
                JointTrajectoryPoint(positions=[float(x) for x in target])]))
            time.sleep(0.01)

    def close(self):
        self.context.try_shutdown()
        self.thread.join(timeout=5)
        for node in self.nodes:
            node.destroy_node()


class Warnings(list):
    """A logger that keeps its warnings."""

    def warning(self, text):
        self.append(text)


@pytest.fixture(params=EXECUTORS)
def world(request):
    w = World(request.param)
    yield w
    w.close()


def _set(world, name, value):
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return world.call(SetParameters, '/safety_filter/set_parameters', request).results[0]


def test_lifecycle_parameters_timers_and_subscriptions_are_served(world):
    world.add(SafetyFilter(context=world.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in PARAMS.items()]))
    for _ in range(2):                                   # a full cycle, then again
        assert world.transition(Transition.TRANSITION_CONFIGURE)
        assert wait_for(lambda: world.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
        assert world.state() == State.PRIMARY_STATE_ACTIVE
        world.commands.clear()
        world.stream([0.5, -0.5], 1.0)                   # subscription + arrivals + timer
        assert wait_for(lambda: world.commands and world.commands[-1] == [0.5, -0.5])
        assert 50 < len(world.commands) < 200            # one timer (plus arrivals), not two
        assert world.transition(Transition.TRANSITION_DEACTIVATE)
        assert world.transition(Transition.TRANSITION_CLEANUP)
        assert world.state() == State.PRIMARY_STATE_UNCONFIGURED
    rate = world.call(GetParameters, '/safety_filter/get_parameters',
                      GetParameters.Request(names=['control_rate_hz'])).values[0]
    assert rate.double_value == 100.0
    assert _set(world, 'speed_scale', 0.5).successful
    assert not _set(world, 'control_rate_hz', 50.0).successful          # read-only
    assert world.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: world.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    world.stream([0.5, -0.5], 0.5)
    assert wait_for(lambda: world.status is not None and
                    float(world.status.get('timing.commands', 0)) > 20, timeout=5)
    assert float(world.status['timing.latency_p50_ms']) > 0      # message info reached it


def test_events_falls_back_to_single_with_a_warning_where_rclpy_lacks_it(monkeypatch):
    warnings = Warnings()
    monkeypatch.setattr(common, 'events_executor', lambda: (None, 'not in this rclpy'))
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        executor = make_executor('events', context, warnings)
        assert isinstance(executor, SingleThreadedExecutor)
        assert len(warnings) == 1 and 'falling back' in warnings[0]
        with pytest.raises(InputError, match='executor'):
            make_executor('multi', context)
    finally:
        context.try_shutdown()


def test_events_falls_back_for_nodes_with_coroutine_callbacks():
    """Async services (which rclpy's EventsExecutor never answers) are served by the fallback."""
    warnings = Warnings()

    async def answer(request, response):
        response.success = True
        return response

    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    plain = rclpy.create_node('plain', context=context)
    manager = rclpy.create_node('manager', context=context)
    manager.create_service(Trigger, '/manager/ping', answer)
    try:
        assert not isinstance(make_executor('events', context, warnings, [plain]),
                              SingleThreadedExecutor)
        executor = make_executor('events', context, warnings, [plain, manager])
        assert isinstance(executor, SingleThreadedExecutor)
        assert len(warnings) == 1 and 'manager use coroutine callbacks' in warnings[0]
        for node in (plain, manager):
            executor.add_node(node)
        thread = threading.Thread(target=spin_until_shutdown, args=(executor, context),
                                  daemon=True)
        thread.start()
        client = plain.create_client(Trigger, '/manager/ping')
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5.0) and future.result().success
    finally:
        context.try_shutdown()
        plain.destroy_node()
        manager.destroy_node()


@pytest.mark.parametrize('executor', EXECUTORS)
def test_the_process_entry_point_runs_under_the_chosen_executor_and_ends_on_ctrl_c(
        tmp_path, executor):
    world = World('single')
    try:
        args = [f'{k}:={v}' if not isinstance(v, list) else f'{k}:=[{",".join(map(repr, v))}]'
                for k, v in {**PARAMS, 'executor': executor}.items()]
        argv = [sys.executable, '-c',
                'from vla_safety_filter.nodes.safety_filter import main; main()', '--ros-args']
        for arg in args:
            argv += ['-p', arg.replace("'", '')]
        log = open(tmp_path / 'filter.log', 'w+')
        env = dict(os.environ, ROS_DOMAIN_ID=str(world.domain))
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert world.transition(Transition.TRANSITION_CONFIGURE)
            assert wait_for(lambda: world.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
            world.stream([-0.5, 0.5], 1.0)
            assert wait_for(lambda: world.commands and world.commands[-1] == [-0.5, 0.5])
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        log.seek(0)
        output = log.read()
        assert code == 0, output
        name = 'EventsExecutor' if executor == 'events' else 'SingleThreadedExecutor'
        assert f'executor: {name}' in output
    finally:
        world.close()
