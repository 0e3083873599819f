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

"""What the PushT demo shows: task success, the outage answered, the contract kept, the cost."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .command_audit import audit_observed, merge_audits
from .observer import Observed


def summarize(seen: Observed, run, scenario) -> dict:
    """
    Return the PushT demo's verdict as a JSON-able dict.

    (`ok`: activated, contract kept, recovered).
    """
    check = audit_episodes(seen, run, scenario.contract)
    monitor = seen.statuses.get('vla_safety/monitor', (3, '', {}))[2]
    costs = [cost for _, _, _, cost in seen.monitor_history]
    episodes = [o or {'success': False, 'steps': None, 'seed': None, 'coverage': None}
                for o in run.outcomes]
    summary = {
        'world': 'pusht', 'server_uri': scenario.server_uri,
        'pipeline_activated': bool(seen.raw),
        'episodes': episodes,
        'successes': sum(e['success'] for e in episodes),
        'raw_actions': len(seen.raw), 'commands_sent': check['commands'],
        'contract_audit': check,
        'interventions_by_reason': dict(Counter(reason for _, reason, _ in seen.events)),
        'alarms': [{'kind': kind, 'step': step} for _, kind, step in seen.alarms],
        'max_episode_cost': max(costs) if costs else 0.0,
        'cost_budget': float(monitor.get('cost_budget', 'nan')),
        'fault': _outage(seen, run),
    }
    kept = all(check.get(k, 0) == 0
               for k in ('outside_bounds', 'over_rate_limit', 'non_finite', 'over_speed'))
    recovered = summary['fault'] is None or summary['fault']['commands_after_restart'] > 0
    summary['ok'] = bool(summary['pipeline_activated'] and kept and recovered
                         and len(episodes) == len(run.resets) > 0)
    return summary


def audit_episodes(seen: Observed, run, contract) -> dict:
    """
    Audit the commands one episode at a time (see `command_audit`), up to its `done`.

    Each episode's stream starts at its first command: between episodes the world is reset and
    the filter re-seeded from the measured pusher, so the step across a reset is no command
    step. It ends at sim_world's `done`: the world then holds, the filter idles, and a chunk
    still in flight resumes it from the measured pusher (a re-seed, like every resume), which
    is no command step either. Counts are summed and ratios maximised over the episodes.
    """
    windows = [(-np.inf, run.resets[0] if run.resets else np.inf)]
    for k, start in enumerate(run.resets):
        end = run.ends[k] if k < len(run.ends) else None
        later = run.resets[k + 1] if k + 1 < len(run.resets) else np.inf
        windows.append((start, later if end is None else min(end, later)))
    parts = [audit_observed(contract, None, seen, since, until) for since, until in windows]
    return merge_audits(p for p in parts if p['commands'] or p['guard_commands']) \
        or audit_observed(contract, None, seen)


def _outage(seen: Observed, run) -> dict | None:
    """
    Return the server outage.

    Policy chunks and interventions while down, commands after restart.
    """
    if run.outage is None:
        return None
    stopped, restarted = run.outage
    chunks_down = sum(stopped < t < restarted for t in seen.raw_times)
    holds = [(t, reason) for t, reason, _ in seen.events if t >= stopped]
    return {'kind': 'policy server stopped', 'stopped_s': round(stopped, 3),
            'down_s': round(restarted - stopped, 3), 'chunks_while_down': chunks_down,
            'first_intervention_s': round(holds[0][0] - stopped, 3) if holds else None,
            'first_intervention': holds[0][1] if holds else None,
            'commands_after_restart': sum(t > restarted for t in seen.command_times),
            'chunks_after_restart': sum(t > restarted for t in seen.raw_times)}


def print_summary(console, summary: dict) -> None:
    """
    Print the closing lines.

    Episodes, the outage, the audit, interventions, alarms, cost, files.
    """
    from rich.table import Table

    console.rule('summary')
    table = Table(title='PushT episodes')
    for column in ('seed', 'success', 'steps', 'coverage'):
        table.add_column(column, justify='right')
    for e in summary['episodes']:
        table.add_row(str(e['seed']), str(e['success']), str(e['steps']), str(e['coverage']))
    console.print(table)
    fault = summary['fault']
    if fault:
        console.print(f'fault: {fault["kind"]} at {fault["stopped_s"]:.2f} s for '
                      f'{fault["down_s"]:.2f} s; first intervention '
                      f'{fault["first_intervention"] or "-"} after '
                      f'{fault["first_intervention_s"]} s; chunks while down '
                      f'{fault["chunks_while_down"]}; commands after restart '
                      f'{fault["commands_after_restart"]}')
    audit_ = summary['contract_audit']
    console.print(f'commands sent to sim_world: {audit_["commands"]}; outside the bounds: '
                  f'{audit_["outside_bounds"]}; over the rate limit: {audit_["over_rate_limit"]}; '
                  f'fastest over elapsed time {audit_.get("max_speed_ratio", 0.0):.2f} x vmax; '
                  f'non-finite: {audit_["non_finite"]}')
    reasons = ', '.join(f'{k} {v}' for k, v in sorted(summary['interventions_by_reason'].items()))
    console.print(f'interventions by reason: {reasons or "none"}')
    alarms = ', '.join(f'{a["kind"]}@{a["step"]}' for a in summary['alarms'])
    console.print(f'monitor alarms (kind@step): {alarms or "none"}')
    console.print(f'episode safety cost: max {summary["max_episode_cost"]:.3g} of budget '
                  f'{summary["cost_budget"]:.3g}')
    for name, path in summary.get('files', {}).items():
        console.print(f'{name}: {path}')
    console.print('[bold green]PASS[/]' if summary['ok'] else '[bold red]FAIL[/]')
