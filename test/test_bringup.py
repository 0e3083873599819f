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
`vla-safety bringup` node set over real DDS: five nodes from parameter files, sim arm moving.

Under each executor `vla-safety bringup --executor` offers: `events` falls back to the
single-threaded executor (the manager's services are coroutines, which EventsExecutor never runs).
"""
import os
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from ros_harness import next_domain, wait_for
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from vla_safety_filter import names
from vla_safety_filter.core.params import write_filter_params
from vla_safety_filter.nodes.bringup import pipeline_nodes
from vla_safety_filter.nodes.common import make_executor, spin_until_shutdown
from vla_safety_filter.nodes.lifecycle_manager import call, LifecycleClient
import yaml


def _param_files(tmp_path, shared_data, pipeline_params):
    episodes = os.path.join(shared_data, 'so101_record_test_4ep.npz')
    contract, params = pipeline_params(episodes)
    filt = tmp_path / 'filter.yaml'
    write_filter_params(str(filt), contract, 'cal.npz', {'command_timeout': 0.5})
    del params['safety_filter']
    pipeline = tmp_path / 'pipeline.yaml'
    pipeline.write_text(yaml.safe_dump({n: {'ros__parameters': p} for n, p in params.items()}))
    return contract, [str(filt), str(pipeline)]


@pytest.mark.parametrize('executor_name', ['single', 'events'])
def test_bringup_nodes_activate_and_drive_the_sim_arm(tmp_path, shared_data, pipeline_params,
                                                      executor_name):
    contract, files = _param_files(tmp_path, shared_data, pipeline_params)
    args = ['bringup', '--ros-args'] + [x for f in files for x in ('--params-file', f)]
    context = Context()
    rclpy.init(context=context, args=args, domain_id=next_domain())
    nodes = pipeline_nodes(True, context)
    executor = make_executor(executor_name, context, nodes=nodes)
    assert isinstance(executor, SingleThreadedExecutor)        # the clean fallback for events
    probe = rclpy.create_node('probe', context=context)
    commands, diags, arrivals = [], {}, []

    def on_command(msg):
        commands.append(list(msg.data))
        arrivals.append(time.monotonic())
    probe.create_subscription(Float64MultiArray, names.forward_commands(),
                              on_command, 100)
    probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS,
                              lambda m: diags.update({s.name: s for s in m.status}), 100)
    for node in nodes + [probe]:
        executor.add_node(node)
    thread = threading.Thread(target=spin_until_shutdown, args=(executor, context), daemon=True)
    thread.start()
    try:
        managed = [LifecycleClient(probe, n, None, 10.0)
                   for n in names.PIPELINE_NODES]
        assert wait_for(lambda: all(c.state() == State.PRIMARY_STATE_ACTIVE for c in managed),
                        timeout=20, period=0.2), diags.get(names.EXECSPEC_STATUS)
        assert wait_for(lambda: len(commands) > 30, timeout=10)
        assert wait_for(lambda: {names.MONITOR_STATUS, names.FILTER_STATUS,
                                 names.EXECSPEC_STATUS} <= set(diags), timeout=5)
        cmds = np.array(commands)
        assert np.all(cmds >= contract.lower - 1e-9) and np.all(cmds <= contract.upper + 1e-9)
        assert np.all(np.abs(np.diff(cmds, axis=0)) <= 2 * contract.max_step() + 1e-9)  # late tick
        monitor = diags[names.MONITOR_STATUS]
        keys = {kv.key for kv in monitor.values}
        assert monitor.hardware_id and keys >= {'reversal_rate', 'cusum_statistic'}
        _manager_services_keep_the_executor_serving(probe, managed, arrivals)
    finally:
        context.try_shutdown()
        thread.join(timeout=5)
        executor.shutdown()


def _manager_services_keep_the_executor_serving(probe, managed, arrivals):
    """
    Check ~/bringup while active keeps commands flowing (no stall of the shared executor).

    ~/teardown then ~/bringup end with every node as GetState says they should be.
    """
    bringup = probe.create_client(Trigger, '/execspec_check/bringup')
    start = time.monotonic()
    for _ in range(3):
        answer = call(bringup, Trigger.Request(), 30.0, attempts=1)
        assert answer.success, answer.message
    time.sleep(0.3)
    window = [start] + [t for t in arrivals if t >= start] + [time.monotonic()]
    assert max(np.diff(window)) < 1.0
    teardown = call(probe.create_client(Trigger, '/execspec_check/teardown'), Trigger.Request(),
                    30.0, attempts=1)
    assert teardown.success, teardown.message
    assert all(c.state() == State.PRIMARY_STATE_INACTIVE for c in managed)
    answer = call(bringup, Trigger.Request(), 30.0, attempts=1)
    assert answer.success, answer.message
    assert all(c.state() == State.PRIMARY_STATE_ACTIVE for c in managed)
