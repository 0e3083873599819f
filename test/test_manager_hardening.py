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
Issue 10 defects 1, 5 and 17 (bridge) over real rclpy/DDS.

The manager's services never block the executor they share with the pipeline, the ExecSpec gate
checks what the bridge loaded, and the bridge survives configure -> cleanup -> configure ->
activate.
"""
import json
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from ros_harness import wait_for
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from vla_safety_filter import names
from vla_safety_filter.core.checkpoints import write_params_yaml
from vla_safety_filter.core.episodes import read_episodes
from vla_safety_filter.core.execspec import Metadata, metadata_from_params, unnormalize
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck
from vla_safety_filter.nodes.lifecycle_manager import call, LifecycleClient
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

SO101 = 'so101_record_test_4ep.npz'
MANAGED = names.PIPELINE_NODES
OK, ERROR = bytes([names.OK]), bytes([names.ERROR])   # DiagnosticStatus.level bytes
ACTIVE, INACTIVE = State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE


class Pipeline:
    """
    The pipeline and its manager on the harness's one executor, and a probe.

    sim_arm, monitor, filter, bridge and the manager; the probe sees the controller topic, the
    raw actions and /diagnostics.
    """

    def __init__(self, ros, params, **manager_params):
        self.ros, self.params = ros, params
        self.probe = ros.node('probe')
        self.arrivals, self.raw, self.diags = [], [], {}
        self.probe.create_subscription(Float64MultiArray, names.forward_commands(),
                                       lambda m: self.arrivals.append(time.monotonic()), 1000)
        self.probe.create_subscription(JointTrajectory, names.RAW_ACTION, self.raw.append, 1000)
        self.probe.create_subscription(
            DiagnosticArray, names.DIAGNOSTICS,
            lambda m: self.diags.update({s.name: s for s in m.status}), 100)
        ros.add(SimArm, 'sim_arm', **params['sim_arm'])
        ros.add(ActionMonitorNode, 'action_monitor', **params['action_monitor'])
        ros.add(SafetyFilter, 'safety_filter', **params['safety_filter'])
        ros.add(PolicyBridge, 'policy_bridge', **params['policy_bridge'])
        time.sleep(0.5)   # sim_arm publishes /joint_states before the manager starts
        ros.add(ExecSpecCheck, 'execspec_check',
                **{**params['execspec_check'], **manager_params})

    def states(self, nodes=MANAGED) -> list[int]:
        return [LifecycleClient(self.probe, n, None, 10.0).state() for n in nodes]

    def all_in(self, state, timeout=20.0) -> bool:
        return bool(wait_for(lambda: set(self.states()) == {state}, timeout=timeout, period=0.2))

    def trigger(self, service: str) -> Trigger.Response:
        client = self.probe.create_client(Trigger, service)
        return call(client, Trigger.Request(), 30.0, attempts=1)

    def set_bridge(self, **values) -> None:
        client = self.probe.create_client(SetParameters, '/policy_bridge/set_parameters')
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        assert all(r.successful for r in call(client, request, 10.0).results)

    def change(self, node: str, transition: int) -> bool:
        client = self.probe.create_client(ChangeState, f'/{node}/change_state')
        request = ChangeState.Request(transition=Transition(id=transition))
        return call(client, request, 10.0).success

    def execspec(self):
        """(level, message, values) of the manager's latest /diagnostics status."""
        status = self.diags.get(names.EXECSPEC_STATUS)
        if status is None:
            return None
        return status.level, status.message, {kv.key: kv.value for kv in status.values}


@pytest.fixture
def so101(pipeline_params, data_file):
    """Return per-node parameters replaying SO-101 episode 0 (actions in action units)."""
    return pipeline_params(data_file(SO101))[1]


def _max_gap(arrivals, start, end) -> float:
    times = [start] + [t for t in arrivals if start <= t <= end] + [end]
    return float(np.max(np.diff(times)))


# ---- defect 1: services that do not block their own executor -------------------------------

def test_teardown_leaves_every_managed_node_inactive(ros, so101):
    pipe = Pipeline(ros, so101)
    assert pipe.all_in(ACTIVE)
    answer = pipe.trigger('/execspec_check/teardown')
    assert answer.success, answer.message
    assert pipe.states() == [INACTIVE] * 3                 # confirmed by GetState, right away
    count = len(pipe.arrivals)
    time.sleep(0.5)
    assert len(pipe.arrivals) - count <= 1                  # the controller topic fell silent
    level, message, _ = wait_for(lambda: pipe.execspec() if pipe.execspec() and
                                 pipe.execspec()[0] == ERROR else None, timeout=5)
    assert 'deactivated on request' in message


def test_bringup_after_a_parameter_change_teardown_brings_the_pipeline_back(ros, so101):
    pipe = Pipeline(ros, so101)
    assert pipe.all_in(ACTIVE)
    mean = so101['policy_bridge']['unnormalizer.mean']
    pipe.set_bridge(**{'unnormalizer.mean': [v + 1.0 for v in mean]})
    assert pipe.all_in(INACTIVE, timeout=10)
    refused = pipe.trigger('/execspec_check/bringup')    # the bridge reloads the wrong statistics
    assert not refused.success and 'differs' in refused.message
    assert pipe.states() == [INACTIVE] * 3
    pipe.set_bridge(**{'unnormalizer.mean': mean})
    answer = pipe.trigger('/execspec_check/bringup')
    assert answer.success, answer.message
    assert pipe.states() == [ACTIVE] * 3
    count = len(pipe.arrivals)
    assert wait_for(lambda: len(pipe.arrivals) > count + 20, timeout=10)


def test_commands_keep_flowing_while_the_manager_serves_bringup(ros, so101):
    """~/bringup on a running pipeline: the filter's control timer shares the executor."""
    pipe = Pipeline(ros, so101)
    assert pipe.all_in(ACTIVE)
    assert wait_for(lambda: len(pipe.arrivals) > 30, timeout=10)
    start = time.monotonic()
    for _ in range(3):
        answer = pipe.trigger('/execspec_check/bringup')
        assert answer.success, answer.message
    time.sleep(0.3)
    end = time.monotonic()
    assert _max_gap(pipe.arrivals, start, end) < 1.0      # 30 Hz; a stalled executor shows seconds


class SlowNode(LifecycleNode):
    """A managed node whose configure takes a second, on an executor of its own."""

    def on_configure(self, state):
        time.sleep(1.0)
        return TransitionCallbackReturn.SUCCESS


def test_a_bridge_parameter_change_during_bringup_aborts_and_rolls_back(ros, so101):
    slow = SlowNode('slow', context=ros.context)
    executor = SingleThreadedExecutor(context=ros.context)
    executor.add_node(slow)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        pipe = Pipeline(ros, so101, autostart=False, node_names=['slow', *MANAGED])
        result = {}
        caller = threading.Thread(target=lambda: result.update(
            answer=pipe.trigger('/execspec_check/bringup')))
        caller.start()
        time.sleep(0.4)                                  # the manager waits for slow's configure
        mean = so101['policy_bridge']['unnormalizer.mean']
        pipe.set_bridge(**{'unnormalizer.mean': [v * 2.0 for v in mean]})
        caller.join(timeout=30)
        assert not result['answer'].success
        assert 'during bringup' in result['answer'].message
        assert ACTIVE not in pipe.states()
        level, message, _ = wait_for(lambda: pipe.execspec() if pipe.execspec() and
                                     'during bringup' in pipe.execspec()[1] else None, timeout=5)
        assert level == ERROR
        assert pipe.arrivals == []
    finally:
        executor.shutdown()
        slow.destroy_node()


# ---- defect 5: the gate checks what the bridge loaded ----------------------------------------

def test_whatever_activates_publishes_with_the_checked_statistics(ros, so101, tmp_path):
    """Bridge configured with other statistics, parameters then set back: it must not run them."""
    recorded = dict(np.load(so101['policy_bridge']['episodes_file']))
    normalized_file = str(tmp_path / 'normalized.npz')
    np.savez(normalized_file, **{**recorded, 'actions': recorded['actions'] / 100.0})
    normalized = read_episodes(normalized_file).episodes[0].actions
    bridge = {**so101['policy_bridge'], 'normalized_input': True,
              'episodes_file': normalized_file}
    good = metadata_from_params(bridge)
    wrong_mean = [v + 5.0 for v in bridge['unnormalizer.mean']]
    pipe = Pipeline(ros, {**so101, 'policy_bridge': {**bridge, 'unnormalizer.mean': wrong_mean}},
                    autostart=False, policy_outputs_normalized=True)
    assert pipe.change('policy_bridge', Transition.TRANSITION_CONFIGURE)
    pipe.set_bridge(**{'unnormalizer.mean': bridge['unnormalizer.mean']})
    answer = pipe.trigger('/execspec_check/bringup')
    assert answer.success, answer.message
    loaded = json.loads(pipe.trigger('/policy_bridge/loaded_unnormalizer').message)
    assert loaded['generation'] == 2 and loaded['pending_changes'] == []
    assert loaded['parameters']['unnormalizer.mean'] == list(bridge['unnormalizer.mean'])
    assert wait_for(lambda: len(pipe.raw) >= 5, timeout=10)
    expected = unnormalize(good, normalized[:len(pipe.raw)])
    published = np.array([m.points[0].positions for m in pipe.raw[:len(expected)]])
    assert np.allclose(published, expected[:len(published)], atol=1e-9)


def test_bridge_without_unnormalization_for_normalized_policy_outputs_is_refused(ros, so101):
    pipe = Pipeline(ros, so101, policy_outputs_normalized=True)     # bridge: normalized_input off
    status = wait_for(lambda: pipe.execspec() if pipe.execspec() and
                      pipe.execspec()[0] == ERROR else None, timeout=20)
    assert 'normalized_input is false' in status[1]
    assert 'normalized_input' in status[2]['reasons']
    time.sleep(0.5)
    assert ACTIVE not in pipe.states() and pipe.arrivals == []


def test_permuted_joint_order_is_refused_where_the_checkpoint_names_dimensions(ros, so101):
    checkpoint = so101['execspec_check']['checkpoint']
    bridge = so101['policy_bridge']
    joints = list(so101['sim_arm']['joint_names'])
    meta = metadata_from_params(bridge)
    write_params_yaml(checkpoint, Metadata(meta.mode, meta.mask, mean=meta.mean, std=meta.std,
                                           names=joints, source='test'))
    permuted = [joints[1], joints[0], *joints[2:]]
    pipe = Pipeline(ros, {**so101, 'policy_bridge': {**bridge, 'joint_names': permuted}})
    status = wait_for(lambda: pipe.execspec() if pipe.execspec() and
                      pipe.execspec()[0] == ERROR else None, timeout=20)
    assert 'permutation' in status[1]
    assert ACTIVE not in pipe.states() and pipe.arrivals == []


def test_unnamed_checkpoint_says_names_not_checked(ros, so101):
    pipe = Pipeline(ros, so101)
    assert pipe.all_in(ACTIVE)
    status = wait_for(lambda: pipe.execspec() if pipe.execspec() and
                      pipe.execspec()[0] == OK else None, timeout=10)
    assert 'dimension names: not checked' in status[2]['notes']


# ---- defect 17 (bridge) and its messages -----------------------------------------------------

def test_bridge_configure_cleanup_configure_activate_publishes_once_at_its_rate(ros, so101):
    ros.add(PolicyBridge, 'policy_bridge', **{**so101['policy_bridge'], 'rate_hz': 20.0})
    probe = ros.node('probe')
    raw = []
    probe.create_subscription(JointTrajectory, names.RAW_ACTION,
                              lambda m: raw.append((time.monotonic(), m)), 1000)
    change = probe.create_client(ChangeState, '/policy_bridge/change_state')
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP,
                       Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        request = ChangeState.Request(transition=Transition(id=transition))
        assert call(change, request, 10.0).success, transition
    time.sleep(0.5)                                          # discovery and the first ticks
    start, count = time.monotonic(), len(raw)
    time.sleep(2.0)
    elapsed, sent = time.monotonic() - start, len(raw) - count
    assert 0.5 * 20 * elapsed <= sent <= 1.25 * 20 * elapsed + 2   # one timer, not two
    clock = probe.get_clock()
    t, last = raw[-1]
    age = (clock.now() - rclpy.time.Time.from_msg(last.header.stamp)).nanoseconds * 1e-9
    assert 0 <= age < 1.0                                    # stamped at publish time
    ids = [int(m.header.frame_id.split()[1]) for _, m in raw]
    assert all(m.header.frame_id.startswith('chunk ') for _, m in raw)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    loaded = json.loads(call(probe.create_client(Trigger, '/policy_bridge/loaded_unnormalizer'),
                             Trigger.Request(), 10.0).message)
    assert loaded['configured'] and loaded['generation'] == 2
