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
Prints (1) the wall time and steps per second of the whole drill in worker processes (issue
11's target: 100 paired seeds x 10 conditions in <= 2 min on 2 cores); (2) per condition, on
`--ratio-episodes` seeds in this process, the condition's CPU time against the world alone
replaying the same commands, their ratio, and the same condition with the monitor stepped
beside the world (the drill before it scored episodes afterwards) as a baseline in the same run;
(3) each component's share of the drill's CPU time, each timed alone on the recorded episodes
(the fastest of `--repeat` runs: world, policy queries, filter, monitor; the rest is the
episode loop's bookkeeping), and the
filter plus monitor against the world's step (target: <= 10 %). The filter is replayed on the
episodes of the `+filter` conditions (the others run without it). The monitor is timed as the
drill runs it (`score_episodes` after the episodes with the charges the drill recorded; under
+stop with the twin condition in the drill the stop read from the twin's summary and each chunk
checked against the twin's actions, without a twin an `AlarmScan` of each chunk) and, as a
baseline in the same run, stepped through every episode (the drill before).
`--profile` adds a cProfile breakdown that separates gym-pusht's coverage from its physics.

`--baseline REV` checks REV out into a temporary `git worktree` and times, in child processes
alternating with this tree's (`--rounds` of each, the median kept), the world, the filter and
the monitor of each revision on the same recorded episodes, as each revision's drill runs them;
it prints the ratios baseline / new (> 1: faster now). A revision without twin stops scans
every +stop chunk, as its drill does.
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import pickle
import platform
import pstats
import subprocess
import tempfile
import time
from types import SimpleNamespace

import numpy as np
from source_trees import run_child
from vla_safety_filter.core.drill import runner as drill_runner
from vla_safety_filter.core.drill.conditions import parse_conditions
from vla_safety_filter.core.drill.policies import make_policy
from vla_safety_filter.core.drill.runner import (DrillSettings, DrillSetup, EpisodeRunner,
                                                 new_monitor, run_drill_parallel,
                                                 safety_from_demos)
from vla_safety_filter.core.drill.worlds import make_world
from vla_safety_filter.core.executive import Executive
from vla_safety_filter.core.monitors import AlarmScan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.join(ROOT, '..', 'shared', 'data')
DEMOS = os.path.join(DATA, 'pusht_cchi_v7_replay.npz')
CONDITIONS = ('none,filter,filter+stop,drift,drift+filter,drift+filter+stop,offset,'
              'offset+filter,nan,nan+filter')
#: cProfile groups: share name -> functions (file:function) whose cumulative times add up
#: without overlap (the world's step includes its coverage, the filter its guard: subtracted
#: below)
PROFILE_GROUPS = (
    ('coverage', ('worlds.py:_get_coverage',)),
    ('world physics', ('worlds.py:step',)),
    ('policy query', ('policies.py:act',)),
    ('filter (executive)', ('runner.py:_tick', 'executive.py:on_chunk')),
    ('guard (in the filter)', ('contract.py:step_request', 'contract.py:hold')),
    ('monitor', ('monitors.py:update', 'monitors.py:record_interventions',
                 'monitors.py:episode_summary', 'copy.py:deepcopy',
                 'monitors.py:score_episodes', 'monitors.py:scan', 'runner.py:twin_of',
                 'runner.py:covers')),
)


def timed(function, *args) -> float:
    """
    Return the CPU seconds of this process one call takes.

    CPU time, not wall time: other processes on a loaded machine take turns on the cores, which
    stretches wall time but not the work done here.
    """
    start = time.process_time()
    function(*args)
    return time.process_time() - start


def fastest(repeat: int, function, *args) -> float:
    """Return the least CPU time of `repeat` calls (the one other processes disturbed least)."""
    return min(timed(function, *args) for _ in range(repeat))


def replay_world(world, episodes) -> None:
    """Step the world through the episodes' executed commands."""
    for ep in episodes:
        world.reset(ep.seed)
        for command in ep.executed:
            world.step(command)


def replay_policy(policy, world, episodes, horizon: int = 8) -> None:
    """Ask the policy once per chunk, on the states the episodes passed through."""
    for ep in episodes:
        start = world.reset(ep.seed)
        states = np.vstack([start, ep.states])
        for k in range(0, ep.n_steps, horizon):
            policy.act({'observation.state': states[k].astype(np.float32), 'task': world.task})


def replay_filter(safety, episodes, dt: float, horizon: int = 8) -> None:
    """Run the filter on the raw chunks: a chunk every `horizon` steps, a tick per step."""
    for ep in episodes:
        raw = np.asarray(ep.raw)
        executive = Executive(safety.contract)
        executive.observe(raw[0], 0.0)
        executive.start(0.0)
        for k in range(len(raw)):
            if k % horizon == 0:
                chunk = raw[k:k + horizon]
                executive.on_chunk(chunk, dt * np.arange(1, len(chunk) + 1), k * dt)
            executive.observe(ep.executed[k], k * dt)
            executive.tick(k * dt)


def step_monitor(monitor, episodes, early_steps: int) -> None:
    """Step the monitor through the raw actions as the drill does under +stop (and did always)."""
    for ep in episodes:
        monitor.reset_episode()
        for k, (action, (reasons, kinds)) in enumerate(zip(ep.raw, ep.charges)):
            monitor.update(action)
            monitor.record_interventions(reasons)
            for kind in kinds:
                monitor.budget.charge(kind)
            if k + 1 == early_steps:
                copy.deepcopy(monitor).episode_summary()
        monitor.episode_summary()


def score_monitor(monitor, episodes, early_steps: int) -> None:
    """
    Score the recorded episodes with their charges, as the drill does without +stop.

    Together per condition, as the drill scores a block of seeds (here the same seeds).
    """
    if not hasattr(monitor, 'score_episodes'):     # a --baseline from before: one at a time
        for ep in episodes:
            monitor.score_episode(ep.raw, ep.charges, early_steps)
        return
    for block in by_condition(episodes):
        monitor.score_episodes([(ep.raw, ep.charges) for ep in block], early_steps)


def by_condition(episodes) -> list[list]:
    """Return the episodes grouped by condition, in their order."""
    groups: dict = {}
    for ep in episodes:
        groups.setdefault(ep.condition, []).append(ep)
    return list(groups.values())


def scan_monitor(monitor, episodes, early_steps: int, horizon: int = 8) -> None:
    """Scan each episode's chunks for the first alarm, then score it: +stop without a twin."""
    for ep in episodes:
        scan = AlarmScan(monitor)
        for k in range(0, ep.n_steps, horizon):
            scan.scan(ep.raw[k:k + horizon])
    score_monitor(monitor, episodes, early_steps)


def twin_monitor(monitor, episodes, records: dict, early_steps: int, horizon: int = 8) -> None:
    """
    Read each episode's stop from its twin's record, check its chunks against it, then score.

    As the drill runs +stop with the twin condition (`records`: (condition, seed) -> the
    twin's `twin_record`).
    """
    for ep in episodes:
        twin = drill_runner.twin_of(records[ep.condition, ep.seed], monitor.block)
        for k in range(0, ep.n_steps, horizon):
            twin.covers(ep.raw[k:k + horizon], k)
    score_monitor(monitor, episodes, early_steps)


def stop_parts(monitor, episodes, conditions, early_steps: int, repeat: int) -> dict:
    """
    Return the seconds of the monitor's stop under +stop as `monitor`'s revision runs them.

    'twinned': +stop episodes whose twin condition is in the drill (read from the twin's record
    where the revision can, else scanned); 'scanned': those without. Each with its scoring.
    """
    paired = {} if not hasattr(drill_runner, 'twins') else drill_runner.twins(conditions)
    twin = {conditions[i].name: conditions[j].name for i, j in paired.items()}
    records = {(ep.condition, ep.seed): ep.record for ep in episodes
               if ep.condition in twin.values()}
    stopped = [ep for ep in episodes if ep.condition in {c.name for c in conditions if c.stop}]
    twinned = [ep for ep in stopped if ep.condition in twin]
    scanned = [ep for ep in stopped if ep.condition not in twin]
    keyed = {(ep.condition, ep.seed): records[twin[ep.condition], ep.seed] for ep in twinned}
    return {'twinned': fastest(repeat, twin_monitor, monitor, twinned, keyed, early_steps),
            'scanned': fastest(repeat, scan_monitor, monitor, scanned, early_steps),
            'twinned_steps': sum(ep.n_steps for ep in twinned),
            'scanned_steps': sum(ep.n_steps for ep in scanned)}


class ChargeKeepingRunner(EpisodeRunner):
    """The drill's episode runner; each episode keeps the per-step charges its monitor scored."""

    def _play(self, condition, seed: int, live: bool, *twin) -> tuple:
        ep, charges = super()._play(condition, seed, live, *twin)
        ep.charges = charges
        return ep, charges


def monitor_parts(runner, episodes, repeat: int) -> dict:
    """
    Return the monitor's seconds as the drill runs it, and stepped on every episode (baseline).

    The drill scores every episode at once after it ended; under +stop it reads the stop from
    the twin's record and checks each chunk against the twin's actions, or without a twin
    scans each chunk for the first alarm. The baseline steps the monitor through every episode,
    as the drill did before.
    """
    conditions = runner.settings.conditions
    stop = {c.name: c.stop for c in conditions}
    early = runner.settings.early_steps
    passive = [ep for ep in episodes if not stop[ep.condition]]
    parts = {'scored': fastest(repeat, score_monitor, runner.monitor, passive, early),
             **stop_parts(runner.monitor, episodes, conditions, early, repeat),
             'baseline': timed(step_monitor, runner.monitor, episodes, early),
             'scored_steps': sum(ep.n_steps for ep in passive),
             'steps': sum(ep.n_steps for ep in episodes)}
    parts['drill'] = parts['scored'] + parts['twinned'] + parts['scanned']
    return parts


def time_conditions(runner, settings) -> tuple[list[dict], list]:
    """
    Return per condition the episode time, the world-only time, the live-monitor time.

    The drill and its live-monitor baseline run twice each, in the order A B B A, so that
    whatever drifts during the run (load, memory) weighs on both alike. As in the drill, a
    +stop condition with its twin runs after it and reads its stops from the twin's episodes;
    each episode keeps its `twin_record` (`record`).
    """
    rows, everything = {}, {}
    paired = drill_runner.twins(settings.conditions)
    seeds = [settings.seed + k for k in range(settings.episodes)]
    for i in sorted(range(len(settings.conditions)), key=lambda i: i in paired):
        condition, episodes = settings.conditions[i], []
        twins = {ep.seed: ep.record for ep in everything.get(paired.get(i), ())}

        def drill(live: bool) -> None:
            episodes[:] = runner.run_all(condition, seeds, live_monitor=live, twins=twins)
        full = timed(drill, False)
        live = timed(drill, True) + timed(drill, True)
        full = (full + timed(drill, False)) / 2
        live /= 2
        world = timed(replay_world, runner.world, episodes)
        rows[i] = {'condition': condition.name, 'steps': sum(ep.n_steps for ep in episodes),
                   'full_s': full, 'world_s': world, 'ratio': full / world,
                   'live_monitor_s': live}
        for ep in episodes:
            ep.record = drill_runner.twin_record(ep)
        everything[i] = episodes
    order = range(len(settings.conditions))
    return [rows[i] for i in order], [ep for i in order for ep in everything[i]]


def shares(runner, episodes, full_s: float, monitor: dict, repeat: int) -> dict:
    """
    Return each component's seconds timed alone on the episodes, and the rest of full_s.

    The filter is replayed on the episodes of the conditions that run it (`+filter`); the
    others execute the raw actions and the drill builds no executive for them.
    """
    filtered = {c.name for c in runner.settings.conditions if c.filtered}
    parts = {
        'world': fastest(repeat, replay_world, runner.world, episodes),
        'policy query': fastest(repeat, replay_policy, runner.policy, runner.world, episodes),
        'filter (executive)': fastest(repeat, replay_filter, runner.safety,
                                      [ep for ep in episodes if ep.condition in filtered],
                                      runner.dt),
        'monitor': monitor['drill'],
    }
    parts['bookkeeping (rest)'] = max(full_s - sum(parts.values()), 0.0)
    return parts


def profile_shares(runner, settings) -> dict:
    """Return cProfile's cumulative seconds per PROFILE_GROUPS group and the total."""
    profile = cProfile.Profile()
    profile.enable()
    for condition in settings.conditions:
        for k in range(settings.episodes):
            runner.run(condition, settings.seed + k)
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(own for (_, _, own, _, _) in stats.values())   # each function's own time
    outermost: dict[str, float] = {}   # a name can match nested functions (two `step`s)
    for (path, _, function), (_, _, _, cumulative, _) in stats.items():
        key = f'{os.path.basename(path)}:{function}'
        outermost[key] = max(outermost.get(key, 0.0), cumulative)
    groups = {name: sum(outermost.get(key, 0.0) for key in keys)
              for name, keys in PROFILE_GROUPS}
    groups['world physics'] -= groups['coverage']
    groups['filter (executive)'] -= groups['guard (in the filter)']
    groups['rest'] = total - sum(groups.values())
    return {'total_s': total, **groups}


def measure(args) -> dict:
    """Run the timings and return them as one dict."""
    world = make_world('pusht')
    safety = safety_from_demos(DEMOS, world)
    conditions = tuple(parse_conditions(args.conditions))
    settings = DrillSettings(episodes=args.episodes, seed=0, conditions=conditions)
    start = time.perf_counter()
    episodes = run_drill_parallel(DrillSetup('pusht', f'nn:{DEMOS}'), safety, settings,
                                  args.workers)
    total = time.perf_counter() - start
    small = DrillSettings(episodes=args.ratio_episodes, seed=0, conditions=conditions)
    runner = ChargeKeepingRunner(world, make_policy(f'nn:{DEMOS}'), safety, small,
                                 new_monitor(safety, small, world.dt))
    rows, recorded = time_conditions(runner, small)
    full = sum(row['full_s'] for row in rows)
    monitor = monitor_parts(runner, recorded, args.repeat)
    parts = shares(runner, recorded, full, monitor, args.repeat)
    steps = int(sum(ep.n_steps for ep in episodes))
    filtered = {c.name for c in conditions if c.filtered}
    result = {
        'machine': f'{platform.machine()} {os.cpu_count()} cpus, '
                   f'Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}',
        'workers': args.workers, 'episodes': len(episodes), 'steps': steps, 'drill_s': total,
        'steps_per_s': steps / total, 'conditions': rows, 'in_process_s': full,
        'shares_s': parts,
        'filtered_steps': sum(ep.n_steps for ep in recorded if ep.condition in filtered),
        'monitor_s': monitor,
        'filter_monitor_share_of_world': (parts['filter (executive)'] + parts['monitor'])
        / parts['world'],
        'filter_monitor_stepped_share_of_world':
            (parts['filter (executive)'] + monitor['baseline']) / parts['world'],
    }
    if args.profile:
        result['profile_s'] = profile_shares(runner, DrillSettings(
            episodes=args.profile, seed=0, conditions=conditions))
    if args.baseline:
        result['revisions'] = compare_revisions(args, recorded, small)
    return result


# ---- --baseline: the same recorded episodes timed with another revision's code --------------
def compare_revisions(args, episodes, settings) -> dict:
    """Alternate child runs of this tree and REV on the episodes; medians and ratios."""
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, 'episodes.pkl'), 'wb') as fh:
            pickle.dump({'conditions': [c.name for c in settings.conditions],
                         'early_steps': settings.early_steps,
                         'episodes': [{'condition': ep.condition, 'seed': ep.seed,
                                       'raw': ep.raw, 'executed': ep.executed,
                                       'charges': ep.charges, 'n_steps': ep.n_steps,
                                       'record': ep.record}
                                      for ep in episodes]}, fh)
        baseline = os.path.join(folder, 'baseline')
        subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '--quiet', baseline,
                        args.baseline], check=True)
        runs: dict = {'new': [], 'baseline': []}
        try:
            for _ in range(args.rounds):
                for name, root in (('new', ROOT), ('baseline', baseline)):
                    runs[name].append(run_child(__file__, root,
                                                [folder, '--repeat', str(args.repeat)]))
        finally:
            subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', baseline],
                           check=False)
    out = {name: {key: float(np.median([r[key] for r in rs])) for key in rs[0]}
           for name, rs in runs.items()}
    for tree in out.values():
        tree['share'] = (tree['filter'] + tree['monitor']) / tree['world']
    out['ratio_baseline_over_new'] = {key: out['baseline'][key] / out['new'][key]
                                      for key in out['new']}
    out['rev'], out['rounds'] = args.baseline, args.rounds
    return out


def child(folder: str, repeat: int) -> None:
    """Print one JSON object: the recorded episodes' world, filter and monitor seconds here."""
    import vla_safety_filter
    with open(os.path.join(folder, 'episodes.pkl'), 'rb') as fh:
        saved = pickle.load(fh)
    episodes = [SimpleNamespace(**ep) for ep in saved['episodes']]
    conditions = tuple(parse_conditions(','.join(saved['conditions'])))
    world = make_world('pusht')
    safety = safety_from_demos(DEMOS, world)
    monitor = new_monitor(safety, DrillSettings(episodes=1, seed=0, conditions=conditions),
                          world.dt)
    kind = {c.name: c for c in conditions}
    early = saved['early_steps']
    print(json.dumps({
        'world': fastest(repeat, replay_world, world, episodes),
        'filter': fastest(repeat, replay_filter, safety,
                          [ep for ep in episodes if kind[ep.condition].filtered], world.dt),
        'monitor': fastest(repeat, score_monitor, monitor,
                           [ep for ep in episodes if not kind[ep.condition].stop], early)
        + sum(stop_parts(monitor, episodes, conditions, early, repeat)[part]
              for part in ('twinned', 'scanned')),
        'package': os.path.dirname(vla_safety_filter.__file__)}))


def report(result: dict) -> None:
    """Print the measurements as a few readable lines and tables."""
    print(result['machine'])
    print(f'{result["episodes"]} episodes, {result["steps"]} steps in {result["drill_s"]:.1f} s '
          f'with {result["workers"]} worker processes: {result["steps_per_s"]:.0f} steps/s')
    print(f'{"condition":<20} {"steps":>6} {"full s":>7} {"world s":>8} {"full/world":>10} '
          f'{"live monitor s":>14} {"live/full":>9}')
    for row in result['conditions']:
        print(f'{row["condition"]:<20} {row["steps"]:>6} {row["full_s"]:>7.2f} '
              f'{row["world_s"]:>8.2f} {row["ratio"]:>10.2f} {row["live_monitor_s"]:>14.2f} '
              f'{row["live_monitor_s"] / row["full_s"]:>9.2f}')
    full = result['in_process_s']
    print(f'shares of the drill in one process ({full:.1f} s), each part timed alone:')
    for name, seconds in result['shares_s'].items():
        print(f'  {name:<20} {seconds:>7.2f} s {100 * seconds / full:>5.1f} %')
    m = result['monitor_s']
    scored, twinned, scanned = (per_step(m[part], m[f'{part}_steps'])
                                for part in ('scored', 'twinned', 'scanned'))
    print(f'monitor as the drill runs it {m["drill"]:.2f} s: score_episodes on the episodes '
          f'without +stop {m["scored"]:.2f} s ({scored}); under +stop, stop from the twin + '
          f'score_episodes {m["twinned"]:.2f} s ({twinned}), without a twin AlarmScan + '
          f'score_episodes {m["scanned"]:.2f} s ({scanned})')
    print(f'monitor stepped on every episode (baseline, the drill before) {m["baseline"]:.2f} s '
          f'({per_step(m["baseline"], m["steps"])}); world '
          f'{per_step(result["shares_s"]["world"], m["steps"])}')
    shares = result['shares_s']
    print(f'filter {per_step(shares["filter (executive)"], result["filtered_steps"])} on the '
          f'+filter conditions\' {result["filtered_steps"]} steps')
    print(f'filter + monitor = {100 * result["filter_monitor_share_of_world"]:.1f} % of the '
          f'world step (target <= 10 %; filter '
          f'{100 * shares["filter (executive)"] / shares["world"]:.1f} %, monitor '
          f'{100 * shares["monitor"] / shares["world"]:.1f} %); with the monitor stepped '
          f'{100 * result["filter_monitor_stepped_share_of_world"]:.0f} %')
    if 'revisions' in result:
        rev = result['revisions']
        new, old, ratio = rev['new'], rev['baseline'], rev['ratio_baseline_over_new']
        print(f'against {rev["rev"]} (child processes, median of {rev["rounds"]} rounds each):')
        for key in ('world', 'filter', 'monitor'):
            print(f'  {key:<8} {1e3 * old[key]:7.1f} ms -> {1e3 * new[key]:7.1f} ms  '
                  f'x{ratio[key]:.2f}')
        print(f'  filter + monitor share of the world step {100 * old["share"]:.1f} % -> '
              f'{100 * new["share"]:.1f} %')
    if 'profile_s' in result:
        total = result['profile_s']['total_s']
        print(f'cProfile ({total:.1f} s, profiler overhead included):')
        for name, seconds in result['profile_s'].items():
            if name != 'total_s':
                print(f'  {name:<20} {seconds:>7.2f} s {100 * seconds / total:>5.1f} %')


def per_step(seconds: float, steps: int) -> str:
    """Return seconds per step in microseconds, as text ('-' without steps)."""
    return f'{1e6 * seconds / steps:.1f} us/step' if steps else '-'


def main() -> None:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--ratio-episodes', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=5,
                        help='time each part alone this many times, keep the fastest')
    parser.add_argument('--profile', type=int, default=0, metavar='EPISODES',
                        help='also profile EPISODES seeds of every condition (cProfile)')
    parser.add_argument('--conditions', default=CONDITIONS)
    parser.add_argument('--baseline', metavar='REV', help='git revision to compare with')
    parser.add_argument('--rounds', type=int, default=3,
                        help='child runs per revision with --baseline (median kept)')
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--child', metavar='DIR', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == '__main__':
    main()
