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
The shipped live-policy parameter files load into the real nodes with the right types.

Each file's node sections are given to the real nodes; every value is read back over the
parameter services, the bridge configures from the file, and execspec_check (checkpoint and
server pointed at stand-ins on this machine) accepts the bridge as the file configures it.
"""
import json
import os

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from ros_harness import wait_for
from vla_safety_filter import names
from vla_safety_filter.core.execspec import flatten_params
from vla_safety_filter.core.params import read_node_params
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck
from vla_safety_filter.nodes.lifecycle_manager import call, LifecycleClient
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'config')
NODES = {'policy_bridge': PolicyBridge, 'safety_filter': SafetyFilter,
         'action_monitor': ActionMonitorNode, 'execspec_check': ExecSpecCheck}
TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
         float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
ARRAYS = {bool: ParameterType.PARAMETER_BOOL_ARRAY, float: ParameterType.PARAMETER_DOUBLE_ARRAY,
          str: ParameterType.PARAMETER_STRING_ARRAY}
FIELDS = {ParameterType.PARAMETER_BOOL: 'bool_value',
          ParameterType.PARAMETER_INTEGER: 'integer_value',
          ParameterType.PARAMETER_DOUBLE: 'double_value',
          ParameterType.PARAMETER_STRING: 'string_value',
          ParameterType.PARAMETER_BOOL_ARRAY: 'bool_array_value',
          ParameterType.PARAMETER_DOUBLE_ARRAY: 'double_array_value',
          ParameterType.PARAMETER_STRING_ARRAY: 'string_array_value'}
FILES = ['so101_openpi.yaml', 'arm7_openvla_rest.yaml']


def expected_type(value) -> int:
    """Return the ROS parameter type a YAML value must arrive as."""
    if isinstance(value, list):
        return ARRAYS[type(value[0])]
    return TYPES[type(value)]


def file_params(name: str) -> dict:
    """Return {node: flat parameters} of a shipped config file."""
    path = os.path.join(CONFIG, name)
    return {node: flatten_params(read_node_params(path, node)) for node in NODES}


def read_back(probe, node: str, names: list) -> dict:
    """Return {name: (type, value)} read over the node's get_parameters service."""
    client = probe.create_client(GetParameters, f'/{node}/get_parameters')
    reply = call(client, GetParameters.Request(names=names), 10.0)
    return {n: (v.type, getattr(v, FIELDS.get(v.type, 'string_value')))
            for n, v in zip(names, reply.values)}


@pytest.mark.parametrize('name', FILES)
def test_every_parameter_of_the_file_arrives_with_its_type(ros, name):
    sections = file_params(name)
    for node, params in sections.items():
        assert params, f'{name} has no {node} section'
        if node == 'execspec_check':
            params = {**params, 'autostart': False}
        ros.add(NODES[node], node, **params)
    probe = ros.node('probe')
    for node, params in sections.items():
        got = read_back(probe, node, list(params))
        for key, value in params.items():
            kind, read = got[key]
            assert kind == expected_type(value), (node, key, kind)
            assert list(read) == value if isinstance(value, list) else read == value, (node, key)


def test_so101_openpi_file_configures_and_passes_the_gate_as_delegated(ros, openpi, tmp_path,
                                                                       data_file):
    stats = np.load(data_file('so101_record_test_4ep.npz'))['actions'].astype(float)
    norm = {'q01': np.quantile(stats, 0.01, 0), 'q99': np.quantile(stats, 0.99, 0),
            'mean': stats.mean(0), 'std': stats.std(0)}
    checkpoint = tmp_path / 'norm_stats.json'
    checkpoint.write_text(json.dumps({'norm_stats': {
        'actions': {k: v.tolist() for k, v in norm.items()}}}))
    sections = file_params('so101_openpi.yaml')
    statuses = []
    probe = ros.node('probe')
    probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS, lambda m: statuses.extend(
        s for s in m.status if s.name == names.EXECSPEC_STATUS), 100)
    bridge = {**sections['policy_bridge'], 'server_uri': openpi.uri}
    gate = {**sections['execspec_check'], 'checkpoint': str(checkpoint),
            'node_names': ['policy_bridge']}
    ros.add(PolicyBridge, 'policy_bridge', **bridge)
    ros.add(ExecSpecCheck, 'execspec_check', **gate)
    found = wait_for(lambda: [s for s in statuses if names.level_of(s.level) == names.OK],
                     timeout=20)
    assert found, [s.message for s in statuses]
    values = {kv.key: kv.value for kv in found[0].values}
    assert 'delegated to the policy server' in values['notes']
    assert LifecycleClient(probe, 'policy_bridge', None, 5.0).state() == State.PRIMARY_STATE_ACTIVE
