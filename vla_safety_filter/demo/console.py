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

"""The demo on the console: the live loop redrawing frames, then the closing summary."""
from __future__ import annotations

from rich.live import Live
from rich.table import Table

from .frame import render


def run_live(console, scenario, run):
    """Call run(on_frame) with a rich Live view redrawn on every frame; returns run's result."""
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        return run(lambda seen: live.update(render(seen, scenario)))


def print_summary(console, summary: dict) -> None:
    """Print the demo's verdict: activation, faults and responses, contract audit, cost, files."""
    execspec = summary['execspec']
    console.rule('summary')
    console.print(f'ExecSpec: {execspec["level"]}: {execspec["message"]}')
    if not summary['pipeline_activated']:
        if summary['certificate']:
            table = Table(title='drift certificate: expected |command error| over policy outputs '
                                'x ~ U[-1, 1] had it run (rad; grippers in their units)')
            for column in ('joint', 'drift', 'drift / half-range', 'scale s', 'shift t'):
                table.add_column(column, justify='left' if column == 'joint' else 'right')
            for row in summary['certificate']:
                table.add_row(row['joint'], f'{row["drift"]:.3f}', f'{row["relative_drift"]:.3f}',
                              f'{row["scale"]:.3f}', f'{row["shift"]:+.3f}')
            console.print(table)
        console.print(f'commands sent to the controller: {summary["commands_sent"]} '
                      '(the pipeline refused to activate, nothing moved)')
    else:
        table = Table(title='injected faults')
        for column in ('fault', 'at', 'steps', 'first intervention', 'interventions',
                       'first alarm', 'alarm'):
            table.add_column(column)
        for f in summary['faults']:
            table.add_row(f['fault'], f'{f["start_s"]:.2f} s', str(f['steps']),
                          _seconds(f['first_hold_s']), str(f['holds']),
                          _seconds(f['first_alarm_s']), f['alarm'] or '-')
        console.print(table)
        audit = summary['contract_audit']
        console.print(f'commands sent to the controller: {audit["commands"]}; outside the bounds: '
                      f'{audit["outside_bounds"]}; over the rate limit: '
                      f'{audit["over_rate_limit"]} '
                      f'(largest step {audit["max_step_ratio"]:.2f} x vmax*dt; fastest over '
                      f'elapsed time {audit.get("max_speed_ratio", 0.0):.2f} x vmax); '
                      f'non-finite: {audit["non_finite"]}')
        counts = sorted(summary['interventions_by_reason'].items())
        reasons = ', '.join(f'{k} {v}' for k, v in counts)
        console.print(f'interventions by reason: {reasons or "none"} '
                      f'({summary["interventions_outside_faults"]} outside the injected faults)')
        alarms = ', '.join(f'{a["kind"]}@{a["step"]}' for a in summary['alarms'])
        console.print(f'monitor alarms (kind@step): {alarms or "none"}')
        console.print(f'episode safety cost: max {summary["max_episode_cost"]:.3g} of budget '
                      f'{summary["cost_budget"]:.3g}')
    for name, path in summary['files'].items():
        console.print(f'{name}: {path}')
    console.print('[bold green]PASS[/]' if summary['ok'] else '[bold red]FAIL[/]')


def _seconds(value) -> str:
    return '-' if value is None else f'+{value:.2f} s'
