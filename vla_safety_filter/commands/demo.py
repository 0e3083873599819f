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
`vla-safety demo`: a real ALOHA episode through the whole ROS 2 pipeline, with a fault drill.

Sim arm, policy_bridge, safety_filter, action_monitor, execspec_check and the flight recorder run
in this process on a private ROS domain; mid-episode the bridge injects a burst of outputs that
skipped unnormalization, an oscillation and a NaN burst. A live view shows what happens; the
summary says what was caught, how fast, and that no command left the contract.
"""
from __future__ import annotations

import json
import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'demo', help='run a real ALOHA episode with injected faults through the ROS 2 pipeline',
        description='Starts the sim arm and the pipeline (policy_bridge, safety_filter, '
                    'action_monitor, execspec_check) with the flight recorder, replays a real '
                    'ALOHA episode as normalized policy outputs, injects faults mid-episode, and '
                    'prints what the filter and the monitor did. Writes the parameters, the '
                    'record (MCAP) and its report under --output.')
    p.add_argument('--output', default='out/demo', metavar='DIR', help='where files are written')
    p.add_argument('--world', choices=('aloha', 'pusht'), default='aloha',
                   help='aloha (default): replay a real ALOHA episode with injected faults; '
                        'pusht: close the loop, policy server -> pipeline -> PushT world')
    p.add_argument('--policy', metavar='ws://HOST:PORT',
                   help='pusht: the openpi server to use (default: serve the built-in nn policy '
                        'on 127.0.0.1)')
    p.add_argument('--no-faults', action='store_true',
                   help='pusht: do not stop the built-in policy server mid-episode')
    p.add_argument('--episodes', type=int, default=2, metavar='N', help='pusht: episodes to run')
    p.add_argument('--max-steps', type=int, default=150, metavar='K',
                   help='pusht: steps per episode (10 Hz) before it counts as failed')
    p.add_argument('--demos', metavar='DEMOS.npz',
                   help='pusht: demonstrations of the nn policy and the calibration '
                        '(default: the PushT demos in the shared data)')
    p.add_argument('--wrong-metadata', action='store_true',
                   help="configure the bridge with the sibling key's unnormalizer (transfer cube "
                        'instead of insertion): the pipeline must refuse to activate')
    p.add_argument('--headless', action='store_true', help='no live view (CI, logs)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the injected faults (aloha) or of the first world (pusht)')
    p.add_argument('--domain-id', type=int, default=77,
                   help='private ROS_DOMAIN_ID of the demo graph (localhost discovery only)')
    p.add_argument('--timeout', type=float, default=90.0, metavar='S',
                   help='give up after S seconds')
    p.set_defaults(func=run)


def run(args) -> int:
    if args.world == 'pusht':
        return run_pusht(args)
    from rich.console import Console

    from ..demo.runner import run_graph
    from ..demo.scenario import prepare
    from ..demo.summary import summarize
    from ..demo.console import print_summary, run_live

    console = Console()
    scenario = prepare(args.output, args.wrong_metadata, seed=args.seed)
    console.print(f'[bold]vla-safety demo[/]: ALOHA insertion episode {scenario.episode}, '
                  f'{scenario.n_steps} actions at {1 / scenario.dt:g} Hz, bridge unnormalizer key '
                  f'{scenario.key!r}, ROS domain {args.domain_id}')
    if args.headless:
        seen = run_graph(scenario, args.domain_id, args.timeout)
    else:
        seen = run_live(console, scenario, lambda on_frame: run_graph(
            scenario, args.domain_id, args.timeout, on_frame))
    summary = summarize(seen, scenario)
    summary['files'] = _outputs(args.output, scenario)
    with open(summary['files']['summary'], 'w') as fh:
        json.dump(summary, fh, indent=2)
    print_summary(console, summary)
    return 0 if summary['ok'] else 1


def _outputs(output: str, scenario) -> dict:
    """Where everything went; the report is rendered from the record when it exists."""
    files = {'parameters': scenario.params_file, 'record': scenario.record_dir,
             'summary': os.path.join(output, 'demo_summary.json')}
    if os.path.isdir(scenario.record_dir):
        from ..report.build import build_report
        files['report'] = build_report(scenario.record_dir, os.path.join(output, 'report'))[0]
    return files


def run_pusht(args) -> int:
    """
    Run the closed loop.

    Policy server, bridge, manager, filter, monitor, PushT world, recorder.
    """
    from rich.console import Console

    from ..demo import pusht
    from ..demo.pusht_summary import print_summary, summarize

    console = Console()
    demos = args.demos or pusht.default_demos()
    server = None if args.policy else pusht.LocalServer(demos)
    try:
        uri = args.policy or server.uri
        scenario = pusht.prepare(args.output, demos, uri, args.episodes, args.max_steps,
                                 fault=not args.no_faults and server is not None, seed=args.seed)
        console.print(f'[bold]vla-safety demo --world pusht[/]: {args.episodes} episode(s) of '
                      f'{args.max_steps} steps, policy at {uri}, ROS domain {args.domain_id}')
        seen, episodes = pusht.run_graph(scenario, args.domain_id, args.timeout, server)
    finally:
        if server is not None:
            server.close()
    summary = summarize(seen, episodes, scenario)
    summary['files'] = _outputs(args.output, scenario)
    with open(summary['files']['summary'], 'w') as fh:
        json.dump(summary, fh, indent=2)
    print_summary(console, summary)
    return 0 if summary['ok'] else 1
