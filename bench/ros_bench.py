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

"""ROS 2 timing of the safety_filter node at D = 14: control-tick jitter, missed ticks, latency, CPU.

Run by hand (never in the test suite), on a quiet machine:
`python bench/ros_bench.py [--json] [--seconds 60] [--rates 500 1000] [--domain 87]`.

Method. The filter runs in its own process, started like `ros2 run` / `ros2 launch` start it (the
`safety_filter` console script with `--ros-args --params-file`), with a contract calibrated on the
bundled real ALOHA episodes and `control_rate_hz` set to each rate in turn. A bare rclpy relay
(`--relay`: subscribe JointTrajectory, publish Float64MultiArray of the first point) runs in a
second process. This process publishes /joint_states (the pose of a recorded frame), drives the
filter's lifecycle with ChangeState/GetState calls, then publishes one single-point raw action
every 15..25 ms (uniformly random, so arrivals fall at a uniform phase of the control tick) for
`--seconds`. Each raw action carries a sequence code in joint 0 (steps of 20 µrad around the
recorded pose, at most 0.14 mrad: less than one tick's velocity step, so the filter's first command
after the action equals it exactly).

- Tick jitter and missed ticks use the DDS source timestamp of every command the filter publishes
  (its publish time, in the filter process, unaffected by this process's scheduling). Jitter is
  |interval - period| between consecutive commands. rcl timers skip missed periods instead of
  catching up, so missed ticks = periods spanned - commands published (publication sequence
  numbers also count commands this process failed to receive, reported apart); `late_intervals`
  counts intervals over 1.5 periods (a late tick followed by a short one loses nothing).
- Latency is from just before `publish()` of a raw action to the DDS reception timestamp of the
  first message carrying its code, on `/forward_position_controller/commands` (filter) and on
  `/relay/commands` (relay), for the same raw actions. The filter executes an action on its next
  control tick, so its latency includes that wait (uniform in [0, period)); `tick_wait` estimates
  it per action as filter publish time minus relay publish time (both processes receive the action
  together; the relay publishes at once), and `latency_tick_aligned` is latency minus that wait.
- CPU is the filter process's user + system time over the measured wall time (100 % = one core),
  and the same for its main thread (the executor that runs the control timer); this process's own
  CPU (it receives every command) is reported too, as it competes for the same cores.
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

DATA = os.path.join(os.path.dirname(__file__), '..', 'vla_safety_filter', 'data', 'aloha_sim_4ep.npz')
JOINTS = [f'{side}_{name}' for side in ('left', 'right') for name in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
FILTER_TOPIC = '/forward_position_controller/commands'
RELAY_TOPIC = '/relay/commands'
CODES = 8            # sequence codes carried in joint 0
CODE_STEP = 2e-5     # rad per code: 7 codes = 0.14 mrad, below one 1 kHz velocity step (0.46 mrad)
WARMUP_S = 2.0


def relay_main() -> None:
    """`--relay`: the bare rclpy relay the filter is compared with (own process, like the filter)."""
    import rclpy
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from vla_safety_filter.nodes.common import COMMAND_QOS, spin

    rclpy.init(args=sys.argv)
    node = rclpy.create_node('relay')
    pub = node.create_publisher(Float64MultiArray, RELAY_TOPIC, COMMAND_QOS)
    node.create_subscription(JointTrajectory, '/vla/raw_action', lambda m: pub.publish(
        Float64MultiArray(data=list(m.points[0].positions))), COMMAND_QOS)
    spin([node])


def aloha_setup():
    """Contract calibrated on the bundled real ALOHA episodes and the recorded pose to hold."""
    from vla_safety_filter.core.calibration import calibrate
    from vla_safety_filter.core.episodes import read_episodes
    data = read_episodes(DATA)
    episodes = [e.actions for e in data.episodes]
    contract = calibrate(episodes, JOINTS, 1.0 / data.fps, holdout=0.0).contract
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


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or one of its threads) from /proc, in seconds."""
    path = f'/proc/{pid}/stat' if tid is None else f'/proc/{pid}/task/{tid}/stat'
    with open(path) as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class Bench:
    """This process's node: /joint_states, raw actions, receive stamps, the filter's lifecycle."""

    def __init__(self, pose: np.ndarray):
        import rclpy
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from vla_safety_filter.nodes.common import COMMAND_QOS, STATE_QOS
        from vla_safety_filter.nodes.execspec_check import LifecycleClient

        self.pose = pose
        self.node = rclpy.create_node('ros_bench')
        self.lifecycle = LifecycleClient(self.node, 'safety_filter', ReentrantCallbackGroup(), 10.0)
        self.raw = self.node.create_publisher(JointTrajectory, '/vla/raw_action', COMMAND_QOS)
        states = self.node.create_publisher(JointState, '/joint_states', STATE_QOS)
        state = JointState(name=JOINTS, position=pose.tolist(), velocity=[0.0] * len(JOINTS))
        self.node.create_timer(0.1, lambda: states.publish(state))
        self.filtered: list[tuple] = []   # (source ns, received ns, publication seq, joint 0)
        self.relayed: list[tuple] = []
        self.recording = False
        self.node.create_subscription(Float64MultiArray, FILTER_TOPIC,
                                      lambda m, i: self._record(self.filtered, m, i), 1000)
        self.node.create_subscription(Float64MultiArray, RELAY_TOPIC,
                                      lambda m, i: self._record(self.relayed, m, i), 1000)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _record(self, rows: list, msg, info) -> None:
        """Keep the DDS timestamps, sequence number and joint 0 of a received command."""
        if self.recording:
            rows.append((info['source_timestamp'], info['received_timestamp'],
                         info['publication_sequence_number'], msg.data[0]))

    def transition(self, transition_id: int, expected: int) -> None:
        """ChangeState on the filter, confirmed with GetState."""
        self.lifecycle.transition(transition_id, expected)

    def publish_actions(self, seconds: float) -> list[tuple[int, int]]:
        """Raw actions every 15..25 ms for `seconds`; returns (publish ns, code) of each."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        sent, seq = [], 0
        end = time.monotonic() + seconds
        rng = random.Random(0)
        while time.monotonic() < end:
            code = seq % CODES
            positions = self.pose.copy()
            positions[0] += code * CODE_STEP
            msg = JointTrajectory(joint_names=JOINTS, points=[JointTrajectoryPoint(
                positions=positions.tolist(), time_from_start=Duration(nanosec=20_000_000))])
            stamp = time.time_ns()
            self.raw.publish(msg)
            sent.append((stamp, code))
            seq += 1
            time.sleep(rng.uniform(0.015, 0.025))
        return sent

    def close(self) -> None:
        """Stop spinning and destroy the node."""
        self.executor.shutdown()
        self.node.destroy_node()


def decode(rows: list[tuple], pose0: float) -> tuple[np.ndarray, ...]:
    """Columns source ns, received ns, sequence number, code of the recorded messages."""
    if not rows:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(4))
    arr = np.array([r[:3] for r in rows], dtype=np.int64)
    codes = np.rint((np.array([r[3] for r in rows]) - pose0) / CODE_STEP).astype(np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], codes


def tick_stats(source: np.ndarray, seqs: np.ndarray, period_ns: float) -> dict:
    """Jitter of consecutive commands, late intervals and missed ticks, from the filter's publish times.

    rcl timers skip the periods they miss (no catch-up), so the ticks lost are the periods spanned
    minus the commands published (sequence numbers count the ones this process lost too).
    """
    order = np.argsort(seqs)
    source, seqs = source[order], seqs[order]
    intervals, gaps = np.diff(source).astype(float), np.diff(seqs)
    jitter_ms = np.abs(intervals[gaps == 1] - period_ns) / 1e6
    expected = int(np.rint((source[-1] - source[0]) / period_ns)) + 1
    published = int(seqs[-1] - seqs[0]) + 1
    return {'ticks': published, 'jitter_p50_ms': pct(jitter_ms, 50),
            'jitter_p99_ms': pct(jitter_ms, 99), 'jitter_max_ms': pct(jitter_ms, 100),
            'missed_ticks': max(expected - published, 0),
            'late_intervals': int((intervals > 1.5 * period_ns).sum()),
            'bench_lost_commands': int((gaps - 1).clip(0).sum())}


def first_arrivals(sent: list[tuple[int, int]], received: np.ndarray, codes: np.ndarray,
                   other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each raw action: reception ns and `other` column of the first later message with its code.

    Searched only until the next raw action is published (NaN when not found there).
    """
    order = np.argsort(received)
    received, codes, other = received[order], codes[order], other[order]
    arrive = np.full(len(sent), np.nan)
    extra = np.full(len(sent), np.nan)
    for k, (stamp, code) in enumerate(sent):
        limit = sent[k + 1][0] if k + 1 < len(sent) else np.inf
        i = int(np.searchsorted(received, stamp))
        while i < received.size and received[i] < limit:
            if codes[i] == code:
                arrive[k], extra[k] = received[i], other[i]
                break
            i += 1
    return arrive, extra


def pct(values: np.ndarray, q: float) -> float | None:
    """Percentile of the finite values, rounded (None when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return round(float(np.percentile(values, q)), 4) if values.size else None


def latency_stats(sent, filtered, relayed) -> dict:
    """Raw publish -> controller-topic reception for the filter and the relay, same raw actions."""
    stamps = np.array([s for s, _ in sent], dtype=float)
    f_arrive, f_source = first_arrivals(sent, filtered[1], filtered[3], filtered[0])
    r_arrive, r_source = first_arrivals(sent, relayed[1], relayed[3], relayed[0])
    latency = (f_arrive - stamps) / 1e6
    relay = (r_arrive - stamps) / 1e6
    wait = (f_source - r_source) / 1e6
    out = {'actions': len(sent), 'filter_unmatched': int(np.isnan(latency).sum()),
           'relay_unmatched': int(np.isnan(relay).sum()),
           'latency_p50_ms': pct(latency, 50), 'latency_p99_ms': pct(latency, 99),
           'relay_latency_p50_ms': pct(relay, 50), 'relay_latency_p99_ms': pct(relay, 99),
           'tick_wait_p50_ms': pct(wait, 50),
           'latency_tick_aligned_p50_ms': pct(latency - wait, 50),
           'latency_tick_aligned_p99_ms': pct(latency - wait, 99)}
    if out['latency_p50_ms'] and out['relay_latency_p50_ms']:
        out['latency_ratio_vs_relay'] = round(out['latency_p50_ms'] / out['relay_latency_p50_ms'], 3)
        out['latency_ratio_tick_aligned_vs_relay'] = round(
            out['latency_tick_aligned_p50_ms'] / out['relay_latency_p50_ms'], 3)
    return out


def run_rate(bench: Bench, contract, rate: float, seconds: float, env: dict, workdir: str) -> dict:
    """Start the filter at `rate`, activate it, measure for `seconds`, stop it."""
    from lifecycle_msgs.msg import State, Transition

    from vla_safety_filter.core.params import write_filter_params
    params = os.path.join(workdir, f'filter_{rate:g}.yaml')
    write_filter_params(params, contract, None, {'control_rate_hz': float(rate), 'command_timeout': 0.1})
    script = os.path.join(os.path.dirname(sys.executable), 'safety_filter')
    argv = [script] if os.path.exists(script) else [
        sys.executable, '-c', 'from vla_safety_filter.nodes.safety_filter import main; main()']
    proc = spawn(argv + ['--ros-args', '--params-file', params], env,
                 os.path.join(workdir, f'filter_{rate:g}.log'))
    try:
        bench.transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
        time.sleep(0.5)   # /joint_states (10 Hz) reaches the filter before activation
        bench.transition(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        bench.publish_actions(WARMUP_S)
        bench.filtered.clear()
        bench.relayed.clear()
        bench.recording = True
        wall, own = time.monotonic(), time.process_time()
        cpu, main = cpu_seconds(proc.pid), cpu_seconds(proc.pid, proc.pid)
        sent = bench.publish_actions(seconds)
        wall, own = time.monotonic() - wall, time.process_time() - own
        cpu, main = cpu_seconds(proc.pid) - cpu, cpu_seconds(proc.pid, proc.pid) - main
        time.sleep(0.2)   # the last commands are still on the wire
        bench.recording = False
        bench.transition(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
    finally:
        stop(proc)
    filtered = decode(bench.filtered, bench.pose[0])
    relayed = decode(bench.relayed, bench.pose[0])
    result = tick_stats(filtered[0], filtered[2], 1e9 / rate)
    result.update(latency_stats(sent, filtered, relayed))
    result.update({'filter_cpu_percent': round(100 * cpu / wall, 1),
                   'filter_main_thread_cpu_percent': round(100 * main / wall, 1),
                   'bench_process_cpu_percent': round(100 * own / wall, 1),
                   'seconds': round(wall, 1)})
    return result


def flatten(per_rate: dict) -> dict:
    """The headline keys: per-rate figures suffixed _1khz / _500hz, latency keys bare at 1 kHz."""
    out = {}
    for rate, r in per_rate.items():
        tag = '1khz' if rate == 1000 else f'{rate:g}hz'
        for key in ('jitter_p50_ms', 'jitter_p99_ms', 'missed_ticks', 'late_intervals',
                    'filter_cpu_percent', 'filter_main_thread_cpu_percent', 'latency_p50_ms', 'latency_p99_ms',
                    'relay_latency_p50_ms', 'latency_ratio_vs_relay', 'latency_tick_aligned_p50_ms'):
            out[f'{key}_{tag}'] = r.get(key)
    top = per_rate.get(1000) or next(iter(per_rate.values()))
    for key in ('latency_p50_ms', 'latency_p99_ms', 'relay_latency_p50_ms', 'relay_latency_p99_ms',
                'latency_ratio_vs_relay', 'tick_wait_p50_ms', 'latency_tick_aligned_p50_ms',
                'latency_ratio_tick_aligned_vs_relay'):
            out[key] = top.get(key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--seconds', type=float, default=60.0, help='measured seconds per rate')
    parser.add_argument('--rates', type=float, nargs='+', default=[500.0, 1000.0],
                        help='control rates (Hz)')
    parser.add_argument('--domain', type=int, default=87, help='ROS_DOMAIN_ID of the benchmark')
    parser.add_argument('--relay', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        relay_main()
        return
    import rclpy
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    os.environ.update(env)
    contract, pose = aloha_setup()
    load = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix='ros_bench_')
    rclpy.init(domain_id=args.domain)
    relay = spawn([sys.executable, os.path.abspath(__file__), '--relay'], env,
                  os.path.join(workdir, 'relay.log'))
    bench = Bench(pose)
    per_rate = {}
    try:
        for rate in args.rates:
            per_rate[int(rate) if rate.is_integer() else rate] = run_rate(
                bench, contract, rate, args.seconds, env, workdir)
    finally:
        stop(relay)
        bench.close()
        rclpy.try_shutdown()
    result = {'dim': len(JOINTS), 'seconds_per_rate': args.seconds, 'cores': os.cpu_count(),
              'load_avg_1min_at_start': round(load, 2), 'python': platform.python_version(),
              'rmw': os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)'),
              **flatten(per_rate), 'per_rate': {f'{r:g}': v for r, v in per_rate.items()},
              'logs': workdir}
    if args.json:
        print(json.dumps(result))
        return
    for rate, r in per_rate.items():
        print(f'{rate:g} Hz, D = {len(JOINTS)}, {r["seconds"]:g} s: {r["ticks"]} ticks, jitter p50 '
              f'{r["jitter_p50_ms"]} ms p99 {r["jitter_p99_ms"]} ms max {r["jitter_max_ms"]} ms, '
              f'missed {r["missed_ticks"]} ticks, {r["late_intervals"]} intervals > 1.5 periods '
              f'(bench lost {r["bench_lost_commands"]} commands)')
        print(f'  latency p50 {r["latency_p50_ms"]} ms p99 {r["latency_p99_ms"]} ms vs relay p50 '
              f'{r["relay_latency_p50_ms"]} ms p99 {r["relay_latency_p99_ms"]} ms: ratio '
              f'{r.get("latency_ratio_vs_relay")}; tick wait p50 {r["tick_wait_p50_ms"]} ms, '
              f'tick-aligned p50 {r["latency_tick_aligned_p50_ms"]} ms (ratio '
              f'{r.get("latency_ratio_tick_aligned_vs_relay")})')
        print(f'  filter CPU {r["filter_cpu_percent"]} % of a core (main thread '
              f'{r["filter_main_thread_cpu_percent"]} %); this process {r["bench_process_cpu_percent"]} %')
    print(f'logs: {workdir}')


if __name__ == '__main__':
    main()
