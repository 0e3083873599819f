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
The distribution differences (nodes/compat.py) over real rclpy/DDS.

An invalid lifecycle request is refused and the node keeps serving on Jazzy (rclpy 7,
ros2/rclpy#1209) and Kilted; the flight record names the distribution that runs it.
"""
from pathlib import Path
import re
import sys
import time
import xml.etree.ElementTree as ET

from hypothesis import assume, given, HealthCheck, settings
from hypothesis import strategies as st
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.compat import ros_distro
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.record.bag import BagWriter
import yaml

NODES = [SafetyFilter, PolicyBridge, ActionMonitorNode]
#: Requests no unconfigured node may accept: a wrong id for the state, an unknown id or label.
INVALID = [Transition(id=Transition.TRANSITION_ACTIVATE),
           Transition(id=Transition.TRANSITION_DEACTIVATE),
           Transition(id=Transition.TRANSITION_CLEANUP),
           Transition(id=99),
           Transition(label='bogus'),
           Transition(label='activate')]
#: Transitions valid from unconfigured (configure, shutdown), by id and by label.
VALID_FROM_UNCONFIGURED = {Transition.TRANSITION_CONFIGURE,
                           Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
#: The distribution each rclpy major version belongs to (rclpy's own package.xml says which).
RCLPY_DISTRO = {'7': 'jazzy', '9': 'kilted'}


def _call(client, request, timeout=10.0):
    """Return the service's response; fail the test if it never answers (the process died)."""
    assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name} not available'
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert future.done(), f'{client.srv_name} did not answer {request}'
    return future.result()


class Lifecycle:
    """ChangeState and GetState of one node, as `ros2 lifecycle` uses them."""

    def __init__(self, probe, name):
        self._change = probe.create_client(ChangeState, f'/{name}/change_state')
        self._get = probe.create_client(GetState, f'/{name}/get_state')

    def change(self, transition: Transition) -> bool:
        return _call(self._change, ChangeState.Request(transition=transition)).success

    def state(self) -> int:
        return _call(self._get, GetState.Request()).current_state.id


def _lifecycle(ros, cls) -> Lifecycle:
    """Return a fresh node of `cls` (default parameters, unconfigured) and a client for it."""
    node = ros.add(cls)
    lifecycle = Lifecycle(ros.node('probe'), node.get_name())
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    return lifecycle


@pytest.fixture
def unconfigured_filter(ros) -> Lifecycle:
    """One safety filter for all of a hypothesis test's examples."""
    return _lifecycle(ros, SafetyFilter)


@pytest.mark.parametrize('cls', NODES, ids=lambda cls: cls.__name__)
def test_invalid_transitions_are_refused_and_the_node_keeps_serving(ros, cls):
    lifecycle = _lifecycle(ros, cls)
    for bad in INVALID:
        assert lifecycle.change(bad) is False, bad
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED, bad
    assert lifecycle.change(Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN))
    assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(transition_id=st.integers(0, 255))
def test_any_transition_id_not_valid_from_unconfigured_is_refused(unconfigured_filter,
                                                                  transition_id):
    """One filter answers every invalid id in turn and stays unconfigured and serving."""
    assume(transition_id not in VALID_FROM_UNCONFIGURED)
    assert unconfigured_filter.change(Transition(id=transition_id)) is False
    assert unconfigured_filter.state() == State.PRIMARY_STATE_UNCONFIGURED


def _rclpy_distro() -> str:
    """Return the distribution of the rclpy in use, from the package.xml its wheel installs."""
    package = Path(sys.prefix) / 'share' / 'rclpy' / 'package.xml'
    version = ET.parse(package).getroot().findtext('version')
    return RCLPY_DISTRO.get(re.match(r'\d+', version).group(), f'rclpy {version}')


def _recorded_distro(path: Path) -> str:
    BagWriter(path).close()
    info = yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    return info['ros_distro']


def test_flight_record_names_the_running_distro(tmp_path, monkeypatch):
    monkeypatch.delenv('ROS_DISTRO', raising=False)
    running = _rclpy_distro()
    assert running in ('jazzy', 'kilted')
    assert ros_distro() == running
    assert _recorded_distro(tmp_path / 'wheels') == running


def test_flight_record_follows_the_sourced_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_DISTRO', 'rolling')  # as `source /opt/ros/rolling/setup.bash` sets
    assert _recorded_distro(tmp_path / 'sourced') == 'rolling'
