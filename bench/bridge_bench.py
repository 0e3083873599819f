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
Latency of a live policy through policy_bridge and safety_filter, next to its parts.

Run by hand (never in the test suite), on a quiet machine:
`python bench/bridge_bench.py [--seconds 30] [--requests 300] [--json] [--domain 91]`.

Method. `vla-safety serve-policy` serves the built-in nearest-neighbour policy on the real PushT
demonstrations over the openpi protocol in its own process, as a GPU server would, one action
per reply (`--chunk 1`). Numbers per observation, on recorded PushT states (cycled, so replies
differ):

- inference: the policy's own `act` (the code the server runs), timed in this process;
- round trip: the same observation sent by the bridge's client (core.remote_policies) to the
  server and the chunk decoded, timed around `act`, with no ROS involved;
- through ROS: this process publishes the state on /world/state (stamped) at 50 Hz; policy_bridge
  (`source: openpi`, query tick 50 Hz, one request in flight at a time) and safety_filter (50 Hz,
  a contract so wide that every action passes unchanged) run on one executor here. Observation
  to /vla/raw_action is the chunk's reception time minus its `header.stamp` (the bridge copies
  the observation's stamp); observation to command is the reception time of the first
  `/forward_position_controller/commands` equal to the action minus the same stamp (only actions
  that differ from the previous one are matched). The action is due 20 ms after its observation
  (time_from_start = 1 / query rate), so it is executed on arrival, not at the timer's phase.
  Both include the observation's age when the bridge's query tick took it (up to one state
  period, 20 ms here; up to a frame period for a slower camera).

Ratios are against the bare round trip of the same run: what ROS and the filter add.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from vla_safety_filter import names  # noqa: E402,I100
from vla_safety_filter.core.drill.policies import NearestNeighbourPolicy  # noqa: E402
from vla_safety_filter.core.remote_policies import make_remote_policy  # noqa: E402
from vla_safety_filter.demo.pusht import default_demos, JOINTS, STATE_JOINTS  # noqa: E402
from vla_safety_filter.nodes.common import spin_until_shutdown  # noqa: E402
from vla_safety_filter.nodes.lifecycle_manager import call  # noqa: E402
from vla_safety_filter.nodes.policy_bridge import PolicyBridge  # noqa: E402
from vla_safety_filter.nodes.safety_filter import SafetyFilter  # noqa: E402

QUERY_HZ = 50.0
STATE_HZ = 50.0
CONTROL_HZ = 50.0
SERVING = re.compile(r'at (ws://\S+)')


def states(demos: str) -> np.ndarray:
    """Return the recorded PushT states the observations are taken from (every 7th frame)."""
    return np.load(demos)['observation.state'][::7].astype(np.float64)


def summary(seconds) -> dict:
    """Return count, median, p95 and max of durations in milliseconds."""
    ms = np.asarray(seconds, dtype=float) * 1e3
    if ms.size == 0:
        return {'n': 0}
    return {'n': int(ms.size), 'median_ms': float(np.median(ms)),
            'p95_ms': float(np.percentile(ms, 95)), 'max_ms': float(ms.max())}


def time_inference(demos: str, observations: list) -> list:
    """Time the policy's own act on each observation (what the server computes)."""
    policy = NearestNeighbourPolicy(demos, 1)
    durations = []
    for obs in observations:
        start = time.perf_counter()
        policy.act(obs)
        durations.append(time.perf_counter() - start)
    return durations


def time_round_trips(uri: str, observations: list) -> list:
    """Time the bridge's client asking the server, without ROS."""
    policy = make_remote_policy(uri, 2.0, action_dim=len(JOINTS))
    policy.act(observations[0])      # connect and read the metadata frame first
    durations = []
    for obs in observations:
        start = time.perf_counter()
        policy.act(obs)
        durations.append(time.perf_counter() - start)
    policy.close()
    return durations


class Probe:
    """Publish stamped states and match chunks and commands to their observation stamps."""

    def __init__(self, node, rows: np.ndarray):
        self.node, self.rows, self.k = node, rows, 0
        self.chunk_latency, self.command_latency = [], []
        self._pending: dict[tuple, float] = {}
        self._previous: tuple = ()
        self._lock = threading.Lock()
        self._world = node.create_publisher(JointState, names.WORLD_STATE, 10)
        self._joints = node.create_publisher(JointState, names.JOINT_STATES, 10)
        node.create_subscription(JointTrajectory, names.RAW_ACTION, self._on_chunk, 100)
        node.create_subscription(Float64MultiArray, names.forward_commands(),
                                 self._on_command, 100)
        node.create_timer(1.0 / STATE_HZ, self._publish)
        self.measuring = False

    def now(self) -> float:
        """Return the node clock in seconds (the clock the stamps use)."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _publish(self) -> None:
        row = self.rows[self.k % len(self.rows)]
        self.k += 1
        stamp = self.node.get_clock().now().to_msg()
        world = JointState(name=list(STATE_JOINTS), position=row.tolist())
        world.header.stamp = stamp
        self._world.publish(world)
        joints = JointState(name=list(JOINTS), position=row[:2].tolist())
        joints.header.stamp = stamp
        self._joints.publish(joints)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        if not self.measuring or not msg.points:
            return
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        self.chunk_latency.append(self.now() - stamp)
        action = tuple(msg.points[0].positions)
        with self._lock:
            if action != self._previous:
                self._pending.setdefault(action, stamp)
            self._previous = action

    def _on_command(self, msg: Float64MultiArray) -> None:
        with self._lock:
            stamp = self._pending.pop(tuple(msg.data), None)
        if stamp is not None:
            self.command_latency.append(self.now() - stamp)


def wide_contract() -> dict:
    """Return filter parameters whose contract passes every PushT action unchanged."""
    return {'joint_names': list(JOINTS), 'lower': [-1e4, -1e4], 'upper': [1e4, 1e4],
            'max_velocity': [1e7, 1e7], 'control_rate_hz': CONTROL_HZ,
            'controller_name': names.DEFAULT_CONTROLLER, 'output': 'forward_command',
            'command_timeout': 0.5}


def bridge_params(uri: str) -> dict:
    """Return the bridge's parameters: openpi, query tick QUERY_HZ, one action per reply."""
    return {'source': 'openpi', 'server_uri': uri, 'state_topic': names.WORLD_STATE,
            'state_joints': list(STATE_JOINTS), 'joint_names': list(JOINTS),
            'rate_hz': QUERY_HZ, 'replan_every': 1, 'request_timeout': 1.0,
            'unnormalizer.mode': 'identity', 'unnormalizer.dim': len(JOINTS)}


def through_ros(uri: str, rows: np.ndarray, seconds: float, domain: int) -> Probe:
    """Run bridge and filter on one executor for SECONDS; the probe holds the latencies."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    nodes = []
    for cls, name, params in ((SafetyFilter, names.SAFETY_FILTER, wide_contract()),
                              (PolicyBridge, names.POLICY_BRIDGE, bridge_params(uri))):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        nodes.append(cls(name, context=context, parameter_overrides=overrides))
    probe_node = rclpy.create_node('bench_probe', context=context)
    probe = Probe(probe_node, rows)
    for node in (*nodes, probe_node):
        executor.add_node(node)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor, context), daemon=True)
    spinner.start()
    try:
        time.sleep(1.0)     # joint states reach the filter before it activates
        for name in (names.SAFETY_FILTER, names.POLICY_BRIDGE):
            client = probe_node.create_client(ChangeState, f'/{name}/change_state')
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                request = ChangeState.Request(transition=Transition(id=transition))
                if not call(client, request, 10.0).success:
                    raise SystemExit(f'bridge_bench: {name} refused transition {transition}')
        time.sleep(1.0)     # first connection and first replies
        probe.measuring = True
        time.sleep(seconds)
        probe.measuring = False
        deactivate = ChangeState.Request(transition=Transition(
            id=Transition.TRANSITION_DEACTIVATE))
        call(probe_node.create_client(ChangeState, '/policy_bridge/change_state'), deactivate,
             10.0)
    finally:
        context.try_shutdown()
        spinner.join(timeout=5)
        for node in (*nodes, probe_node):
            node.destroy_node()
    return probe


def start_server(demos: str) -> tuple[subprocess.Popen, str]:
    """Start `vla-safety serve-policy` on a free loopback port; return it and its URI."""
    command = [sys.executable, '-m', 'vla_safety_filter.cli', 'serve-policy',
               '--policy', f'nn:{demos}', '--port', '0', '--chunk', '1']
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                              cwd=os.path.join(HERE, '..'))
    line = server.stdout.readline()
    match = SERVING.search(line)
    if not match:
        server.kill()
        raise SystemExit(f'bridge_bench: serve-policy did not start: {line!r}')
    return server, match.group(1)


def ratios(results: dict) -> dict:
    """Return each median over the bare round trip's median."""
    base = results['round_trip']['median_ms']
    return {name: results[name]['median_ms'] / base
            for name in ('inference', 'obs_to_raw_action', 'obs_to_command')
            if results[name].get('n')}


def main() -> None:
    """Measure and print the latencies and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--seconds', type=float, default=30.0, help='ROS measurement time')
    parser.add_argument('--requests', type=int, default=300, help='bare round trips')
    parser.add_argument('--domain', type=int, default=91, help='ROS domain id')
    parser.add_argument('--json', action='store_true', help='print JSON only')
    args = parser.parse_args()
    demos = default_demos()
    rows = states(demos)
    observations = [{'observation.state': row.astype(np.float32), 'task': ''}
                    for row in rows[:args.requests]]
    server, uri = start_server(demos)
    try:
        results = {'inference': summary(time_inference(demos, observations)),
                   'round_trip': summary(time_round_trips(uri, observations))}
        probe = through_ros(uri, rows, args.seconds, args.domain)
    finally:
        server.terminate()
        server.wait(10)
    results['obs_to_raw_action'] = summary(probe.chunk_latency)
    results['obs_to_command'] = summary(probe.command_latency)
    results['ratio_to_round_trip'] = ratios(results)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name in ('inference', 'round_trip', 'obs_to_raw_action', 'obs_to_command'):
        r = results[name]
        if r.get('n'):
            print(f'{name:18s} n={r["n"]:5d}  median {r["median_ms"]:7.2f} ms  '
                  f'p95 {r["p95_ms"]:7.2f} ms  max {r["max_ms"]:7.2f} ms')
        else:
            print(f'{name:18s} no samples')
    for name, value in results['ratio_to_round_trip'].items():
        print(f'{name} / round_trip = {value:.2f}')


if __name__ == '__main__':
    main()
