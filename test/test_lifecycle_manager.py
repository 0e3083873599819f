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
The lifecycle manager on its own, over real DDS: order, rollback, nav2's parameter names.

Managed nodes here are plain rclpy lifecycle nodes; everything is observed through their
GetState services and transition_event topics, the manager's parameter services and /rosout.
"""
from lifecycle_msgs.msg import State, TransitionEvent
from rcl_interfaces.msg import Log
from rcl_interfaces.srv import GetParameters
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import wait_for
from vla_safety_filter import names
from vla_safety_filter.nodes.lifecycle_manager import call, LifecycleClient, LifecycleManager

ACTIVE, INACTIVE = State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE
UNCONFIGURED = State.PRIMARY_STATE_UNCONFIGURED
LATCHED = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Refuses(LifecycleNode):
    """A lifecycle node that configures but refuses to activate."""

    def on_activate(self, state) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.FAILURE


class Probe:
    """Watch managed nodes' transitions and the log, and ask nodes for states and parameters."""

    def __init__(self, ros, watched):
        self.node = ros.node('probe')
        self.transitions, self.log = [], []
        for name in watched:
            self.node.create_subscription(
                TransitionEvent, f'/{name}/transition_event',
                lambda msg, name=name: self.transitions.append((name, msg.goal_state.id)), 100)
        self.node.create_subscription(Log, '/rosout', self.log.append, LATCHED)

    def states(self, nodes) -> list:
        return [LifecycleClient(self.node, name, None, 10.0).state() for name in nodes]

    def parameter(self, node: str, name: str):
        client = self.node.create_client(GetParameters, f'/{node}/get_parameters')
        answer = call(client, GetParameters.Request(names=[name]), 10.0)
        return answer.values[0]

    def warnings(self, node: str) -> list:
        return [m.msg for m in self.log if m.name == node and m.level == Log.WARN]


def happened(events: list, first, then) -> bool:
    """Return whether `then` is among the events after `first`."""
    return first in events and then in events[events.index(first) + 1:]


def test_autostart_activates_the_nodes_in_node_names_order(ros):
    probe = Probe(ros, ['first', 'second'])
    ros.add(LifecycleNode, 'second')
    ros.add(LifecycleNode, 'first')
    ros.add(LifecycleManager, 'manager', node_names=['first', 'second'])
    assert wait_for(lambda: probe.states(['first', 'second']) == [ACTIVE, ACTIVE], timeout=20)
    activations = [name for name, goal in probe.transitions if goal == ACTIVE]
    assert activations == ['first', 'second']


def test_a_refused_activation_deactivates_what_was_activated(ros):
    probe = Probe(ros, ['first', 'refuses'])
    ros.add(LifecycleNode, 'first')
    ros.add(Refuses, 'refuses')
    ros.add(LifecycleManager, 'manager', node_names=['first', 'refuses'])
    assert wait_for(lambda: happened(probe.transitions, ('first', ACTIVE), ('first', INACTIVE)),
                    timeout=20)
    assert probe.states(['first', 'refuses']) == [INACTIVE, INACTIVE]


def test_without_autostart_nothing_is_configured(ros):
    probe = Probe(ros, ['first'])
    ros.add(LifecycleNode, 'first')
    ros.add(LifecycleManager, 'manager', node_names=['first'], autostart=False)
    assert probe.parameter('manager', 'autostart').bool_value is False
    assert not wait_for(lambda: probe.transitions, timeout=1.0)
    assert probe.states(['first']) == [UNCONFIGURED]


def test_default_node_names_are_the_pipeline_in_activation_order(ros):
    probe = Probe(ros, [])
    ros.add(LifecycleManager, 'manager', autostart=False)
    managed = probe.parameter('manager', 'node_names').string_array_value
    assert tuple(managed) == names.PIPELINE_NODES
    assert probe.parameter('manager', 'transition_timeout').double_value == 5.0


def test_the_old_managed_nodes_is_still_read_with_a_deprecation_warning(ros):
    probe = Probe(ros, ['first'])
    ros.add(LifecycleNode, 'first')
    ros.add(LifecycleManager, 'manager', managed_nodes=['first'])
    assert wait_for(lambda: probe.states(['first']) == [ACTIVE], timeout=20)
    assert list(probe.parameter('manager', 'node_names').string_array_value) == ['first']
    warnings = wait_for(lambda: probe.warnings('manager'), timeout=5)
    assert any('managed_nodes is deprecated' in w and 'node_names' in w for w in warnings)


def test_node_names_wins_over_the_old_name(ros):
    probe = Probe(ros, ['first', 'other'])
    ros.add(LifecycleNode, 'first')
    ros.add(LifecycleNode, 'other')
    ros.add(LifecycleManager, 'manager', node_names=['first'], managed_nodes=['other'])
    assert wait_for(lambda: probe.states(['first']) == [ACTIVE], timeout=20)
    assert probe.states(['other']) == [UNCONFIGURED]
    warnings = wait_for(lambda: probe.warnings('manager'), timeout=5)
    assert any('ignored' in w for w in warnings)


def test_the_manager_names_a_node_that_does_not_answer(ros):
    probe = Probe(ros, ['first'])
    ros.add(LifecycleNode, 'first')
    ros.add(LifecycleManager, 'manager', node_names=['first', 'missing'],
            transition_timeout=0.5)
    errors = wait_for(lambda: [m.msg for m in probe.log
                               if m.name == 'manager' and m.level == Log.ERROR], timeout=20)
    assert any('missing' in e and 'not available' in e for e in errors)
    assert wait_for(lambda: probe.states(['first']) == [INACTIVE], timeout=10)
