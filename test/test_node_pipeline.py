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

"""The managed pipeline over real DDS: execspec_check gates bridge -> safety_filter -> sim_arm."""
import os
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
import numpy as np
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_harness import wait_for
from std_msgs.msg import Float64MultiArray
from vla_safety_filter import names
from vla_safety_filter.core.checkpoints import load_metadata
from vla_safety_filter.core.execspec import metadata_to_params
from vla_safety_filter.nodes.execspec_check import ExecSpecCheck
from vla_safety_filter.nodes.lifecycle_manager import call, LifecycleClient
from vla_safety_filter.nodes.policy_bridge import PolicyBridge
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.nodes.sim_arm import SimArm

STATS = 'openvla_oxe_bridge_orig_fractal_action_stats.json'
JOINTS = [f'joint_{j}' for j in range(7)]


def _build(ros, shared_data, checkpoint_key):
    """Bridge replays real BridgeData (7-D) with bridge_orig metadata; checkpoint key varies."""
    stats = os.path.join(shared_data, STATS)
    meta = metadata_to_params(load_metadata(stats, 'auto', 'bridge_orig'))
    episodes = os.path.join(shared_data, 'bridge_octo_debug_50ep.npz')
    actions = np.load(episodes)['actions'].astype(float)
    lo, hi = actions.min(0) - 0.01, actions.max(0) + 0.01
    ros.add(SimArm, 'sim_arm', joint_names=JOINTS, initial_positions=actions[0].tolist())
    ros.add(SafetyFilter, 'safety_filter', joint_names=JOINTS, lower=lo.tolist(),
            upper=hi.tolist(), max_velocity=[0.5] * 7, control_rate_hz=50.0, command_timeout=0.5)
    ros.add(PolicyBridge, 'policy_bridge', episodes_file=episodes, rate_hz=50.0, loop=True,
            **meta)
    commands = []
    probe = ros.node('probe')
    probe.create_subscription(Float64MultiArray, names.forward_commands(),
                              lambda m: commands.append(list(m.data)), 100)
    diags = []
    probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS,
                              lambda m: diags.extend(m.status), 100)
    time.sleep(0.5)   # sim_arm publishes /joint_states before the manager starts
    ros.add(ExecSpecCheck, 'execspec_check', checkpoint=stats, unnorm_key=checkpoint_key,
            node_names=['safety_filter', 'policy_bridge'],
            policy_outputs_normalized=False)   # the bridge replays recorded actions
    return probe, commands, diags


def _execspec(diags, level):
    """Values of the first vla_safety/execspec status at `level` (None until one arrives)."""
    for s in list(diags):
        if s.name == names.EXECSPEC_STATUS and s.level == level:
            return {kv.key: kv.value for kv in s.values}
    return None


def _all_in(probe, state, nodes=('safety_filter', 'policy_bridge')) -> bool:
    return all(LifecycleClient(probe, n, None, 5.0).state() == state for n in nodes)


def _service_round_trip(probe) -> float:
    """Return the median GetState round trip (s) from the probe: the service latency now."""
    client = LifecycleClient(probe, 'policy_bridge', None, 5.0)
    times = []
    for _ in range(5):
        start = time.monotonic()
        client.state()
        times.append(time.monotonic() - start)
    return float(np.median(times))


def test_identical_metadata_activates_and_commands_flow(ros, shared_data):
    probe, commands, diags = _build(ros, shared_data, 'bridge_orig')
    assert wait_for(lambda: _all_in(probe, State.PRIMARY_STATE_ACTIVE), timeout=15, period=0.2)
    assert wait_for(lambda: len(commands) > 20)
    assert wait_for(lambda: _execspec(diags, bytes([names.OK])))['pipeline_active'] == 'True'


def test_sibling_key_never_activates_and_nothing_reaches_the_controller(ros, shared_data):
    probe, commands, diags = _build(ros, shared_data, 'fractal20220817_data')
    report = wait_for(lambda: _execspec(diags, bytes([names.ERROR])), timeout=15)
    assert report['verdict'] == 'mismatch' and report['pipeline_active'] == 'False'
    assert float(report['max_drift']) > 0 and 'differs' in report['reasons']
    time.sleep(0.5)
    assert commands == []
    assert _all_in(probe, State.PRIMARY_STATE_INACTIVE)


def test_unnormalizer_change_while_active_deactivates_promptly(ros, shared_data):
    probe, commands, diags = _build(ros, shared_data, 'bridge_orig')
    arrivals = []
    probe.create_subscription(Float64MultiArray, names.forward_commands(),
                              lambda m: arrivals.append(time.monotonic()), 100)
    assert wait_for(lambda: len(arrivals) > 5, timeout=15)
    # 200 ms on a quiet machine; the teardown makes six service calls (state, change, confirm
    # per node), so a loaded machine gets six of its measured round trips on top
    bound = 0.2 + 6 * _service_round_trip(probe)
    set_params = probe.create_client(SetParameters, '/policy_bridge/set_parameters')
    change = SetParameters.Request(parameters=[
        Parameter('unnormalizer.high', value=[1.0] * 7).to_parameter_msg()])
    t0 = time.monotonic()
    assert call(set_params, change, 5.0).results[0].successful
    time.sleep(0.5)                            # anything still on the wire arrives
    assert arrivals[-1] - t0 < bound, bound    # the last command reached the controller
    count = len(arrivals)
    time.sleep(0.3)
    assert len(arrivals) == count              # and nothing since
    assert _all_in(probe, State.PRIMARY_STATE_INACTIVE)   # confirmed through GetState
    report = wait_for(lambda: _execspec(diags, bytes([names.ERROR])), timeout=3)
    assert report['pipeline_active'] == 'False'
