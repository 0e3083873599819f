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

"""One frame of the demo's live view (rich): raw vs executed per joint, interventions, monitor."""
from __future__ import annotations

from collections import Counter

import numpy as np
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .observer import Observed
from .. import names

LEVEL_STYLE = {names.OK: 'green', names.WARN: 'yellow', names.ERROR: 'bold red',
               names.STALE: 'dim'}
METRICS = (('reversal_rate', 'reversal rate'), ('jerk_rms', 'jerk RMS'),
           ('momentum_coherence', 'momentum coherence'),
           ('spectral_low_ratio', 'spectral low ratio'),
           ('stall_s', 'stall (s)'), ('p_value', 'conformal p-value'))


def render(seen: Observed, scenario) -> Group:
    """One frame of the live view."""
    return Group(_header(seen, scenario), _joints(seen, scenario), _status(seen))


def _header(seen: Observed, scenario) -> Text:
    step = len(seen.raw)
    active = [f.family for f in scenario.drill if f.start <= step - 1 < f.stop]
    text = Text(f'ALOHA episode {scenario.episode}: action {step}/{scenario.n_steps} '
                f'({step * scenario.dt:.1f} s), commands sent {len(seen.commands)}  ')
    if active:
        text.append(f'INJECTING {", ".join(active)}', style='bold magenta')
    elif seen.episode_done is not None:
        text.append('episode finished', style='bold')
    return text


def _joints(seen: Observed, scenario) -> Table:
    contract = scenario.contract
    table = Table(title='raw policy action vs executed command', expand=False)
    for column in ('joint', 'raw', 'executed', 'lower', 'upper', 'interventions'):
        table.add_column(column, justify='left' if column == 'joint' else 'right')
    raw = seen.raw[-1] if seen.raw else np.full(contract.dim, np.nan)
    executed = seen.commands[-1] if seen.commands else np.full(contract.dim, np.nan)
    per_joint = Counter(joint for _, _, joint in seen.events)
    for j, name in enumerate(contract.joint_names):
        outside = np.isfinite(raw[j]) and not contract.lower[j] <= raw[j] <= contract.upper[j]
        alarming = outside or not np.isfinite(raw[j])
        raw_text = Text(f'{raw[j]:+.3f}', style='bold red' if alarming else '')
        table.add_row(name, raw_text, f'{executed[j]:+.3f}', f'{contract.lower[j]:+.3f}',
                      f'{contract.upper[j]:+.3f}', str(per_joint.get(name, 0) or ''))
    return table


def _status(seen: Observed) -> Panel:
    lines = Text()
    for name in sorted(seen.statuses):
        level, message, _ = seen.statuses[name]
        label, style = names.level_name(level), LEVEL_STYLE.get(level, '')
        lines.append(f'{name:<24}', style='bold')
        lines.append(f'{label:<6}', style=style)
        lines.append(f' {message[:90]}\n')
    reasons = Counter(reason for _, reason, _ in seen.events)
    counted = ', '.join(f'{r} {n}' for r, n in reasons.most_common())
    lines.append(f'interventions: {counted or "none"}\n')
    monitor = seen.statuses.get(names.MONITOR_STATUS, (names.STALE, '', {}))[2]
    if monitor:
        metrics = '  '.join(f'{label} {monitor.get(key, "-")}' for key, label in METRICS)
        lines.append(metrics + '\n')
        lines.append(f'CUSUM position {monitor.get("cusum_statistic", "-")} / '
                     f'{monitor.get("cusum_threshold", "-")}, motion '
                     f'{monitor.get("motion_cusum_statistic", "-")} / '
                     f'{monitor.get("motion_cusum_threshold", "-")}   episode cost '
                     f'{monitor.get("episode_cost", "-")} / budget '
                     f'{monitor.get("cost_budget", "-")}\n')
    alarms = ', '.join(f'{kind}@{step}' for _, kind, step in seen.alarms[-6:])
    lines.append(f'monitor alarms: {alarms or "none"}')
    return Panel(lines, title=f'diagnostics ({names.DIAGNOSTICS}, {names.FILTER_EVENTS})')
