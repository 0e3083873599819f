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

"""`vla-safety report`: plot a flight record (actions, interventions, monitor, cost, levels)."""
from __future__ import annotations

import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'report', help='plot a flight record into PNGs and one report.html',
        description='Read a flight record (rosbag2 MCAP directory or .mcap file) and draw raw vs '
                    'executed actions per joint with the filter interventions, the action monitor '
                    'metrics and CUSUM, the safety cost against its budget and the diagnostic '
                    'levels, on one time axis; write the PNGs and a self-contained report.html. '
                    'Plots whose topics are missing are skipped with a note.')
    p.add_argument('record', help='record directory (rosbag2, MCAP) or a single .mcap file')
    p.add_argument('--output', metavar='DIR', help='output directory (default RECORD_report)')
    p.add_argument('--joints', metavar='NAMES', help='comma-separated subset of joints to plot')
    p.set_defaults(func=run)


def default_output(record: str) -> str:
    """RECORD_report beside the record (a .mcap file loses its extension)."""
    base = os.path.normpath(record)
    return (base[:-len('.mcap')] if base.endswith('.mcap') else base) + '_report'


def run(args) -> int:
    from rich.console import Console

    from ..report.build import build_report

    joints = [j.strip() for j in args.joints.split(',') if j.strip()] if args.joints else None
    out_dir = args.output or default_output(args.record)
    page, plots, notes = build_report(args.record, out_dir, joints)
    console = Console()
    for name, why in plots.items():
        if why is None:
            console.print(f'wrote {os.path.join(out_dir, name)}')
        else:
            console.print(f'[yellow]skipped {name}[/]: {why}')
    for note in notes:
        console.print(f'[yellow]note[/]: {note}')
    console.print(f'[bold]report: {page}[/]')
    return 0
