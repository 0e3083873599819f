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
Time `vla-safety drill` on PushT: paired seeds x conditions, and what it adds to the world.

Run by hand on a quiet machine: `python bench/drill_bench.py [--episodes 100] [--workers 2]`.
Prints (1) the wall time of the whole drill in worker processes (issue 11's target: 100 paired
seeds x 10 conditions in <= 2 min on 2 cores); (2) per condition, on `--ratio-episodes` seeds in
this process, the full condition time against the world alone replaying the same commands, and
their ratio; (3) per step, the filter (Executive) plus the action monitor against the world's
step (target: <= 10 %).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from vla_safety_filter.core.drill.conditions import parse_conditions
from vla_safety_filter.core.drill.policies import make_policy
from vla_safety_filter.core.drill.runner import (DrillSettings, DrillSetup, EpisodeRunner,
                                                 run_drill_parallel, safety_from_demos)
from vla_safety_filter.core.drill.worlds import make_world
from vla_safety_filter.core.executive import Executive
from vla_safety_filter.core.monitors import ActionMonitor

DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'data')
DEMOS = os.path.join(DATA, 'pusht_cchi_v7_replay.npz')
CONDITIONS = ('none,filter,filter+stop,drift,drift+filter,drift+filter+stop,offset,'
              'offset+filter,nan,nan+filter')


def time_world(world, episodes) -> float:
    """Return the seconds the world alone takes to replay the episodes' executed commands."""
    start = time.perf_counter()
    for ep in episodes:
        world.reset(ep.seed)
        for command in ep.executed:
            world.step(command)
    return time.perf_counter() - start


def time_conditions(world, safety, settings) -> list[dict]:
    """Return, per condition, the full episode time and the world-only time of its commands."""
    runner = EpisodeRunner(world, make_policy(f'nn:{DEMOS}'), safety, settings)
    rows = []
    for condition in settings.conditions:
        start = time.perf_counter()
        episodes = [runner.run(condition, settings.seed + k) for k in range(settings.episodes)]
        full = time.perf_counter() - start
        world_only = time_world(world, episodes)
        rows.append({'condition': condition.name, 'steps': sum(ep.n_steps for ep in episodes),
                     'full_s': full, 'world_s': world_only, 'ratio': full / world_only})
    return rows


def time_filter_and_monitor(safety, episodes, dt: float) -> float:
    """Return seconds per step of Executive.tick (chunk every 8 steps) + ActionMonitor.update."""
    monitor = ActionMonitor(safety.calibration, dt, costs=safety.costs)
    steps, start = 0, time.perf_counter()
    for ep in episodes:
        raw = np.asarray(ep.raw)
        executive = Executive(safety.contract)
        executive.observe(raw[0], 0.0)
        executive.start(0.0)
        monitor.reset_episode()
        for k, action in enumerate(raw):
            if k % 8 == 0:
                executive.on_chunk(raw[k:k + 8], dt * np.arange(1, len(raw[k:k + 8]) + 1), k * dt)
            executive.observe(ep.executed[k], k * dt)
            executive.tick(k * dt)
            monitor.update(action)
        steps += len(raw)
    return (time.perf_counter() - start) / max(steps, 1)


def measure(args) -> dict:
    """Run the three timings and return them as one dict."""
    world = make_world('pusht')
    safety = safety_from_demos(DEMOS, world)
    conditions = tuple(parse_conditions(args.conditions))
    settings = DrillSettings(episodes=args.episodes, seed=0, conditions=conditions)
    start = time.perf_counter()
    episodes = run_drill_parallel(DrillSetup('pusht', f'nn:{DEMOS}'), safety, settings,
                                  args.workers)
    total = time.perf_counter() - start
    small = DrillSettings(episodes=args.ratio_episodes, seed=0, conditions=conditions)
    rows = time_conditions(world, safety, small)
    plain = [ep for ep in episodes if ep.condition == 'none'][:args.ratio_episodes]
    world_step = time_world(world, plain) / sum(ep.n_steps for ep in plain)
    guard_step = time_filter_and_monitor(safety, plain, world.dt)
    return {
        'machine': f'{platform.machine()} {os.cpu_count()} cpus, '
                   f'Python {platform.python_version()}',
        'workers': args.workers, 'episodes': len(episodes),
        'steps': int(sum(ep.n_steps for ep in episodes)), 'drill_s': total,
        'conditions': rows, 'world_step_us': 1e6 * world_step,
        'filter_monitor_step_us': 1e6 * guard_step, 'overhead_share': guard_step / world_step,
    }


def report(result: dict) -> None:
    """Print the measurements as a few readable lines and a table."""
    print(result['machine'])
    print(f'{result["episodes"]} episodes, {result["steps"]} steps in {result["drill_s"]:.1f} s '
          f'with {result["workers"]} worker processes')
    print(f'{"condition":<20} {"steps":>6} {"full s":>7} {"world s":>8} {"full/world":>10}')
    for row in result['conditions']:
        print(f'{row["condition"]:<20} {row["steps"]:>6} {row["full_s"]:>7.2f} '
              f'{row["world_s"]:>8.2f} {row["ratio"]:>10.2f}')
    print(f'world step {result["world_step_us"]:.0f} us; filter + monitor '
          f'{result["filter_monitor_step_us"]:.0f} us per step '
          f'({100 * result["overhead_share"]:.0f} % of the world step)')


def main() -> None:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--ratio-episodes', type=int, default=10)
    parser.add_argument('--conditions', default=CONDITIONS)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == '__main__':
    main()
