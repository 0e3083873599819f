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
safety_filter over real rclpy/DDS, driven only through its public interfaces.

Topics, services, lifecycle transitions, parameters and /diagnostics: activation, guarding,
refusals, watchdog, latch, resume, shadow runs.
"""
import time

from lifecycle_msgs.msg import State, Transition
import numpy as np
from probes import call_service, FakeArm, FilterProbe, SMALL_CONTRACT
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_harness import wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from vla_safety_filter.names import JOINT_STATES, SAFETY_STOP
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

CONTRACT = SMALL_CONTRACT
JOINTS = CONTRACT['joint_names']
VMAX, DT = 2.0, 0.01
OK, WARN, ERROR = b'\x00', b'\x01', b'\x02'


def _filter(ros, **extra):
    params = {**CONTRACT, 'controller_name': 'arm', 'command_timeout': 0.2, **extra}
    return ros.add(SafetyFilter, 'safety_filter', **params)


def _pipeline(ros, output='forward_command', arm='sim', **extra):
    if arm == 'sim':
        ros.add(SimArm, 'sim_arm', joint_names=JOINTS, controller_name='arm',
                initial_positions=[0.0, 0.5, 1.5])
    else:
        arm = FakeArm(ros, [0.0, 0.5, 0.9])
    _filter(ros, output=output, **extra)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    return arm, probe


def _stream(probe, targets, period=0.01):
    for t in targets:
        probe.send(t)
        time.sleep(period)


def _guard_speed(probe, window=0.3):
    """
    Return the largest |dq| / dt over windows of at least `window` s of /vla/safe_action.

    Its stamps are the ticks' own times (what the guard limits); the controller topic carries
    the same commands, delivered with the machine's scheduling jitter on top.
    """
    times = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in probe.safe])
    commands = np.array([m.points[0].positions for m in probe.safe])
    worst = 0.0
    for i in range(len(times)):
        j = np.searchsorted(times, times[i] + window)
        if j < len(times):
            worst = max(worst, np.max(np.abs(commands[j] - commands[i])) / (times[j] - times[i]))
    return worst


def test_activation_refused_without_joint_states(ros):
    _filter(ros)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert not probe.transition(Transition.TRANSITION_ACTIVATE)
    probe.send([0.1, 0.1, 0.1])
    time.sleep(0.3)
    assert probe.commands == [] and probe.lifecycle_state() == State.PRIMARY_STATE_INACTIVE
    assert wait_for(lambda: probe.status is not None and probe.status.level == ERROR)
    assert probe.status.message.startswith('activate refused: no /joint_states younger')


def test_commands_stay_in_contract_and_rate_limit_starting_out_of_bounds(ros):
    arm, probe = _pipeline(ros)
    _stream(probe, [[0.9, -3.0, 0.9]] * 60)     # j1 asks outside bounds; j2 starts at 1.5 > upper
    assert wait_for(lambda: len(probe.commands) > 40)
    cmds = np.array(probe.commands)
    step = VMAX * DT
    assert np.all(np.abs(np.diff(cmds, axis=0)) <= 2 * step + 1e-9)   # a late tick: 2 periods
    assert _guard_speed(probe) <= VMAX * 1.001
    assert np.all(cmds[:, :2] >= -1.0) and np.all(cmds[:, :2] <= 1.0)
    assert cmds[0][2] == pytest.approx(1.5 - step, abs=0.03)   # moved toward bounds, no jump
    assert 'position' in probe.events and 'velocity' in probe.events


def test_nan_wrong_length_unknown_joint_and_stale_chunks_hold_with_events(ros):
    arm, probe = _pipeline(ros)
    _stream(probe, [[0.05, 0.5, 1.0]] * 20)
    wait_for(lambda: len(probe.commands) > 5)
    probe.send([np.nan, 0.5, 1.0])
    probe.send([0.1, 0.2])
    probe.send([0.1, 0.2, 0.3], names=['j0', 'j1', 'elbow'])
    old = probe.node.get_clock().now() - rclpy_duration(1.0)
    probe.send([0.9, 0.9, 0.9], stamp=old.to_msg())          # queued for a second: stale
    assert wait_for(lambda: {'nonfinite', 'shape', 'unknown_joint', 'stale'} <= set(probe.events))
    cmds = np.array(probe.commands)
    assert np.all(np.isfinite(cmds)) and np.max(cmds[:, 0]) < 0.2   # the stale 0.9 never ran


def test_unknown_joint_is_refused_even_when_joint_states_carry_it(ros):
    """A joint known from /joint_states (extra joints allowed there) is unknown in an action."""
    ros.add(SimArm, 'sim_arm', joint_names=JOINTS + ['elbow'], controller_name='other',
            initial_positions=[0.0, 0.5, 0.5, 0.0])
    _filter(ros)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    probe.send([0.1, 0.2, 0.3, 0.0], names=JOINTS + ['elbow'])
    assert wait_for(lambda: 'unknown_joint' in probe.events)


def test_stale_input_holds_then_stops_publishing(ros):
    arm, probe = _pipeline(ros)
    assert wait_for(lambda: probe.send([0.1, 0.5, 1.0]) or len(probe.commands) > 5)
    sent = len(probe.commands)
    assert wait_for(lambda: probe.state() == 'stopped', timeout=3.0)  # > 2 x timeout
    assert probe.status.level == ERROR                                 # unexplained silence
    time.sleep(0.1)
    count = len(probe.commands)
    time.sleep(0.3)
    assert len(probe.commands) == count                     # stopped: nothing published
    assert count - sent >= 10                               # ~0.2 s of holds at 100 Hz came first
    assert np.allclose(probe.commands[-10:], probe.commands[-1])   # ... all the same command
    assert 'hold' in probe.events


def test_after_the_episode_is_done_the_filter_idles_at_ok(ros):
    arm, probe = _pipeline(ros)
    _stream(probe, [[0.1, 0.5, 1.0]] * 10)
    time.sleep(0.05)                 # every action handled first (a later one would resume)
    probe.episode.publish(String(data='done success=true steps=10'))   # as sim_world says it
    time.sleep(0.6)                                         # well past 2 x command_timeout
    assert wait_for(lambda: probe.state() == 'idle')
    # OK: idle is no error (a loaded machine may add the WARN of a rate below the configured)
    assert probe.status.level == OK or 'below the configured' in probe.status.message
    count = len(probe.commands)
    time.sleep(0.2)
    assert len(probe.commands) > count                      # holding, not silent
    assert 'hold' not in probe.events


def test_latched_stop_until_released_and_reset_resumes_from_the_moved_arm(ros):
    arm, probe = _pipeline(ros, arm='fake')
    _stream(probe, [[0.3, 0.5, 0.9]] * 40)
    volatile = probe.node.create_publisher(Bool, SAFETY_STOP, 10)   # a plain stop button
    assert wait_for(lambda: volatile.get_subscription_count() >= 1)
    volatile.publish(Bool(data=True))
    assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
    time.sleep(0.3)                                         # commands already sent have come
    count = len(probe.commands)
    _stream(probe, [[0.3, 0.5, 0.9]] * 10)
    assert len(probe.commands) == count
    arm.move_by_hand([-0.5, 0.0, 0.2])                      # moved by hand while stopped
    refused = probe.reset()
    assert not refused.success and 'asserted' in refused.message
    volatile.publish(Bool(data=False))                      # the button is released
    assert wait_for(lambda: probe.reset().success, timeout=3)
    time.sleep(0.1)
    arm.follow = True
    _stream(probe, [[0.3, 0.5, 0.9]] * 20)
    first = np.array(probe.commands[count])
    assert np.all(np.abs(first - [-0.5, 0.0, 0.2]) <= VMAX * DT + 1e-9)   # no jump back


def test_an_arm_that_does_not_follow_latches_a_stop(ros):
    # tolerance: the arm's lag on a loaded machine (several ticks at vmax) is not a fault
    arm, probe = _pipeline(ros, arm='fake', following_error=[0.3, 0.3, 0.3],
                           following_error_ticks=5)
    _stream(probe, [[0.3, 0.5, 0.9]] * 10)
    assert probe.state() in ('running', None)
    arm.move_by_hand(arm.position.copy())            # stuck: stops following the commands
    _stream(probe, [[-0.9, 0.5, 0.9]] * 40)          # ... while they move away
    assert wait_for(lambda: probe.state() == 'latched')
    assert 'following_error' in probe.status.message
    assert wait_for(lambda: 'following_error' in probe.events)


def test_reset_refused_without_fresh_joint_states(ros):
    arm = FakeArm(ros, [0.0, 0.0, 0.0])
    _filter(ros)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    probe.stop.publish(Bool(data=True))
    probe.stop.publish(Bool(data=False))
    assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.0, 0.0, 0.0]) and 0))
    arm.node.destroy_node()                                 # the driver died
    time.sleep(0.7)
    # on Jazzy the release waits for the re-read of the latched publishers (up to 1 s)
    assert wait_for(lambda: 'joint_states' in probe.reset().message, timeout=3)
    assert not probe.reset().success


def test_failed_activation_on_short_joint_states_never_doubles_the_speed(ros):
    """A /joint_states with fewer positions than names (legal) is refused, not a live timer."""
    _filter(ros)
    probe = FilterProbe(ros)
    states = probe.node.create_publisher(JointState, JOINT_STATES, 10)
    position = [0.0, 0.0, 0.0]
    names = JOINTS
    timer = probe.node.create_timer(0.01, lambda: states.publish(
        JointState(name=names, position=position)))
    position = []
    for _ in range(2):
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        time.sleep(0.1)
        assert not probe.transition(Transition.TRANSITION_ACTIVATE)
        assert probe.lifecycle_state() == State.PRIMARY_STATE_INACTIVE
        assert probe.transition(Transition.TRANSITION_CLEANUP)
    assert wait_for(lambda: probe.status is not None and probe.status.level in (ERROR, b'\x03'))
    position = [0.0, 0.0, 0.0]
    time.sleep(0.1)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    start = time.monotonic()
    while time.monotonic() - start < 1.5:                  # far target: runs at vmax
        probe.send([1.0, -1.0, 1.0], dt=2 * DT)             # due after the next tick: the timer
        time.sleep(0.01)
    probe.node.destroy_timer(timer)
    assert len(probe.commands) > 50
    rate = (len(probe.commands) - 1) / (probe.times[-1] - probe.times[0])
    assert rate < 1.3 / DT                                  # one control timer, not two or three
    assert _guard_speed(probe) <= VMAX * 1.001


@pytest.mark.parametrize('position', [[0.0, float('nan'), 0.0], [0.0, float('inf'), 0.0]])
def test_non_finite_joint_states_are_ignored_so_activation_is_refused(ros, position):
    _filter(ros)
    probe = FilterProbe(ros)
    states = probe.node.create_publisher(JointState, JOINT_STATES, 10)
    probe.node.create_timer(0.01, lambda: states.publish(JointState(name=JOINTS,
                                                                    position=position)))
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    time.sleep(0.2)
    assert not probe.transition(Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: probe.status is not None and probe.status.level == ERROR)
    assert 'joint_states' in probe.status.message


def test_configure_cleanup_configure_activate_keeps_one_timer(ros):
    arm, probe = _pipeline(ros)
    assert probe.transition(Transition.TRANSITION_DEACTIVATE)
    assert probe.transition(Transition.TRANSITION_CLEANUP)
    assert probe.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    probe.commands.clear(), probe.times.clear(), probe.safe.clear()
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        probe.send([1.0, -1.0, 1.0], dt=2 * DT)             # due after the next tick: the timer
        time.sleep(0.01)
    rate = (len(probe.commands) - 1) / (probe.times[-1] - probe.times[0])
    assert 0.5 / DT < rate < 1.3 / DT
    assert _guard_speed(probe) <= VMAX * 1.001


def test_monitor_only_never_commands_the_controller(ros):
    arm, probe = _pipeline(ros, mode='monitor_only')
    _stream(probe, [[5.0, 5.0, 5.0]] * 30)
    assert wait_for(lambda: len(probe.safe) > 10)
    assert probe.commands == []                              # shadow topic only
    assert wait_for(lambda: probe.status is not None and probe.status.level == WARN and
                    'monitor_only' in probe.status.message)


def test_joint_trajectory_output_in_controller_order(ros):
    arm, probe = _pipeline(ros, output='joint_trajectory', controller_joints=['j2', 'j0', 'j1'])
    _stream(probe, [[0.2, 0.5, 1.0]] * 30)
    assert wait_for(lambda: len(probe.trajectories) > 10)
    msg = probe.trajectories[-1]
    assert msg.joint_names == ['j2', 'j0', 'j1']
    assert msg.points[0].time_from_start.nanosec == 10_000_000    # dt, never 0


@pytest.mark.parametrize('name, value', [
    ('upper', [5.0, 5.0, 5.0]), ('command_timeout', 10.0), ('controller_name', 'other'),
    ('output', 'joint_trajectory'), ('controller_joints', ['j2', 'j1', 'j0']),
    ('joint_states_timeout', 100.0)])
def test_parameters_are_read_only(ros, name, value):
    arm, probe = _pipeline(ros)
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    result = call_service(probe.node, SetParameters, '/safety_filter/set_parameters', request)
    assert not result.results[0].successful


def test_speed_scale_can_only_be_lowered_while_configured_and_slows_the_arm(ros):
    arm, probe = _pipeline(ros)

    def set_scale(value):
        request = SetParameters.Request(
            parameters=[Parameter('speed_scale', value=value).to_parameter_msg()])
        return call_service(probe.node, SetParameters, '/safety_filter/set_parameters',
                            request).results[0]

    assert set_scale(0.25).successful
    refused = set_scale(0.5)
    assert not refused.successful and 'lowered' in refused.reason
    assert not set_scale(0.0).successful
    probe.commands.clear(), probe.times.clear(), probe.safe.clear()
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        probe.send([-1.0, -1.0, 0.5])
        time.sleep(0.01)
    assert _guard_speed(probe) <= 0.25 * VMAX * 1.001
    assert wait_for(lambda: probe.status is not None and
                    {kv.key: kv.value for kv in probe.status.values}.get('speed_scale') == '0.25')


@pytest.mark.parametrize('extra, why', [
    ({'joint_states_timeout': float('nan')}, 'joint_states_timeout'),
    ({'command_timeout': float('inf')}, 'command_timeout'),
    ({'control_rate_hz': 1e6}, 'control rate'),
    ({'controller_name': 'bad name!'}, 'controller_name')])
def test_invalid_parameter_values_refuse_configure(ros, extra, why):
    _filter(ros, **extra)
    probe = FilterProbe(ros)
    assert not probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert wait_for(lambda: probe.status is not None and probe.status.level == ERROR)
    assert why in probe.status.message


def test_control_timer_runs_on_steady_time_under_use_sim_time(ros):
    """With use_sim_time and no /clock, the ROS clock never advances: the filter still ticks."""
    ros.add(SimArm, 'sim_arm', joint_names=JOINTS, controller_name='arm',
            initial_positions=[0.0, 0.5, 0.5])
    _filter(ros, use_sim_time=True)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    _stream(probe, [[0.2, 0.5, 0.5]] * 30)
    assert wait_for(lambda: len(probe.commands) > 10)


def rclpy_duration(seconds):
    from rclpy.duration import Duration as RosDuration
    return RosDuration(seconds=seconds)


def test_escalation_slows_then_stops_a_policy_it_keeps_correcting(ros):
    arm, probe = _pipeline(ros, arm='fake', escalation_rates=[20.0, 60.0, 90.0],
                           escalation_cooldown=0.5)
    levels = set()
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < 4.0 and probe.state() != 'latched':
        probe.send([(-1) ** k * 0.9, 0.5, 0.9])       # asks for a jump every tick
        k += 1
        if probe.status is not None:
            levels.add({kv.key: kv.value for kv in probe.status.values}.get('escalation'))
        time.sleep(0.01)
    assert wait_for(lambda: probe.state() == 'latched')
    assert 'escalation' in probe.status.message
    assert wait_for(lambda: 'escalation' in probe.events)
    assert 'slow' in levels or 'hold' in levels
    answer = probe.reset()                              # right away: cooldown / cause persists
    assert not answer.success


def test_deactivation_brakes_within_the_acceleration_limit_then_stops_publishing(ros):
    amax = 5.0
    arm, probe = _pipeline(ros, arm='fake', max_acceleration=[amax] * 3)
    start = time.monotonic()
    while time.monotonic() - start < 0.35:                  # accelerating toward -1 ...
        probe.send([-1.0, 0.5, 0.9], dt=2 * DT)             # due after the next tick: the timer
        time.sleep(0.01)                                    # executes it, one per period
    count = len(probe.commands)
    assert probe.transition(Transition.TRANSITION_DEACTIVATE)   # ... deactivated mid-motion
    time.sleep(0.8)                                         # braking from <= 2 rad/s: <= 0.4 s
    braked = np.array(probe.commands[count - 5:])
    times = np.array(probe.times[count - 5:])
    assert len(braked) > 15                                 # the stop went on after deactivate
    speed = np.abs(np.diff(braked[:, 0])) / np.maximum(np.diff(times), 1e-3)
    assert speed[-1] < 0.05 and abs(braked[-1, 0] - braked[-2, 0]) < 1e-9   # at rest
    final = len(probe.commands)
    time.sleep(0.3)
    assert len(probe.commands) == final                     # ... then silence
    after = np.array(probe.commands[count:])[:, 0]          # the braking path, one per period
    # (the last timer ticks before it may come late on a loaded machine: the guard limits them
    # over elapsed time, so per message they are not one period apart)
    assert np.all(np.abs(np.diff(after, 2))[2:] <= amax * DT * DT + 1e-9)
