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
Cost of the action monitor per action on real streams, against a baseline revision.

Run by hand: `python bench/monitor_bench.py [--baseline REV] [--rounds N] [--passes N] [--json]
[--arl]`. Cases: the ALOHA stream at 50 Hz (D = 14, its first 7 columns, and D = 14 without motion
scores; the metric block is 5 steps) and held-out PushT episodes at 10 Hz (D = 2, block = 1 step:
every action runs the whole block path, as in a PushT drill). Per case: median, mean and p99 µs per
`ActionMonitor.update` (the median is the plain per-step path where blocks are longer than one
step, the mean includes the amortized blocks), the CPU-time mean (thread CPU time of the whole
loop per update: the figure least disturbed by other processes) and the median µs of
`window_metrics()` (the diagnostics read, with its FFT). Motion scores are armed (step_spike,
window_spike, the every-step CUSUMs at measured thresholds) unless the case says otherwise.

`score a recorded episode`: the CPU µs per step of `ActionMonitor.score_episode` on the same
episodes (the drill's call without +stop: whole episode and its first 50 steps' summary) beside
the CPU mean of `update`, both in the same child process.

`--baseline REV` checks REV out into a temporary `git worktree` and times its monitor on the same
calibrations and streams, in child processes alternating with this tree's (`--rounds` of each,
the median over rounds kept), and prints the ratio baseline / new (> 1: faster now). The machine
is shared: the load average before and after is printed; compare ratios, not absolute figures.
`--arl` adds the CUSUM check: designed h, chain ARL0 (lower bound) and ARL1 (upper bound) against
simulation, and the design time (what the monitor's configure pays) for alpha down to 1e-4.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
from source_trees import run_child

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.join(ROOT, '..', 'shared', 'data')
PUSHT_CAL_EPISODES = 40   # PushT episodes calibrated on; the next PUSHT_RUN_EPISODES are streamed
PUSHT_RUN_EPISODES = 30
# case: (calibration file stem, motion scores armed)
CASES = {
    'aloha_d14': ('aloha', True),
    'aloha_d7': ('aloha7', True),
    'aloha_d14_no_motion': ('aloha', False),
    'pusht_10hz': ('pusht', True),
}


def episodes_of(name: str, dim: int | None = None) -> list[np.ndarray]:
    """Return the episodes [T, D] of a stream file in DATA (its first `dim` columns)."""
    with np.load(os.path.join(DATA, name), allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    actions = actions if dim is None else actions[:, :dim]
    return [actions[index == i] for i in np.unique(index)]


def write_calibrations(folder: str) -> None:
    """Calibrate once (this tree's code) so that every revision sees the same monitor inputs."""
    from vla_safety_filter.core.calibration import calibrate
    from vla_safety_filter.core.sequential import RunLengthThreshold
    # 4 ALOHA episodes cannot measure run lengths: stand-in thresholds arm the every-step CUSUMs
    stand_in = RunLengthThreshold(3.0, 20.0, 9.5, 0.1, 0.0, 10.0, 18.0, 0.5, 100)
    for stem, dim in (('aloha', 14), ('aloha7', 7)):
        episodes = episodes_of('aloha_sim_lerobot_4ep.npz', dim)
        cal = calibrate(episodes, [f'joint_{j}' for j in range(dim)], 0.02, holdout=0.0).data
        motion = replace(cal.motion, cusum=stand_in, position_cusum=stand_in)
        replace(cal, motion=motion).save(os.path.join(folder, f'{stem}.npz'))
    pusht = episodes_of('pusht_cchi_v7_replay.npz')
    cal = calibrate(pusht[:PUSHT_CAL_EPISODES], ['x', 'y'], 0.1, holdout=0.0).data
    cal.save(os.path.join(folder, 'pusht.npz'))


def stream_of(stem: str) -> list[np.ndarray]:
    """Return the episodes a case streams: the whole ALOHA file, or held-out PushT episodes."""
    if stem.startswith('aloha'):
        return episodes_of('aloha_sim_lerobot_4ep.npz', 7 if stem == 'aloha7' else 14)
    return episodes_of('pusht_cchi_v7_replay.npz')[
        PUSHT_CAL_EPISODES:PUSHT_CAL_EPISODES + PUSHT_RUN_EPISODES]


def time_scoring(monitor, episodes: list[np.ndarray], passes: int) -> float:
    """
    Return the CPU µs per step of `score_episode` over the recorded episodes (NaN without it).

    The drill's call: the whole episode with its first 50 steps' summary.
    """
    if not hasattr(monitor, 'score_episode'):   # a baseline revision from before it
        return float('nan')
    cpu_ns = -time.thread_time_ns()
    for _ in range(passes):
        for episode in episodes:
            monitor.score_episode(episode, early_steps=50)
    cpu_ns += time.thread_time_ns()
    return cpu_ns / 1e3 / (passes * sum(len(episode) for episode in episodes))


def time_case(folder: str, case: str, passes: int) -> dict:
    """Time `update` and `window_metrics` in µs over `passes` passes of the case's stream."""
    from vla_safety_filter.core.monitors import ActionMonitor
    from vla_safety_filter.core.params import CalibrationData
    stem, motion = CASES[case]
    cal = CalibrationData.load(os.path.join(folder, f'{stem}.npz'))
    monitor = ActionMonitor(cal, cal.dt, 'generic', motion=cal.motion if motion else None)
    assert not motion or monitor.cusum_stride == monitor.motion_stride == 1
    episodes = stream_of(stem)
    rows = [row for episode in episodes for row in episode]
    clock = time.perf_counter_ns
    update_ns, window_ns = [], []
    cpu_ns = -time.thread_time_ns()
    for _ in range(passes):
        monitor.reset_episode()
        for k, row in enumerate(rows):
            start = clock()
            monitor.update(row)
            update_ns.append(clock() - start)
            if k % 25 == 24:
                start = clock()
                monitor.window_metrics()
                window_ns.append(clock() - start)
    cpu_ns += time.thread_time_ns()
    update_us, window_us = np.array(update_ns) / 1e3, np.array(window_ns) / 1e3
    return {'median': float(np.median(update_us)), 'mean': float(update_us.mean()),
            'p99': float(np.percentile(update_us, 99)), 'window': float(np.median(window_us)),
            'cpu_mean': cpu_ns / 1e3 / update_us.size, 'block_steps': monitor.block,
            'score_episode': time_scoring(monitor, episodes, passes)}


def child(folder: str, passes: int) -> None:
    """Print one JSON object: every case timed with the monitor importable here."""
    import vla_safety_filter
    result = {case: time_case(folder, case, passes) for case in CASES}
    result['package'] = os.path.dirname(vla_safety_filter.__file__)
    print(json.dumps(result))


def worktree(rev: str, folder: str) -> str:
    """Check REV out (detached) into a git worktree under folder; return its path."""
    path = os.path.join(folder, 'baseline')
    subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '--quiet', path, rev],
                   check=True)
    return path


def median_of(runs: list[dict]) -> dict:
    """Per case and figure, the median over rounds."""
    return {case: {key: float(np.median([r[case][key] for r in runs])) for key in runs[0][case]}
            for case in runs[0]}


def measure(args, folder: str) -> dict:
    """Alternate child runs of this tree and the baseline; medians over rounds and ratios."""
    trees = {'new': ROOT}
    if args.baseline:
        trees['baseline'] = worktree(args.baseline, folder)
    runs = {name: [] for name in trees}
    try:
        for _ in range(args.rounds):
            for name, root in trees.items():
                runs[name].append(run_child(__file__, root,
                                            [folder, '--passes', str(args.passes)]))
    finally:
        if args.baseline:
            subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force',
                            trees['baseline']], check=False)
    result = {name: median_of(r) for name, r in runs.items()}
    if args.baseline:
        result['ratio_baseline_over_new'] = {
            case: {key: round(result['baseline'][case][key] / result['new'][case][key], 2)
                   for key in ('median', 'mean', 'p99', 'window', 'cpu_mean')}
            for case in CASES}
    return result


def arl_check(alpha: float = 0.05, runs: int = 4000) -> dict:
    """Designed vs simulated in-control run length and delay for a few (rho, target) pairs."""
    from vla_safety_filter.core.sequential import design_cusum, simulate_run_lengths
    rows = {}
    for rho, target in ((3.0, 1000.0), (3.0, 18000.0), (4.0, 1000.0)):
        design = design_cusum(alpha, rho, target)
        rows[f'rho{rho:g}_arl0_{target:g}'] = {
            'h': round(design.h, 4), 'arl0_chain': round(design.arl0, 1),
            'arl0_simulated': float(simulate_run_lengths(design, alpha, runs, seed=1).mean()),
            'arl1_chain': round(design.arl1, 2),
            'arl1_simulated': float(simulate_run_lengths(design, rho * alpha, runs,
                                                         seed=2).mean())}
    return rows


def design_times(rho: float = 3.0, hours: float = 10.0, rate_hz: float = 1.0) -> dict:
    """Milliseconds to design the CUSUM (uncached) for the generic profile's target, per alpha."""
    from vla_safety_filter.core.sequential import design_cusum
    times = {}
    for alpha in (0.05, 0.01, 0.001, 0.0001):
        design_cusum.cache_clear()
        start = time.perf_counter()
        design_cusum(alpha, rho, hours * 3600.0 * rate_hz)
        times[f'alpha{alpha:g}'] = round((time.perf_counter() - start) * 1e3, 1)
    return times


def print_table(result: dict) -> None:
    """Print one line per case: new figures, baseline figures and ratios when measured."""
    print(f'load average before {result["load_before"]}, after {result["load_after"]} '
          f'({result["machine"]}, Python {result["python"]}; shared machine: compare ratios)')
    for case in CASES:
        new = result['new'][case]
        line = (f'{case:20s} block {int(new["block_steps"])}: update median '
                f'{new["median"]:7.2f} µs, mean {new["mean"]:7.2f}, p99 {new["p99"]:8.2f}, '
                f'CPU mean {new["cpu_mean"]:7.2f}; window_metrics {new["window"]:7.1f} µs'
                f'\n{"":20s} score a recorded episode: {new["score_episode"]:7.2f} µs CPU per '
                f'step (x{new["cpu_mean"] / new["score_episode"]:.1f} less than update)')
        if 'baseline' in result:
            base, ratio = result['baseline'][case], result['ratio_baseline_over_new'][case]
            line += (f'\n{"":20s} baseline {result["baseline_rev"]}: median '
                     f'{base["median"]:7.2f}, mean {base["mean"]:7.2f}, p99 {base["p99"]:8.2f}, '
                     f'CPU mean {base["cpu_mean"]:7.2f}; window_metrics {base["window"]:7.1f}'
                     f'\n{"":20s} ratio baseline/new: x{ratio["median"]} median, '
                     f'x{ratio["mean"]} mean, x{ratio["p99"]} p99, x{ratio["cpu_mean"]} CPU mean, '
                     f'x{ratio["window"]} window_metrics')
        print(line)
    for name, row in result.get('cusum_arl', {}).items():
        print(f'CUSUM alpha=0.05 {name}: h={row["h"]}, ARL0 >= {row["arl0_chain"]} (chain) vs '
              f'{row["arl0_simulated"]:.1f} (simulated), ARL1 <= {row["arl1_chain"]} vs '
              f'{row["arl1_simulated"]:.2f}')
    if 'cusum_design_ms' in result:
        times = result['cusum_design_ms'].items()
        print('CUSUM design time (ms): ' + ', '.join(f'{k} {v}' for k, v in times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--passes', type=int, default=3, help='passes over each stream per round')
    parser.add_argument('--rounds', type=int, default=3, help='child runs per tree (median kept)')
    parser.add_argument('--baseline', metavar='REV', help='git revision to compare with')
    parser.add_argument('--arl', action='store_true',
                        help='also check the CUSUM ARL0/ARL1 by simulation')
    parser.add_argument('--child', metavar='DIR', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.passes)
        return
    result = {'machine': platform.processor() or platform.machine(),
              'python': platform.python_version(), 'load_before': os.getloadavg(),
              'baseline_rev': args.baseline}
    with tempfile.TemporaryDirectory(prefix='monitor_bench_') as folder:
        write_calibrations(folder)
        result.update(measure(args, folder))
    if args.arl:
        result['cusum_arl'] = arl_check()
        result['cusum_design_ms'] = design_times()
    result['load_after'] = os.getloadavg()
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == '__main__':
    main()
