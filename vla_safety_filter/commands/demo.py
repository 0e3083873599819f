"""`vla-safety demo`: a real ALOHA episode through the whole ROS 2 pipeline, with a fault drill.

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
    p.add_argument('--wrong-metadata', action='store_true',
                   help="configure the bridge with the sibling key's unnormalizer (transfer cube "
                        'instead of insertion): the pipeline must refuse to activate')
    p.add_argument('--headless', action='store_true', help='no live view (CI, logs)')
    p.add_argument('--seed', type=int, default=0, help='seed of the injected faults')
    p.add_argument('--domain-id', type=int, default=77,
                   help='private ROS_DOMAIN_ID of the demo graph (localhost discovery only)')
    p.add_argument('--timeout', type=float, default=90.0, metavar='S',
                   help='give up after S seconds')
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from ..demo.runner import run_graph
    from ..demo.scenario import prepare
    from ..demo.summary import summarize
    from ..demo.view import print_summary, run_live

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
