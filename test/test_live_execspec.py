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
The gate over ROS when the policy server unnormalizes (policy_outputs_normalized false).

execspec_check, a live policy_bridge and a real policy server on 127.0.0.1, driven only through
parameters, GetState, /diagnostics and the served topics: an identity bridge is accepted with the
delegation stated on /diagnostics, and actions flow; a REST bridge asking the server for a sibling
statistics key never activates.
"""
import json
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
import numpy as np
from policy_servers import chunk, encode, pack
import pytest
from ros_harness import wait_for
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory
from vla_safety_filter import names
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck
from vla_safety_filter.nodes.lifecycle_manager import LifecycleClient
from vla_safety_filter.nodes.policy_bridge import PolicyBridge

ERROR, OK = bytes([names.ERROR]), bytes([names.OK])   # DiagnosticStatus.level bytes
JOINTS = [f'j{i}' for i in range(7)]


@pytest.fixture(scope='module')
def stats_file(data_file):
    """Return the real OpenVLA action statistics (the checkpoint execspec_check reads)."""
    return data_file('openvla_oxe_bridge_orig_fractal_action_stats.json')


class Gate:
    """A probe that feeds joint states and records execspec statuses and the bridge's chunks."""

    def __init__(self, ros):
        self.probe = ros.node('probe')
        self.chunks, self.statuses = [], []
        self.probe.create_subscription(JointTrajectory, names.RAW_ACTION, self.chunks.append, 100)
        self.probe.create_subscription(
            DiagnosticArray, names.DIAGNOSTICS,
            lambda m: self.statuses.extend(s for s in m.status if s.name == names.EXECSPEC_STATUS),
            100)
        state = self.probe.create_publisher(JointState, names.JOINT_STATES, 10)
        self.probe.create_timer(0.05, lambda: state.publish(
            JointState(name=JOINTS, position=[0.0] * 7)))

    def verdict(self, level):
        """Return the values of the first execspec status at LEVEL, or None."""
        for s in list(self.statuses):
            if s.level == level:
                return {kv.key: kv.value for kv in s.values} | {'message': s.message}
        return None

    def bridge_state(self) -> int:
        return LifecycleClient(self.probe, 'policy_bridge', None, 5.0).state()


def pipeline(ros, source, uri, checkpoint, **bridge_params):
    """Start a live identity bridge and a manager whose checkpoint has bridge_orig's statistics."""
    gate = Gate(ros)
    ros.add(PolicyBridge, 'policy_bridge', source=source, server_uri=uri, rate_hz=10.0,
            state_joints=JOINTS, joint_names=JOINTS, request_timeout=1.0,
            **{'unnormalizer.mode': 'identity', 'unnormalizer.dim': 7, **bridge_params})
    ros.add(ExecSpecCheck, 'execspec_check', checkpoint=checkpoint, unnorm_key='bridge_orig',
            node_names=['policy_bridge'], policy_outputs_normalized=False)
    return gate


def test_openpi_server_side_unnormalization_activates_and_says_it_is_unverified(ros, openpi,
                                                                                stats_file):
    openpi.respond = lambda obs: pack({'actions': chunk(d=7)})
    gate = pipeline(ros, 'openpi', openpi.uri, stats_file)
    values = wait_for(lambda: gate.verdict(OK), timeout=20)
    assert values, [s.message for s in gate.statuses]
    assert values['verdict'] == 'identical'
    assert f'delegated to the policy server at {openpi.uri}' in values['notes']
    assert 'NOT verified here' in values['notes']
    # the status line itself says so (not "metadata identical"), and who unnormalizes
    active = wait_for(lambda: next((s for s in list(gate.statuses)
                                    if 'pipeline active' in s.message), None), timeout=10)
    assert 'unnormalization delegated to the policy server, NOT verified' in active.message
    assert {kv.key: kv.value for kv in active.values}['unnormalization'] == 'server'
    assert gate.bridge_state() == State.PRIMARY_STATE_ACTIVE
    assert wait_for(lambda: gate.chunks, timeout=10)
    np.testing.assert_array_equal([p.positions for p in gate.chunks[0].points], chunk(d=7)[:1])


def test_identity_bridge_is_refused_when_outputs_are_declared_normalized(ros, openpi, stats_file):
    gate = Gate(ros)
    ros.add(PolicyBridge, 'policy_bridge', source='openpi', server_uri=openpi.uri, rate_hz=10.0,
            state_joints=JOINTS, joint_names=JOINTS,
            **{'unnormalizer.mode': 'identity', 'unnormalizer.dim': 7})
    ros.add(ExecSpecCheck, 'execspec_check', checkpoint=stats_file, unnorm_key='bridge_orig',
            node_names=['policy_bridge'])     # policy_outputs_normalized: true (default)
    values = wait_for(lambda: gate.verdict(ERROR), timeout=20)
    assert values and values['verdict'] == 'mismatch'
    assert "mode differs: checkpoint 'quantile', deployed 'identity'" in values['reasons']
    time.sleep(1.0)
    assert gate.bridge_state() != State.PRIMARY_STATE_ACTIVE and gate.chunks == []
    assert openpi.received == []


def test_rest_bridge_sends_the_checkpoints_key_and_a_sibling_key_never_activates(ros, rest,
                                                                                 stats_file):
    rest.respond = lambda payload: (200, json.dumps(encode(chunk(d=7)[0])))
    gate = pipeline(ros, 'openvla_rest', rest.url, stats_file, unnorm_key='fractal20220817_data')
    values = wait_for(lambda: gate.verdict(ERROR), timeout=20)
    assert values and "asks the server for unnorm_key 'fractal20220817_data'" in values['reasons']
    time.sleep(1.0)
    assert gate.bridge_state() != State.PRIMARY_STATE_ACTIVE and rest.received == []


def test_rest_bridge_with_the_checkpoints_key_activates_and_sends_it(ros, rest, stats_file):
    rest.respond = lambda payload: (200, json.dumps(encode(chunk(d=7)[0])))
    gate = pipeline(ros, 'openvla_rest', rest.url, stats_file, unnorm_key='bridge_orig')
    values = wait_for(lambda: gate.verdict(OK), timeout=20)
    assert values and "server unnorm_key: checked ('bridge_orig'" in values['notes']
    assert wait_for(lambda: gate.chunks, timeout=10)
    assert rest.received[0][1]['unnorm_key'] == 'bridge_orig'
