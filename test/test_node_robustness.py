"""Robustness of the nodes over real rclpy/DDS: bad lifecycle requests, parameters of the wrong type,
a monitor alarm driving the latched stop, and the happy path on a real ALOHA episode."""
import os
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from ros_harness import wait_for
from test_bringup import pipeline_setup
from test_node_safety_filter import CONTRACT, Probe, _pipeline
from vla_safety_filter.core.episodes import read_episodes
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.common import LATCHED_QOS
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck, LifecycleClient, call
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

ALOHA = 'aloha_sim_lerobot_4ep.npz'
NODES = {'action_monitor': ActionMonitorNode, 'safety_filter': SafetyFilter,
         'policy_bridge': PolicyBridge}
OK, ERROR = b'\x00', b'\x02'


@pytest.fixture
def aloha(tmp_path, shared_data):
    """(contract, per-node parameters, actions of the replayed episode 0); calibrated on episodes 1-3."""
    path = os.path.join(shared_data, ALOHA)
    contract, params = pipeline_setup(tmp_path, path, calibrate_on_rest=True)
    return contract, params, read_episodes(path).episodes[0].actions


def _change_state(client, transition: Transition) -> bool:
    return call(client, ChangeState.Request(transition=transition), 10.0).success


def _diagnostics(probe_node) -> dict:
    """Latest /diagnostics status per name, filled in the background."""
    latest = {}
    probe_node.create_subscription(DiagnosticArray, '/diagnostics',
                                   lambda m: latest.update({s.name: s for s in m.status}), 100)
    return latest


@pytest.mark.parametrize('name', sorted(NODES))
def test_invalid_transition_requests_are_refused_and_the_node_keeps_serving(ros, aloha, name):
    params = aloha[1]
    ros.add(NODES[name], name, **params[name])
    probe = ros.node('probe')
    change = probe.create_client(ChangeState, f'/{name}/change_state')
    lifecycle = LifecycleClient(probe, name, None, 10.0)
    for bad in (Transition(id=Transition.TRANSITION_ACTIVATE), Transition(id=99),
                Transition(id=Transition.TRANSITION_DEACTIVATE), Transition(label='bogus')):
        assert not _change_state(change, bad), bad
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    lifecycle.transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
    assert not _change_state(change, Transition(id=Transition.TRANSITION_CONFIGURE))
    assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE


@pytest.mark.parametrize('rate', ['fast', 100])   # a string, and an integer where a double is declared
def test_wrong_parameter_type_at_startup_is_reported_and_configure_refused(ros, rate):
    filt = ros.add(SafetyFilter, 'safety_filter', **{**CONTRACT, 'control_rate_hz': rate})
    probe = ros.node('probe')
    diags = _diagnostics(probe)
    change = probe.create_client(ChangeState, '/safety_filter/change_state')
    assert not _change_state(change, Transition(id=Transition.TRANSITION_CONFIGURE))
    assert LifecycleClient(probe, 'safety_filter', None, 10.0).state() == \
        State.PRIMARY_STATE_UNCONFIGURED
    assert filt._executive is None
    assert wait_for(lambda: 'vla_safety/filter' in diags and diags['vla_safety/filter'].level == ERROR)
    message = diags['vla_safety/filter'].message
    assert message.startswith('configure refused: wrong parameter type') and 'control_rate_hz' in message


def test_wrong_parameter_type_at_runtime_is_rejected_and_the_filter_keeps_commanding(ros):
    arm, filt, probe = _pipeline(ros)
    client = probe.node.create_client(SetParameters, '/safety_filter/set_parameters')
    request = SetParameters.Request(parameters=[
        Parameter('output', value=3).to_parameter_msg(),                 # string parameter
        Parameter('command_timeout', value=1).to_parameter_msg(),        # double parameter
        Parameter('control_rate_hz', value='fast').to_parameter_msg()])  # read-only contract
    results = call(client, request, 10.0).results
    assert [r.successful for r in results] == [False, False, False]
    assert 'type' in results[0].reason and 'type' in results[1].reason
    assert 'read-only' in results[2].reason
    assert filt.get_parameter('output').value == 'forward_command'
    count = len(probe.commands)
    assert wait_for(lambda: probe.send([0.1, 0.5, 1.0]) or len(probe.commands) > count + 10)


def _feed(probe, names, rows, until=None, timeout=10.0, period=0.02) -> bool:
    """Publish the rows in turn every `period`; with `until`, repeat the last one until it holds."""
    for row in rows:
        probe.send(row, names=names)
        time.sleep(period)
    deadline = time.monotonic() + timeout
    while until is not None and not until() and time.monotonic() < deadline:
        probe.send(rows[-1], names=names)
        time.sleep(period)
    return until is None or bool(until())


def test_monitor_alarm_latches_the_stop_until_reset_and_again_after_it(ros, aloha):
    contract, params, actions = aloha
    ros.add(SimArm, 'sim_arm', **params['sim_arm'])
    filt = ros.add(SafetyFilter, 'safety_filter', **params['safety_filter'])
    monitor = ros.add(ActionMonitorNode, 'action_monitor', **params['action_monitor'],
                      stop_on='alarm')
    probe = Probe(ros, controller='forward_position_controller')
    names = list(contract.joint_names)
    stops = []
    probe.node.create_subscription(Bool, '/vla/safety_stop', lambda m: stops.append(m.data),
                                   LATCHED_QOS)
    assert monitor.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert monitor.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert filt.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: filt._joint_state is not None)
    assert filt.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # The monitor sees one continuous real stream: frames 0-24, frame 24 frozen, frames 25-84.
    assert _feed(probe, names, actions[:25], lambda: len(probe.commands) > 10)
    # Frozen actions are valid for the filter (it keeps commanding them); the monitor's stall
    # alarm (1.5 s without motion) is what stops it.
    assert _feed(probe, names, [actions[24]], lambda: filt._executive.state == 'latched', timeout=8.0)
    assert stops == [True] and [a.kind for a in monitor._monitor.alarms] == ['stall']
    time.sleep(0.1)                                  # commands already on the wire
    count = len(probe.commands)
    _feed(probe, names, actions[25:50])
    assert len(probe.commands) == count and filt._executive.state == 'latched'

    reset = probe.node.create_client(Trigger, '/safety_filter/reset')
    answer = call(reset, Trigger.Request(), 10.0)
    assert answer.success and answer.message == 'latched stop cleared'
    _feed(probe, names, actions[50:85])
    assert len(probe.commands) > count + 20 and filt._executive.state == 'running'

    probe.send([np.nan] * len(names), names=names)   # a new alarm latches again
    assert wait_for(lambda: filt._executive.state == 'latched', timeout=5.0)
    assert stops[-1] is True and monitor._monitor.alarms[-1].kind == 'nonfinite'


def test_replayed_aloha_episode_commands_stay_in_contract_and_rate_limit(ros, aloha):
    contract, params, actions = aloha
    arm = ros.add(SimArm, 'sim_arm', **params['sim_arm'])
    probe = ros.node('probe')
    commands = []
    probe.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                              lambda m: commands.append(list(m.data)), 1000)
    diags = _diagnostics(probe)
    nodes = {name: ros.add(cls, name, **params[name]) for name, cls in NODES.items()}
    time.sleep(0.5)   # sim_arm publishes /joint_states before the manager starts
    manager = ros.add(ExecSpecCheck, 'execspec_check', **params['execspec_check'])
    assert wait_for(lambda: manager.pipeline_active, timeout=20), manager._status
    assert wait_for(lambda: len(commands) >= 250, timeout=20)   # 5 s of the episode at 50 Hz
    cmds = np.array(commands)
    step = contract.max_step()
    assert np.all(cmds >= contract.lower) and np.all(cmds <= contract.upper)
    assert np.all(np.abs(np.diff(cmds, axis=0)) <= step + 1e-12)
    assert np.all(np.abs(cmds[0] - actions[0]) <= step + 1e-12)     # from the arm's start pose
    # The episode is not the calibration data: it asks for faster motion than the contract allows.
    assert nodes['safety_filter']._executive.guard.counts['velocity'] > 0
    assert np.abs(arm.position - actions[0]).max() > 0.05            # and the arm followed it
    assert wait_for(lambda: all(n in diags and diags[n].level == OK
                                for n in ('vla_safety/filter', 'vla_safety/execspec')), timeout=5)
