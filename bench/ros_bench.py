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
ROS 2 timing of N safety_filter processes: missed ticks, jitter, latency against a relay, CPU.

Run by hand (never in the test suite), on a quiet machine:
`python bench/ros_bench.py [--json] [--arms 1] [--dims 14] [--seconds 60] [--rates 500 1000]
[--executor single] [--domain 87] [--realtime-priority 0] [--cpu-affinity] [--lock-memory]
[--gc-mode default]`.

Method. Each arm is one filter process, started like `ros2 run` / `ros2 launch` start it (the
`safety_filter` console script with `--ros-args --params-file`, its node and topics remapped to
`/armI/...`), with a contract calibrated on the bundled real ALOHA episodes (D = 7: the left arm;
14: both; 28: both twice) and `control_rate_hz` set to each rate in turn, and one bare rclpy
relay process (`--relay`: subscribe JointTrajectory, publish Float64MultiArray of the first
point). This process publishes each arm's /joint_states (a recorded pose), drives each filter's
lifecycle with ChangeState/GetState, then publishes one single-point raw action due at once per
arm every 15..25 ms (uniformly random: arrivals at a uniform phase of the control tick) for
`--seconds`. Each raw action carries a sequence code in joint 0 (steps of 1 nrad: far below what
the rate limit allows even a microsecond after the last command, so the filter's first command
after the action equals it exactly).

- Ticks use the DDS source timestamp of every command a filter publishes (its publish time, in
  the filter process). A due action executes on arrival, so the commands carrying a new code
  first are arrival commands; `jitter_*` is |interval - period| between consecutive timer ticks
  (intervals touching an arrival command left out), `interval_jitter_p99_ms` over all intervals.
  Missed ticks: each interval (between consecutive publication sequence numbers) longer than
  1.5 periods lost round(interval / period) - 1 controller cycles; commands this process failed
  to receive are reported apart (`bench_lost_commands`).
- Latency: from just before `publish()` of a raw action to the DDS reception timestamp of the
  first message carrying its code, on the filter's and on the relay's command topic, for the
  same raw actions; `latency_ratio_vs_relay` is the ratio of their medians.
- CPU: each filter process's user + system time over the measured wall time (100 % = one core);
  this process's own CPU (it receives every command) is reported too: it shares the cores.
- The filters' own view, from their /diagnostics (`timing.*`), is reported as `self_reported`.
- What the platform allows: before the filters of each case, N bare rclpy timer processes
  (`--timer`: a node with only a steady timer at the same rate publishing one preallocated
  Float64MultiArray, under the same executor and the same real-time options) run for the same
  time with this process publishing /joint_states as before, and their missed ticks and jitter
  (same definitions) are reported as `timer_baseline`, beside the filters'.
- `--realtime-priority`, `--cpu-affinity`, `--lock-memory` and `--gc-mode` set the filters'
  parameters of the same names (and the bare timers' process the same way).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from vla_safety_filter import names
import yaml

DATA = os.path.join(os.path.dirname(__file__), '..', 'vla_safety_filter', 'data',
                    'aloha_sim_4ep.npz')
ALOHA = [f'{side}_{name}' for side in ('left', 'right') for name in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
DIMS = (7, 14, 28)
CODES = 8            # sequence codes carried in joint 0
CODE_STEP = 1e-9     # rad per code: 7 nrad, within vmax x 1 us (joint 0: 0.54 rad/s)
WARMUP_S = 2.0


def topics(arm: int) -> dict:
    """Return the remapped topic names of arm `arm` (raw, states, commands, relay, timer, diag)."""
    prefix = f'/arm{arm}'
    return {'raw': prefix + names.RAW_ACTION, 'states': prefix + names.JOINT_STATES,
            'commands': f'{prefix}/commands', 'relay': f'{prefix}/relay',
            'timer': f'{prefix}/timer', 'diagnostics': prefix + names.DIAGNOSTICS}


def relay_main(ros_args: list[str]) -> None:
    """Run the bare rclpy relay the filter is compared with (own process, like the filter)."""
    import rclpy
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from vla_safety_filter.nodes.common import COMMAND_QOS, spin

    rclpy.init(args=['relay'] + ros_args)
    node = rclpy.create_node('relay')
    pub = node.create_publisher(Float64MultiArray, '/relay/commands', COMMAND_QOS)
    node.create_subscription(JointTrajectory, names.RAW_ACTION, lambda m: pub.publish(
        Float64MultiArray(data=list(m.points[0].positions))), COMMAND_QOS)
    spin([node])


def timer_main(ros_args: list[str], args) -> None:
    """Run the bare rclpy timer: what the platform allows a Python control loop at the rate."""
    import rclpy
    from rclpy.clock import Clock, ClockType
    from std_msgs.msg import Float64MultiArray

    from vla_safety_filter.nodes.common import (COMMAND_QOS, GcPolicy, make_executor,
                                                realtime_thread, spin)

    rclpy.init(args=['timer'] + ros_args)
    node = rclpy.create_node('timer')
    pub = node.create_publisher(Float64MultiArray, '/timer/commands', COMMAND_QOS)
    msg = Float64MultiArray(data=[0.0] * args.dims[0])
    node.create_timer(1.0 / args.timer, lambda: pub.publish(msg),
                      clock=Clock(clock_type=ClockType.STEADY_TIME))
    policy = GcPolicy(args.gc_mode)
    policy.configured()
    policy.activated()
    _, refused = realtime_thread(args.realtime_priority, args.cpu_affinity, args.lock_memory)
    for text in refused:
        node.get_logger().warning(text)
    spin([node], make_executor(args.executor, logger=node.get_logger(), nodes=[node]))


def joint_names(dim: int) -> list[str]:
    """Return D joint names: the ALOHA left arm (7), both arms (14) or both twice (28)."""
    if dim not in DIMS:
        raise ValueError(f'--dims must be among {DIMS}')
    return (ALOHA + [f'{n}_b' for n in ALOHA])[:dim]


def aloha_setup(dim: int):
    """Return a contract calibrated on the bundled real ALOHA episodes and a recorded pose."""
    from vla_safety_filter.core.calibration import calibrate
    from vla_safety_filter.core.episodes import read_episodes
    data = read_episodes(DATA)
    episodes = [np.tile(e.actions, 2)[:, :dim] for e in data.episodes]
    contract = calibrate(episodes, joint_names(dim), 1.0 / data.fps, holdout=0.0).contract
    pose = np.asarray(episodes[0][0], dtype=float)
    margin = min(pose[0] - contract.lower[0], contract.upper[0] - pose[0])
    if margin <= CODES * CODE_STEP:
        raise RuntimeError('the recorded pose is too close to the joint 0 bounds for the codes')
    return contract, pose


def spawn(argv: list[str], env: dict, log_path: str) -> subprocess.Popen:
    """Start a child process with its output in `log_path`."""
    with open(log_path, 'w') as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C the child (clean rclpy shutdown), kill it if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process from /proc, in seconds."""
    with open(f'/proc/{pid}/stat') as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def remaps(arm: int, node: str) -> list[str]:
    """Return the --ros-args remapping an arm's node and its topics to /armI/..."""
    t = topics(arm)
    rules = {'__node': f'{node}{arm}', names.RAW_ACTION: t['raw'],
             names.JOINT_STATES: t['states'], names.forward_commands(): t['commands'],
             '/relay/commands': t['relay'], '/timer/commands': t['timer'],
             names.DIAGNOSTICS: t['diagnostics'], names.SAFE_ACTION: f'/arm{arm}/safe_action',
             names.FILTER_EVENTS: f'/arm{arm}/filter_events'}
    return [x for k, v in rules.items() for x in ('-r', f'{k}:={v}')]


class Arm:
    """One arm in this process: its /joint_states, raw actions, receive stamps and lifecycle."""

    def __init__(self, node, arm: int, names: list[str], pose: np.ndarray):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from vla_safety_filter.nodes.common import COMMAND_QOS, STATE_QOS

        t = topics(arm)
        self.node, self.name, self.names, self.pose = node, f'safety_filter{arm}', names, pose
        self.raw = node.create_publisher(JointTrajectory, t['raw'], COMMAND_QOS)
        states = node.create_publisher(JointState, t['states'], STATE_QOS)
        state = JointState(name=names, position=pose.tolist(), velocity=[0.0] * len(names))
        node.create_timer(0.1, lambda: states.publish(state))
        self.filtered: list[tuple] = []   # (source ns, received ns, publication seq, joint 0)
        self.relayed: list[tuple] = []
        self.timed: list[tuple] = []      # the bare timer's commands
        self.diagnostics: dict = {}
        self.recording = False
        node.create_subscription(Float64MultiArray, t['commands'],
                                 lambda m, i: self._record(self.filtered, m, i), 1000)
        node.create_subscription(Float64MultiArray, t['relay'],
                                 lambda m, i: self._record(self.relayed, m, i), 1000)
        node.create_subscription(Float64MultiArray, t['timer'],
                                 lambda m, i: self._record(self.timed, m, i), 1000)
        node.create_subscription(DiagnosticArray, t['diagnostics'], self._on_diag, 10)

    def _record(self, rows: list, msg, info) -> None:
        """Keep the DDS timestamps, sequence number and joint 0 of a received command."""
        if self.recording:
            rows.append((info['source_timestamp'], info['received_timestamp'],
                         info['publication_sequence_number'], msg.data[0]))

    def transition(self, transition_id: int, timeout: float = 10.0) -> None:
        """Call the filter's ChangeState (spun by the executor thread); raise unless it works."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        client = self.node.create_client(ChangeState, f'/{self.name}/change_state')
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f'{self.name}: no change_state service')
            future = client.call_async(ChangeState.Request(
                transition=Transition(id=transition_id)))
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                time.sleep(0.01)
            if not (future.done() and future.result().success):
                raise RuntimeError(f'{self.name}: transition {transition_id} failed')
        finally:
            self.node.destroy_client(client)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == 'vla_safety/filter':
                self.diagnostics = {kv.key[7:]: kv.value for kv in status.values
                                    if kv.key.startswith('timing.')}

    def publish_actions(self, seconds: float, seed: int) -> list[tuple[int, int]]:
        """Publish raw actions every 15..25 ms for `seconds`; return (publish ns, code) of each."""
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        sent, seq = [], 0
        end = time.monotonic() + seconds
        rng = random.Random(seed)
        while time.monotonic() < end:
            code = seq % CODES
            positions = self.pose.copy()
            positions[0] += code * CODE_STEP
            msg = JointTrajectory(joint_names=self.names, points=[
                JointTrajectoryPoint(positions=positions.tolist())])   # due at once
            stamp = time.time_ns()
            self.raw.publish(msg)
            sent.append((stamp, code))
            seq += 1
            time.sleep(rng.uniform(0.015, 0.025))
        return sent


def decode(rows: list[tuple], pose0: float) -> tuple[np.ndarray, ...]:
    """Return columns source ns, received ns, sequence number, code of the recorded messages."""
    if not rows:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(4))
    arr = np.array([r[:3] for r in rows], dtype=np.int64)
    codes = np.rint((np.array([r[3] for r in rows]) - pose0) / CODE_STEP).astype(np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], codes


def first_matches(sent: list[tuple[int, int]], received: np.ndarray,
                  codes: np.ndarray) -> np.ndarray:
    """
    Return, per raw action, the index of the first later message carrying its code (-1: none).

    Searched only until the next raw action is published.
    """
    order = np.argsort(received)
    found = np.full(len(sent), -1)
    for k, (stamp, code) in enumerate(sent):
        limit = sent[k + 1][0] if k + 1 < len(sent) else np.inf
        i = int(np.searchsorted(received[order], stamp))
        while i < order.size and received[order[i]] < limit:
            if codes[order[i]] == code:
                found[k] = order[i]
                break
            i += 1
    return found


def pct(values, q: float) -> float | None:
    """Return the percentile of the finite values, rounded (None when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return round(float(np.percentile(values, q)), 4) if values.size else None


def tick_stats(source: np.ndarray, seqs: np.ndarray, period_ns: float,
               arrival_seqs: np.ndarray) -> dict:
    """Return jitter of timer ticks and of all intervals, missed ticks, from publish times."""
    order = np.argsort(seqs)
    source, seqs = source[order], seqs[order]
    intervals, gaps = np.diff(source).astype(float), np.diff(seqs)
    whole = gaps == 1
    timer = whole & ~np.isin(seqs[:-1], arrival_seqs) & ~np.isin(seqs[1:], arrival_seqs)
    jitter_ms = np.abs(intervals[timer] - period_ns) / 1e6
    late = intervals[whole][intervals[whole] > 1.5 * period_ns]
    return {'commands': int(seqs[-1] - seqs[0]) + 1, 'jitter_p50_ms': pct(jitter_ms, 50),
            'jitter_p99_ms': pct(jitter_ms, 99), 'jitter_max_ms': pct(jitter_ms, 100),
            'interval_jitter_p99_ms': pct(np.abs(intervals[whole] - period_ns) / 1e6, 99),
            'missed_ticks': int(np.rint(late / period_ns).sum() - late.size),
            'bench_lost_commands': int((gaps - 1).clip(0).sum())}


def latency_stats(sent, filtered, relayed) -> tuple[dict, np.ndarray]:
    """Return latency figures of filter and relay for the same raw actions, and arrival seqs."""
    stamps = np.array([s for s, _ in sent], dtype=float)
    f = first_matches(sent, filtered[1], filtered[3])
    r = first_matches(sent, relayed[1], relayed[3])
    latency = np.where(f >= 0, (filtered[1][f] - stamps) / 1e6, np.nan)
    relay = np.where(r >= 0, (relayed[1][r] - stamps) / 1e6, np.nan)
    out = {'actions': len(sent), 'filter_unmatched': int((f < 0).sum()),
           'relay_unmatched': int((r < 0).sum()),
           'latency_p50_ms': pct(latency, 50), 'latency_p99_ms': pct(latency, 99),
           'relay_latency_p50_ms': pct(relay, 50), 'relay_latency_p99_ms': pct(relay, 99)}
    if out['latency_p50_ms'] and out['relay_latency_p50_ms']:
        out['latency_ratio_vs_relay'] = round(out['latency_p50_ms'] / out['relay_latency_p50_ms'],
                                              3)
    return out, filtered[2][f[f >= 0]]


def filter_argv(arm: int, params: str) -> list[str]:
    """Return the command line of arm `arm`'s filter process (the console script)."""
    script = os.path.join(os.path.dirname(sys.executable), 'safety_filter')
    argv = [script] if os.path.exists(script) else [
        sys.executable, '-c', 'from vla_safety_filter.nodes.safety_filter import main; main()']
    return argv + ['--ros-args', '--params-file', params] + remaps(arm, 'safety_filter')


def write_params(path: str, contract, rate: float, args) -> None:
    """Write the filters' parameters for every node name (`/**`: each arm renames its node)."""
    from vla_safety_filter.core.params import contract_to_params
    params = {**contract_to_params(contract), 'control_rate_hz': float(rate),
              'command_timeout': 0.1, 'executor': args.executor, **realtime_params(args)}
    with open(path, 'w') as fh:
        yaml.safe_dump({'/**': {'ros__parameters': params}}, fh, default_flow_style=None)


def realtime_params(args) -> dict:
    """Return the filters' real-time parameters from the options (only those set)."""
    params = {'realtime_priority': args.realtime_priority, 'lock_memory': args.lock_memory,
              'gc_mode': args.gc_mode}
    if args.cpu_affinity:
        params['cpu_affinity'] = list(args.cpu_affinity)
    return params


def realtime_argv(args) -> list[str]:
    """Return the command-line options giving a bare timer process the same real-time setup."""
    argv = ['--realtime-priority', str(args.realtime_priority), '--gc-mode', args.gc_mode,
            '--executor', args.executor]
    if args.cpu_affinity:
        argv += ['--cpu-affinity', *map(str, args.cpu_affinity)]
    return argv + (['--lock-memory'] if args.lock_memory else [])


def timer_baseline(arms: list[Arm], dim: int, rate: float, args, env: dict,
                   workdir: str) -> dict:
    """Run one bare timer process per arm for `--seconds`; return the worst one's figures."""
    procs = [spawn([sys.executable, os.path.abspath(__file__), '--timer', str(rate), '--dims',
                    str(dim), *realtime_argv(args), '--ros-args', *remaps(k, 'timer')], env,
                   os.path.join(workdir, f'timer{k}_d{dim}_{rate:g}.log'))
             for k in range(len(arms))]
    for arm in arms:
        arm.recording = True
    try:
        end = time.monotonic() + 30.0
        while not all(arm.timed for arm in arms) and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        for arm in arms:
            arm.timed.clear()
        wall, cpu = time.monotonic(), [cpu_seconds(p.pid) for p in procs]
        time.sleep(args.seconds)
        wall = time.monotonic() - wall
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu)]
        time.sleep(0.2)
        for arm in arms:
            arm.recording = False
    finally:
        for proc in procs:
            stop(proc)
    per_timer = []
    for arm, timer_cpu in zip(arms, cpu):
        source, _, seqs, _ = decode(arm.timed, 0.0)
        if not source.size:
            raise RuntimeError('a bare timer published nothing: see its log in ' + workdir)
        result = tick_stats(source, seqs, 1e9 / rate, np.empty(0, dtype=np.int64))
        result['cpu_percent'] = round(100 * timer_cpu / wall, 1)
        per_timer.append(result)
    keys = ('missed_ticks', 'jitter_p50_ms', 'jitter_p99_ms', 'jitter_max_ms', 'cpu_percent',
            'bench_lost_commands')
    return {key: max(r[key] for r in per_timer if r[key] is not None) for key in keys} | {
        'commands': min(r['commands'] for r in per_timer), 'seconds': round(wall, 1)}


def measure(arms: list[Arm], procs: list, seconds: float) -> tuple[list, float, list, float]:
    """Publish to every arm at once for `seconds`; return sent, wall, per-arm CPU, own CPU."""
    for arm in arms:
        arm.filtered.clear()
        arm.relayed.clear()
        arm.recording = True
    sent = [None] * len(arms)

    def publish(k):
        sent[k] = arms[k].publish_actions(seconds, seed=k)
    threads = [threading.Thread(target=publish, args=(k,)) for k in range(len(arms))]
    wall, own = time.monotonic(), time.process_time()
    cpu = [cpu_seconds(p.pid) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, own = time.monotonic() - wall, time.process_time() - own
    cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu)]
    time.sleep(0.2)   # the last commands are still on the wire
    for arm in arms:
        arm.recording = False
    return sent, wall, cpu, own


def run_case(executor, n_arms: int, dim: int, rate: float, args, env: dict,
             workdir: str) -> dict:
    """Start N filters at `rate` for D = `dim`, activate them, measure, stop them."""
    import rclpy
    from lifecycle_msgs.msg import Transition

    contract, pose = aloha_setup(dim)
    node = rclpy.create_node(f'ros_bench_d{dim}_{int(rate)}')   # this case's entities only
    executor.add_node(node)
    params = os.path.join(workdir, f'filter_d{dim}_{rate:g}.yaml')
    write_params(params, contract, rate, args)
    arms = [Arm(node, k, joint_names(dim), pose) for k in range(n_arms)]
    baseline = timer_baseline(arms, dim, rate, args, env, workdir)
    procs = [spawn(filter_argv(k, params), env,
                   os.path.join(workdir, f'filter{k}_d{dim}_{rate:g}.log'))
             for k in range(n_arms)]
    try:
        for arm in arms:
            arm.transition(Transition.TRANSITION_CONFIGURE)
        time.sleep(0.5)   # /joint_states (10 Hz) reaches the filters before activation
        for arm in arms:
            arm.transition(Transition.TRANSITION_ACTIVATE)
        measure(arms, procs, WARMUP_S)
        sent, wall, cpu, own = measure(arms, procs, args.seconds)
        time.sleep(1.2)   # the filters' next /diagnostics
        for arm in arms:
            arm.transition(Transition.TRANSITION_DEACTIVATE)
    finally:
        for proc in procs:
            stop(proc)
        executor.remove_node(node)
        node.destroy_node()
    per_arm = []
    for arm, arm_sent, arm_cpu in zip(arms, sent, cpu):
        filtered, relayed = decode(arm.filtered, pose[0]), decode(arm.relayed, pose[0])
        latency, arrival_seqs = latency_stats(arm_sent, filtered, relayed)
        result = tick_stats(filtered[0], filtered[2], 1e9 / rate, arrival_seqs)
        result.update(latency)
        result.update({'filter_cpu_percent': round(100 * arm_cpu / wall, 1),
                       'self_reported': arm.diagnostics})
        per_arm.append(result)
    return {'arms': n_arms, 'dim': dim, 'rate_hz': rate, 'seconds': round(wall, 1),
            'bench_process_cpu_percent': round(100 * own / wall, 1), **summary(per_arm),
            'timer_baseline': baseline, 'per_arm': per_arm}


def summary(per_arm: list[dict]) -> dict:
    """Return the worst arm's figures (the targets hold only if they hold for every arm)."""
    def worst(key, pick=max):
        values = [r.get(key) for r in per_arm if r.get(key) is not None]
        return pick(values) if values else None
    return {'missed_ticks': worst('missed_ticks'), 'jitter_p99_ms': worst('jitter_p99_ms'),
            'interval_jitter_p99_ms': worst('interval_jitter_p99_ms'),
            'latency_p50_ms': worst('latency_p50_ms'),
            'relay_latency_p50_ms': worst('relay_latency_p50_ms', min),
            'latency_ratio_vs_relay': worst('latency_ratio_vs_relay'),
            'filter_cpu_percent_per_arm': worst('filter_cpu_percent')}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--seconds', type=float, default=60.0, help='measured seconds per case')
    parser.add_argument('--rates', type=float, nargs='+', default=[500.0, 1000.0],
                        help='control rates (Hz)')
    parser.add_argument('--arms', type=int, default=1, help='filters, each in its own process')
    parser.add_argument('--dims', type=int, nargs='+', default=[14], choices=DIMS,
                        help='joints per arm')
    parser.add_argument('--executor', choices=('single', 'events'), default='single',
                        help="the filters' executor")
    parser.add_argument('--domain', type=int, default=87, help='ROS_DOMAIN_ID of the benchmark')
    parser.add_argument('--realtime-priority', type=int, default=0,
                        help='SCHED_FIFO priority of the control threads (0: off)')
    parser.add_argument('--cpu-affinity', type=int, nargs='*', default=[],
                        help='CPUs the control threads are pinned to')
    parser.add_argument('--lock-memory', action='store_true', help='mlockall the filters')
    parser.add_argument('--gc-mode', choices=('default', 'freeze', 'quiet'), default='default',
                        help="the filters' gc_mode")
    parser.add_argument('--relay', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--timer', type=float, default=0.0, help=argparse.SUPPRESS)
    args, ros_args = parser.parse_known_args()
    if args.relay:
        relay_main(ros_args)
        return
    if args.timer:
        timer_main(ros_args, args)
        return
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    os.environ.update(env)
    load = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix='ros_bench_')
    rclpy.init(domain_id=args.domain)
    relays = [spawn([sys.executable, os.path.abspath(__file__), '--relay', '--ros-args']
                    + remaps(k, 'relay'), env, os.path.join(workdir, f'relay{k}.log'))
              for k in range(args.arms)]
    executor = SingleThreadedExecutor()
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    cases = []
    try:
        for dim in args.dims:
            for rate in args.rates:
                cases.append(run_case(executor, args.arms, dim, rate, args, env, workdir))
    finally:
        for relay in relays:
            stop(relay)
        executor.shutdown()
        spinner.join(timeout=5.0)     # rclpy torn down under a spinning thread aborts the process
        rclpy.try_shutdown()
    result = {'arms': args.arms, 'seconds_per_case': args.seconds, 'cores': os.cpu_count(),
              'executor': args.executor, 'realtime': realtime_params(args),
              'load_avg_1min_at_start': round(load, 2),
              'python': platform.python_version(),
              'rmw': os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)'),
              'cases': cases, 'logs': workdir}
    if args.json:
        print(json.dumps(result))
        return
    for c in cases:
        print(f'{c["arms"]} arm(s), D = {c["dim"]}, {c["rate_hz"]:g} Hz, {c["seconds"]:g} s '
              f'(worst arm): missed {c["missed_ticks"]} ticks, tick jitter p99 '
              f'{c["jitter_p99_ms"]} ms (all intervals {c["interval_jitter_p99_ms"]} ms), '
              f'latency p50 {c["latency_p50_ms"]} ms vs relay {c["relay_latency_p50_ms"]} ms '
              f'(ratio {c["latency_ratio_vs_relay"]}), filter CPU '
              f'{c["filter_cpu_percent_per_arm"]} % of a core per arm; this process '
              f'{c["bench_process_cpu_percent"]} %')
        b = c['timer_baseline']
        print(f'    bare rclpy timer, same rate and executor (worst of {c["arms"]}): missed '
              f'{b["missed_ticks"]} of {b["commands"]} ticks, jitter p99 {b["jitter_p99_ms"]} ms '
              f'(max {b["jitter_max_ms"]} ms), CPU {b["cpu_percent"]} %')
    print(f'logs: {workdir}')


if __name__ == '__main__':
    main()
