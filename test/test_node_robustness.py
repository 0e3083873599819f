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
Robustness of the nodes over real rclpy/DDS.

Bad lifecycle requests, parameters of the wrong type, a monitor alarm driving the latched stop,
and the happy path on a real ALOHA episode. Everything through topics, services, lifecycle
transitions, parameters and /diagnostics.
"""
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter
from ros_harness import wait_for
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
from vla_safety_filter import names
from vla_safety_filter.core.contract import audit
from vla_safety_filter.core.episodes import read_episodes
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.common import LATCHED_QOS
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

ALOHA = 'aloha_sim_lerobot_4ep.npz'
NODES = {'action_monitor': ActionMonitorNode, 'safety_filter': SafetyFilter,
         'policy_bridge': PolicyBridge}
OK, ERROR = bytes([names.OK]), bytes([names.ERROR])   # DiagnosticStatus.level bytes


@pytest.fixture
def aloha(pipeline_params, data_file):
    """Return (contract, per-node parameters, actions of replayed episode 0); calibrated on 1-3."""
    path = data_file(ALOHA)
    contract, params = pipeline_params(path, calibrate_on_rest=True)
    return contract, params, read_episodes(path).episodes[0].actions


def _diagnostics(probe_node) -> dict:
    """Latest /diagnostics status per name, filled in the background."""
    latest = {}
    probe_node.create_subscription(DiagnosticArray, names.DIAGNOSTICS,
                                   lambda m: latest.update({s.name: s for s in m.status}), 100)
    return latest


def _values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


@pytest.mark.parametrize('name', sorted(NODES))
def test_invalid_transition_requests_are_refused_and_the_node_keeps_serving(
        ros, aloha, name, filter_probe, service_call):
    params = aloha[1]
    ros.add(NODES[name], name, **params[name])
    probe = filter_probe()
    for bad in (Transition(id=Transition.TRANSITION_ACTIVATE), Transition(id=99),
                Transition(id=Transition.TRANSITION_DEACTIVATE), Transition(label='bogus')):
        answer = service_call(probe.node, ChangeState, f'/{name}/change_state',
                              ChangeState.Request(transition=bad))
        assert not answer.success, bad
        assert probe.lifecycle_state(name) == State.PRIMARY_STATE_UNCONFIGURED
    assert probe.transition(Transition.TRANSITION_CONFIGURE, name)
    assert not probe.transition(Transition.TRANSITION_CONFIGURE, name)
    assert probe.lifecycle_state(name) == State.PRIMARY_STATE_INACTIVE


# a string, and an integer, where a double is declared
@pytest.mark.parametrize('rate', ['fast', 100])
def test_wrong_parameter_type_at_startup_is_reported_and_configure_refused(
        ros, rate, filter_probe, small_contract):
    ros.add(SafetyFilter, 'safety_filter', **{**small_contract, 'control_rate_hz': rate})
    probe = filter_probe(controller='forward_position_controller')
    assert not probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert wait_for(lambda: probe.status is not None and probe.status.level == ERROR)
    message = probe.status.message
    assert message.startswith('configure refused: wrong parameter type')
    assert 'control_rate_hz' in message


def test_wrong_parameter_type_at_runtime_is_rejected_and_the_filter_keeps_commanding(
        ros, filter_probe, service_call, small_contract):
    ros.add(SimArm, 'sim_arm', joint_names=small_contract['joint_names'], controller_name='arm')
    ros.add(SafetyFilter, 'safety_filter', **small_contract, controller_name='arm')
    probe = filter_probe()
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    request = SetParameters.Request(parameters=[
        Parameter('output', value=3).to_parameter_msg(),                 # string parameter
        Parameter('command_timeout', value=1).to_parameter_msg(),        # double parameter
        Parameter('control_rate_hz', value='fast').to_parameter_msg()])  # contract
    results = service_call(probe.node, SetParameters, '/safety_filter/set_parameters',
                           request).results
    assert [r.successful for r in results] == [False, False, False]
    got = service_call(probe.node, GetParameters, '/safety_filter/get_parameters',
                       GetParameters.Request(names=['output'])).values
    assert got[0].string_value == 'forward_command'
    count = len(probe.commands)
    assert wait_for(lambda: probe.send([0.1, 0.5, 1.0]) or len(probe.commands) > count + 10)


def _feed(probe, joints, rows, until=None, timeout=10.0, period=0.02) -> bool:
    """Publish the rows in turn every `period`; with `until`, repeat the last until it holds."""
    for row in rows:
        probe.send(row, names=joints)
        time.sleep(period)
    deadline = time.monotonic() + timeout
    while until is not None and not until() and time.monotonic() < deadline:
        probe.send(rows[-1], names=joints)
        time.sleep(period)
    return until is None or bool(until())


def test_monitor_alarm_latches_the_stop_until_it_clears_and_reset_then_again(
        ros, aloha, filter_probe):
    contract, params, actions = aloha
    ros.add(SimArm, 'sim_arm', **params['sim_arm'])
    ros.add(SafetyFilter, 'safety_filter', **params['safety_filter'])
    ros.add(ActionMonitorNode, 'action_monitor', **params['action_monitor'], stop_on='alarm')
    probe = filter_probe(controller='forward_position_controller')
    diags = _diagnostics(probe.node)
    joints = list(contract.joint_names)
    stops = []
    probe.node.create_subscription(Bool, names.SAFETY_STOP, lambda m: stops.append(m.data),
                                   LATCHED_QOS)
    assert probe.transition(Transition.TRANSITION_CONFIGURE, 'action_monitor')
    assert probe.transition(Transition.TRANSITION_ACTIVATE, 'action_monitor')
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)

    # The monitor sees one continuous real stream: frames 0-24, frame 24 frozen, frames 25-84.
    assert _feed(probe, joints, actions[:25], lambda: len(probe.commands) > 10)
    # Frozen actions are valid for the filter (it keeps commanding them); the monitor's stall
    # alarm (1.5 s without motion) is what stops it.
    assert _feed(probe, joints, [actions[24]], lambda: probe.state() == 'latched', timeout=8.0)
    assert stops[:1] == [True]
    assert 'stall' in _values(diags[names.MONITOR_STATUS])['last_alarm']
    refused = probe.reset()                          # the alarm condition persists: refused
    assert not refused.success and 'asserted' in refused.message
    time.sleep(0.1)                                  # commands already on the wire
    count = len(probe.commands)
    # Motion resumes: the monitor withdraws its stop once the condition has cleared.
    assert _feed(probe, joints, actions[25:50], lambda: stops[-1] is False, timeout=5.0)
    assert len(probe.commands) == count and probe.state() == 'latched'
    # on Jazzy the release waits for the re-read of the latched publishers (up to 1 s)
    answer = wait_for(lambda: (lambda a: a.success and a)(probe.reset()), timeout=3)
    assert answer and answer.message.startswith('latched stop cleared')
    _feed(probe, joints, actions[50:85])
    assert len(probe.commands) > count + 20 and probe.state() == 'running'

    probe.send([np.nan] * len(joints), names=joints)   # a new alarm latches again
    assert wait_for(lambda: probe.state() == 'latched', timeout=5.0)
    assert stops[-1] is True


def test_replayed_aloha_episode_commands_stay_in_contract_and_rate_limit(ros, aloha):
    contract, params, actions = aloha
    ros.add(SimArm, 'sim_arm', **params['sim_arm'])
    probe = ros.node('probe')
    commands, safe = [], []
    probe.create_subscription(Float64MultiArray, names.forward_commands(),
                              lambda m: commands.append(list(m.data)), 1000)
    probe.create_subscription(JointTrajectory, names.SAFE_ACTION, safe.append, 1000)
    diags = _diagnostics(probe)
    for name, cls in NODES.items():
        ros.add(cls, name, **params[name])
    time.sleep(0.5)   # sim_arm publishes /joint_states before the manager starts
    ros.add(ExecSpecCheck, 'execspec_check', **params['execspec_check'])
    assert wait_for(lambda: len(commands) >= 250, timeout=30)   # 5 s of the episode at 50 Hz
    n = len(commands)                                   # the executor may be appending
    check = audit(contract, actions[0], commands[:n])
    assert check['outside_bounds'] == check['non_finite'] == 0 and check['commands'] == n
    # speed over elapsed time, judged on the guard's own clock: the stamps of /vla/safe_action
    # (arrival times at a probe measure the machine's delivery jitter, not the filter)
    m = len(safe)
    stamps = [s.header.stamp.sec + 1e-9 * s.header.stamp.nanosec for s in safe[:m]]
    timed = audit(contract, actions[0], [s.points[0].positions for s in safe[:m]], stamps)
    assert timed['outside_bounds'] == timed['over_rate_limit'] == timed['non_finite'] == 0
    assert timed['max_speed_ratio'] <= 1.001
    # The episode is not the calibration data: it asks for faster motion than the contract allows.
    assert wait_for(lambda: int(_values(diags[names.FILTER_STATUS]).get(
        'interventions.velocity', 0)) > 0, timeout=5)
    assert wait_for(lambda: all(n in diags and diags[n].level == OK
                                for n in (names.FILTER_STATUS, names.EXECSPEC_STATUS)), timeout=5)
