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

"""One self-contained report.html: summary table, messages per topic, notes, PNGs (base64)."""
from __future__ import annotations

import base64
from collections import Counter
import datetime
from html import escape
import os

import numpy as np

from .series import RecordSeries
from ..names import FILTER_EVENTS, FILTER_STATUS, level_name

STYLE = ('body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;'
         'margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}'
         'th{background:#eee}img{max-width:100%;border:1px solid #ddd}.note{color:#a40}')


def _counts(counter: dict) -> str:
    return ', '.join(f'{k} {v}' for k, v in sorted(counter.items())) or 'none'


def interventions_by_reason(s: RecordSeries) -> tuple[dict | None, str]:
    """Return per-reason counts from the filter events, else the last filter status, else None."""
    if FILTER_EVENTS in s.topics:
        return s.interventions.by_reason(), FILTER_EVENTS
    if FILTER_STATUS not in s.levels.last_values:
        return None, 'not recorded'
    values = s.levels.last_values[FILTER_STATUS]
    return ({k.split('.', 1)[1]: int(float(v)) for k, v in values.items()
             if k.startswith('interventions.') and float(v) > 0}, f'last {FILTER_STATUS} status')


def summary_rows(s: RecordSeries) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table."""
    m = s.monitor
    start = datetime.datetime.fromtimestamp(s.start_ns / 1e9, datetime.timezone.utc)
    by_reason, source = interventions_by_reason(s)
    started = start.isoformat(timespec='seconds') if s.start_ns else 'no messages read'
    rows = [('start (UTC)', started),
            ('duration', f'{s.duration_s:.2f} s'),
            ('episodes started', str(len(s.episodes))),
            ('joints', ', '.join(s.actions.names) or 'none'),
            (f'interventions ({source})',
             '-' if by_reason is None else f'{sum(by_reason.values())}: {_counts(by_reason)}')]
    if m.alarm_t.size:
        kinds = Counter(m.alarm_kind)
        rows.append(('monitor alarms', f'{int(m.alarm_n.sum())}, first seen at '
                                       f'{m.alarm_t[0]:.2f} s (newest kind per report: '
                                       f'{_counts(kinds)})'))
    else:
        rows.append(('monitor alarms', '0' if m.t.size else 'no monitor statuses'))
    cost = m.metrics.get('episode_cost')
    if cost is not None and np.isfinite(cost).any():
        budget = m.metrics.get('cost_budget', np.array([np.nan]))
        rows.append(('max episode cost',
                     f'{np.nanmax(cost):.3g} (budget {np.nanmax(budget):.3g})'))
    rows.append(('safety stops', str(s.stops.size)))
    for name in s.levels.names:
        level = int(s.levels.level[name][-1])
        rows.append((f'final level {name}', f'{level_name(level)}: '
                                            f'{s.levels.last_message[name]}'))
    return rows


def _table(header: tuple | None, rows: list) -> str:
    head = '<tr>' + ''.join(f'<th>{escape(h)}</th>' for h in header) + '</tr>' if header else ''
    body = ''.join('<tr>' + ''.join(f'<td>{escape(str(c))}</td>' for c in row) + '</tr>'
                   for row in rows)
    return f'<table>{head}{body}</table>'


def _image(path: str) -> str:
    with open(path, 'rb') as fh:
        data = base64.b64encode(fh.read()).decode('ascii')
    return f'<img alt="{escape(os.path.basename(path))}" src="data:image/png;base64,{data}">'


def write_report(s: RecordSeries, record: str, out_dir: str, plots: dict) -> str:
    """Write out_dir/report.html; plots is render()'s {file: None | reason skipped}."""
    topics = [(t, s.topics[t], s.counts.get(t, '?')) for t in sorted(s.topics)]
    notes = list(s.notes) + [f'{name} skipped: {why}' for name, why in plots.items() if why]
    parts = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>vla-safety report: '
             f'{escape(record)}</title><style>{STYLE}</style></head><body>',
             '<h1>VLA safety report</h1>'
             f'<p>record <code>{escape(os.path.abspath(record))}</code></p>',
             '<h2>Summary</h2>', _table(None, summary_rows(s)),
             '<h2>Messages per topic</h2>', _table(('topic', 'type', 'messages'), topics)]
    if notes:
        parts.append('<h2>Notes</h2><ul>' + ''.join(f'<li class="note">{escape(n)}</li>'
                                                    for n in notes) + '</ul>')
    for name, why in plots.items():
        if why is None:
            parts += [f'<h2>{escape(name)}</h2>', _image(os.path.join(out_dir, name))]
    parts.append('</body></html>')
    path = os.path.join(out_dir, 'report.html')
    with open(path, 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(parts))
    return path
