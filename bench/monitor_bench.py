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
Cost of the action monitor per action on the real ALOHA stream (D = 14, and its first 7 columns).

Run by hand: `python bench/monitor_bench.py [--json] [--passes N] [--arl]`. Prints median, mean
and p99 µs per `ActionMonitor.update` (which includes the vectorized metric block every 0.1 s, so
the median is the plain per-step path and the mean includes the amortized blocks), and the µs of
one `window_metrics()` call (the FFT metric, computed at the diagnostic period, not per step).
The monitor runs with its motion scores armed (step_spike, the every-step motion_cusum at its
measured threshold, window_spike); D = 14 is also timed without them, for comparison.
`--arl` adds the CUSUM check: designed h, chain ARL0 (lower bound) and ARL1 (upper bound) against
simulation, and the design time (what the monitor's configure pays) for alpha down to 1e-4.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
import platform
import time

import numpy as np

from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.sequential import (design_cusum, MotionCalibration,
                                               RunLengthThreshold, simulate_run_lengths)

DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                    'aloha_sim_lerobot_4ep.npz')
FPS = 50.0


def aloha_episodes(dim: int) -> list[np.ndarray]:
    with np.load(DATA, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64)[:, :dim], z['episode_index']
    return [actions[index == i] for i in np.unique(index)]


def time_monitor(dim: int, passes: int, motion: bool = True) -> dict:
    """
    Time `update` and `window_metrics` in µs over `passes` passes of the stream.

    `motion`: with the motion scores armed (step, window, measured CUSUM), as evaluate runs them.
    """
    episodes = aloha_episodes(dim)
    cal = calibrate(episodes, [f'joint_{j}' for j in range(dim)], 1.0 / FPS, holdout=0.0).data
    steps = None
    if motion:
        steps = MotionCalibration.from_episodes(episodes, cal.sigma, dt=1.0 / FPS)
        # 4 episodes cannot measure run lengths: stand-in thresholds arm the every-step CUSUMs
        stand_in = RunLengthThreshold(3.0, 20.0, 9.5, 0.1, 0.0, 10.0, 18.0, 0.5, 100)
        steps = replace(steps, cusum=stand_in, position_cusum=stand_in)
    monitor = ActionMonitor(cal, 1.0 / FPS, 'generic', motion=steps)
    assert not motion or monitor.cusum_stride == monitor.motion_stride == 1
    rows = [row for episode in episodes for row in episode]
    clock = time.perf_counter_ns
    update_ns, window_ns = [], []
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
    update_us, window_us = np.array(update_ns) / 1e3, np.array(window_ns) / 1e3
    return {'median': float(np.median(update_us)), 'mean': float(update_us.mean()),
            'p99': float(np.percentile(update_us, 99)), 'window': float(np.median(window_us)),
            'block_steps': monitor.block}


def arl_check(alpha: float = 0.05, runs: int = 4000) -> dict:
    """Designed vs simulated in-control run length and delay for a few (rho, target) pairs."""
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
    times = {}
    for alpha in (0.05, 0.01, 0.001, 0.0001):
        design_cusum.cache_clear()
        start = time.perf_counter()
        design_cusum(alpha, rho, hours * 3600.0 * rate_hz)
        times[f'alpha{alpha:g}'] = round((time.perf_counter() - start) * 1e3, 1)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--passes', type=int, default=5, help='passes over the 1700-step stream')
    parser.add_argument('--arl', action='store_true',
                        help='also check the CUSUM ARL0/ARL1 by simulation')
    args = parser.parse_args()
    result = {'machine': platform.processor() or platform.machine(),
              'python': platform.python_version()}
    for dim in (7, 14):
        t = time_monitor(dim, args.passes)
        result.update({f'monitor_us_median_d{dim}': round(t['median'], 2),
                       f'monitor_us_mean_d{dim}': round(t['mean'], 2),
                       f'monitor_us_p99_d{dim}': round(t['p99'], 2),
                       f'window_metrics_us_d{dim}': round(t['window'], 2)})
    result['metric_block_steps'] = t['block_steps']
    plain = time_monitor(14, args.passes, motion=False)
    result['monitor_us_median_d14_no_motion'] = round(plain['median'], 2)
    result['monitor_us_mean_d14_no_motion'] = round(plain['mean'], 2)
    if args.arl:
        result['cusum_arl'] = arl_check()
        result['cusum_design_ms'] = design_times()
    if args.json:
        print(json.dumps(result))
        return
    for dim in (7, 14):
        print(f'D={dim:2d}: update median {result[f"monitor_us_median_d{dim}"]:.2f} µs, '
              f'mean {result[f"monitor_us_mean_d{dim}"]:.2f} µs, '
              f'p99 {result[f"monitor_us_p99_d{dim}"]:.2f} µs; '
              f'window_metrics {result[f"window_metrics_us_d{dim}"]:.1f} µs')
    print(f'D=14 without step scores: update median '
          f'{result["monitor_us_median_d14_no_motion"]:.2f} µs, '
          f'mean {result["monitor_us_mean_d14_no_motion"]:.2f} µs')
    for name, row in result.get('cusum_arl', {}).items():
        print(f'CUSUM alpha=0.05 {name}: h={row["h"]}, ARL0 >= {row["arl0_chain"]} (chain) vs '
              f'{row["arl0_simulated"]:.1f} (simulated), ARL1 <= {row["arl1_chain"]} vs '
              f'{row["arl1_simulated"]:.2f}')
    if 'cusum_design_ms' in result:
        times = result['cusum_design_ms'].items()
        print('CUSUM design time (ms): ' + ', '.join(f'{k} {v}' for k, v in times))


if __name__ == '__main__':
    main()
