"""safety_filter + sim_arm over real rclpy/DDS: activation, guarding, refusals, watchdog, latch."""
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from diagnostic_msgs.msg import DiagnosticArray

from ros_harness import wait_for
from vla_safety_filter.nodes.common import LATCHED_QOS
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

JOINTS = ['j0', 'j1', 'j2']
CONTRACT = dict(joint_names=JOINTS, lower=[-1.0, -1.0, -1.0], upper=[1.0, 1.0, 1.0],
                max_velocity=[2.0, 2.0, 2.0], control_rate_hz=100.0)


class Probe:
    """Publishes raw actions and records what reaches the controller topics."""

    def __init__(self, ros, controller='arm'):
        self.node = ros.node('probe')
        self.raw = self.node.create_publisher(JointTrajectory, '/vla/raw_action', 10)
        self.stop = self.node.create_publisher(Bool, '/vla/safety_stop', LATCHED_QOS)
        self.commands, self.trajectories, self.events = [], [], []
        self.node.create_subscription(Float64MultiArray, f'/{controller}/commands',
                                      lambda m: self.commands.append(list(m.data)), 100)
        self.node.create_subscription(JointTrajectory, f'/{controller}/joint_trajectory',
                                      self.trajectories.append, 100)
        self.node.create_subscription(DiagnosticArray, '/vla/filter_events',
                                      lambda m: self.events.extend(s.message for s in m.status), 100)

    def send(self, positions, names=JOINTS, dt=0.01):
        points = [JointTrajectoryPoint(positions=list(p), time_from_start=Duration(
            nanosec=int((k + 1) * dt * 1e9))) for k, p in enumerate(np.atleast_2d(positions))]
        self.raw.publish(JointTrajectory(joint_names=list(names), points=points))


def _pipeline(ros, output='forward_command', **extra):
    arm = ros.add(SimArm, 'sim_arm', joint_names=JOINTS, controller_name='arm',
                  initial_positions=[0.0, 0.5, 1.5])
    filt = ros.add(SafetyFilter, 'safety_filter', controller_name='arm', output=output,
                   command_timeout=0.2, **CONTRACT, **extra)
    probe = Probe(ros)
    assert filt.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: filt._joint_state is not None)
    assert filt.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return arm, filt, probe


def _stream(probe, targets, period=0.01):
    for t in targets:
        probe.send(t)
        time.sleep(period)


def test_activation_refused_without_joint_states(ros):
    filt = ros.add(SafetyFilter, 'safety_filter', **CONTRACT)
    probe = Probe(ros, controller='forward_position_controller')
    assert filt.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert filt.trigger_activate() == TransitionCallbackReturn.FAILURE
    probe.send([0.1, 0.1, 0.1])
    time.sleep(0.3)
    assert probe.commands == []
    status = filt.diagnostic_status()          # reported until a transition succeeds
    assert status.level == b'\x02' and status.message.startswith('activation refused: no recent')


def test_commands_stay_in_contract_and_rate_limit_starting_out_of_bounds(ros):
    arm, filt, probe = _pipeline(ros)
    _stream(probe, [[0.9, -3.0, 0.9]] * 60)     # j1 asks outside bounds; j2 starts at 1.5 > upper
    assert wait_for(lambda: len(probe.commands) > 40)
    cmds = np.array(probe.commands)
    step = 2.0 / 100.0
    assert np.all(np.abs(np.diff(cmds, axis=0)) <= step + 1e-9)
    assert np.all(cmds[:, :2] >= -1.0) and np.all(cmds[:, :2] <= 1.0)
    assert cmds[0][2] == pytest.approx(1.5 - step, abs=0.02)   # moved toward bounds, no jump
    assert 'position' in probe.events and 'velocity' in probe.events


def test_nan_wrong_length_and_unknown_joint_hold_with_events(ros):
    arm, filt, probe = _pipeline(ros)
    _stream(probe, [[0.05, 0.5, 1.0]] * 20)
    wait_for(lambda: len(probe.commands) > 5)
    probe.send([np.nan, 0.5, 1.0])
    probe.send([0.1, 0.2])
    probe.send([0.1, 0.2, 0.3], names=['j0', 'j1', 'elbow'])
    assert wait_for(lambda: {'nonfinite', 'shape', 'unknown_joint'} <= set(probe.events))
    assert np.all(np.isfinite(np.array(probe.commands)))
    assert arm.rejected == 0


def test_stale_input_holds_then_stops_publishing(ros):
    arm, filt, probe = _pipeline(ros)
    assert wait_for(lambda: probe.send([0.1, 0.5, 1.0]) or len(probe.commands) > 5)
    sent = len(probe.commands)
    assert wait_for(lambda: filt._executive.state == 'stopped', timeout=2.0)  # > 2 x timeout
    time.sleep(0.1)
    count = len(probe.commands)
    time.sleep(0.3)
    assert len(probe.commands) == count                     # stopped: nothing published
    assert count - sent >= 10                               # ~0.2 s of holds at 100 Hz came first
    assert np.allclose(probe.commands[-10:], probe.commands[-1])   # ... all the same command


def test_latched_stop_until_reset(ros):
    arm, filt, probe = _pipeline(ros)
    _stream(probe, [[0.1, 0.5, 1.0]] * 5)
    probe.stop.publish(Bool(data=True))
    assert wait_for(lambda: filt._executive.state == 'latched' or
                    (probe.send([0.1, 0.5, 1.0]) and False))
    count = len(probe.commands)
    _stream(probe, [[0.1, 0.5, 1.0]] * 10)
    assert len(probe.commands) == count
    client = probe.node.create_client(Trigger, '/safety_filter/reset')
    assert client.wait_for_service(timeout_sec=5)
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done) and future.result().success
    _stream(probe, [[0.1, 0.5, 1.0]] * 10)
    assert len(probe.commands) > count


def test_joint_trajectory_output_in_controller_order(ros):
    arm, filt, probe = _pipeline(ros, output='joint_trajectory',
                                 controller_joints=['j2', 'j0', 'j1'])
    _stream(probe, [[0.2, 0.5, 1.0]] * 30)
    assert wait_for(lambda: len(probe.trajectories) > 10)
    msg = probe.trajectories[-1]
    assert msg.joint_names == ['j2', 'j0', 'j1']
    assert msg.points[0].time_from_start.nanosec == 10_000_000    # dt, never 0
    assert wait_for(lambda: abs(arm.position[0] - 0.2) < 0.05)     # the arm got there by name


def test_contract_parameters_are_read_only(ros):
    arm, filt, probe = _pipeline(ros)
    from rclpy.parameter import Parameter
    result = filt.set_parameters([Parameter('upper', value=[5.0, 5.0, 5.0])])
    assert not result[0].successful
