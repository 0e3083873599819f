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

"""Speed of `vla-safety drill` on PushT: paired seeds x conditions, and the guard + monitor's
share of a world step.

Run by hand: `python bench/drill_bench.py [--episodes 100] [--json]`. Prints the wall time of the
whole drill (issue 11's target: 100 paired seeds x 10 conditions in <= 2 min on 2 cores) and the
per-step time of the world alone versus the filter (Executive) plus the action monitor on the same
steps (target: <= 10 % of the world's step).
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
from vla_safety_filter.core.drill.runner import DrillSettings, run_drill, safety_from_demos
from vla_safety_filter.core.drill.worlds import make_world
from vla_safety_filter.core.executive import Executive
from vla_safety_filter.core.monitors import ActionMonitor

DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'data')
DEMOS = os.path.join(DATA, 'pusht_cchi_v7_replay.npz')
CONDITIONS = ('none,filter,filter+stop,drift,drift+filter,drift+filter+stop,offset,'
              'offset+filter,nan,nan+filter')


def time_world(world, episodes) -> float:
    """Seconds per world step, replaying the executed commands of the given episodes."""
    steps, start = 0, time.perf_counter()
    for ep in episodes:
        world.reset(ep.seed)
        for command in ep.executed:
            world.step(command)
        steps += len(ep.executed)
    return (time.perf_counter() - start) / max(steps, 1)


def time_filter_and_monitor(safety, episodes, dt: float) -> float:
    """Seconds per step of Executive.tick (one chunk per 8 steps) plus ActionMonitor.update."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--conditions', default=CONDITIONS)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    world = make_world('pusht')
    safety = safety_from_demos(DEMOS, world)
    settings = DrillSettings(episodes=args.episodes, seed=0,
                             conditions=tuple(parse_conditions(args.conditions)))
    start = time.perf_counter()
    episodes = run_drill(world, make_policy(f'nn:{DEMOS}'), safety, settings)
    total = time.perf_counter() - start
    plain = [ep for ep in episodes if ep.condition == 'none'] or episodes
    world_step = time_world(world, plain)
    guard_step = time_filter_and_monitor(safety, plain, world.dt)
    result = {
        'machine': f'{platform.machine()} {os.cpu_count()} cpus, '
                   f'Python {platform.python_version()}',
        'episodes': len(episodes), 'steps': int(sum(ep.n_steps for ep in episodes)),
        'drill_s': total, 'world_step_us': 1e6 * world_step,
        'filter_monitor_step_us': 1e6 * guard_step, 'overhead_share': guard_step / world_step,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f'{result["machine"]}')
    print(f'{result["episodes"]} episodes, {result["steps"]} steps in {total:.1f} s')
    print(f'world step {result["world_step_us"]:.0f} us; filter + monitor '
          f'{result["filter_monitor_step_us"]:.0f} us per step '
          f'({100 * result["overhead_share"]:.0f} % of the world step)')


if __name__ == '__main__':
    main()
