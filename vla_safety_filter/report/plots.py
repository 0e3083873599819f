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
Report figures as PNG (matplotlib, Agg canvas): actions, monitor metrics, cost vs budget, levels.

Every figure uses the same x axis, seconds since the record's first message, with episode starts
(dotted) and safety stops (red) marked, so the four pictures line up.
"""
from __future__ import annotations

import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
import numpy as np

from .series import RecordSeries
from ..names import LEVEL_NAMES

TIME_LABEL = 'time since record start (s)'
REASON_COLOURS = {'position': 'tab:red', 'bounds': 'tab:red', 'velocity': 'tab:orange',
                  'acceleration': 'tab:olive', 'nonfinite': 'tab:purple', 'shape': 'tab:brown',
                  'stale': 'tab:pink', 'unknown_joint': 'tab:cyan'}
EXTRA_COLOURS = ('tab:green', 'tab:gray', 'gold', 'navy')
LEVEL_COLOURS = ('tab:green', 'gold', 'tab:red', 'tab:gray')
METRIC_PANELS = (('reversal_rate', 'reversal rate', 'share'), ('jerk_rms', 'jerk RMS', '1/s²'),
                 ('momentum_coherence', 'momentum coherence', 'cos'),
                 ('spectral_low_ratio', 'low-frequency power', 'share'), ('stall_s', 'stall', 's'),
                 ('p_value', 'conformal p-value', 'p'))
#: CUSUM panels: status key prefix (<prefix>_statistic, <prefix>_threshold) and label; the position
#: score's CUSUM and the step score's, which is the one motion faults move
CUSUM_PANELS = (('cusum', 'position CUSUM'), ('motion_cusum', 'motion CUSUM'))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def reason_colour(reason: str, seen: list) -> str:
    """Return fixed colours for the known reasons, the spare ones in order for any other."""
    if reason in REASON_COLOURS:
        return REASON_COLOURS[reason]
    extra = sorted(r for r in seen if r not in REASON_COLOURS)
    return EXTRA_COLOURS[extra.index(reason) % len(EXTRA_COLOURS)]


def _time_axis(ax, s: RecordSeries) -> None:
    """Draw the common x range plus episode starts and safety stops."""
    ax.set_xlim(0.0, max(s.duration_s, 1e-3))
    for t, _ in s.episodes:
        ax.axvline(t, color='0.4', ls=':', lw=1)
    for t in s.stops:
        ax.axvline(t, color='red', lw=1.5)
    ax.grid(alpha=0.3)


def _marker_handles(s: RecordSeries) -> list:
    handles = []
    if s.episodes:
        handles.append(Line2D([], [], color='0.4', ls=':', label='episode start'))
    if s.stops.size:
        handles.append(Line2D([], [], color='red', lw=1.5, label='safety stop'))
    return handles


def has_actions(s: RecordSeries) -> bool:
    a = s.actions
    return bool(a.names) and bool(a.raw_t.size or a.exec_t.size or a.state_t.size)


def plot_actions(s: RecordSeries, path: str) -> None:
    """Plot raw vs executed (vs measured) per joint; interventions and non-finite raw as marks."""
    a, ev = s.actions, s.interventions
    nrows = len(a.names) if len(a.names) <= 4 else math.ceil(len(a.names) / 2)
    ncols = math.ceil(len(a.names) / nrows)
    fig = _figure(7.0 * ncols if ncols > 1 else 9.0, 1.7 * nrows + 1.6)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    reasons = sorted(set(ev.reason))
    ev_reason, ev_joint = np.array(ev.reason, dtype=str), np.array(ev.joint, dtype=str)
    for j, name in enumerate(a.names):
        ax = axes[j % nrows, j // nrows]     # column-major: a bimanual arm gets one column per arm
        if a.state_t.size:
            ax.plot(a.state_t, a.state[:, j], color='0.7', lw=3)
        if a.raw_t.size:
            ax.plot(a.raw_t, a.raw[:, j], color='tab:blue', lw=1.6)
            bad = a.raw_t[~np.isfinite(a.raw[:, j])]
            if bad.size:   # an empty unclipped line would upset the constrained layout
                ax.plot(bad, np.ones(bad.size), 'x', color='magenta', ms=6, mew=1.5, clip_on=False,
                        transform=ax.get_xaxis_transform())   # marker row on the top edge
        if a.exec_t.size:
            ax.plot(a.exec_t, a.executed[:, j], color='black', lw=0.8, ls='--')
        for reason in reasons:
            hit = (ev_reason == reason) & ((ev_joint == '*') | (ev_joint == name))
            ax.plot(ev.t[hit], np.full(int(hit.sum()), 0.06), '|', ms=9, mew=1.5,
                    color=reason_colour(reason, reasons), transform=ax.get_xaxis_transform())
        ax.set_title(name, fontsize=9, loc='left')
        _time_axis(ax, s)
    for j in range(len(a.names), nrows * ncols):
        axes[j % nrows, j // nrows].set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel(TIME_LABEL)
    handles = [Line2D([], [], color=c, lw=w, ls=ls, label=label) for present, c, w, ls, label in (
        (a.state_t.size, '0.7', 3, '-', 'measured (/joint_states)'),
        (a.raw_t.size, 'tab:blue', 1.6, '-', 'raw policy action (/vla/raw_action)'),
        (a.exec_t.size, 'black', 0.8, '--', f'executed ({a.exec_source})')) if present]
    if a.raw_t.size and not np.isfinite(a.raw).all():
        handles.append(Line2D([], [], marker='x', ls='', color='magenta',
                              label='raw non-finite (gap)'))
    handles += [Line2D([], [], marker='|', ls='', ms=9, mew=1.5, color=reason_colour(r, reasons),
                       label=f'intervention: {r}') for r in reasons]
    fig.legend(handles=handles + _marker_handles(s), loc='outside lower center', ncols=2 + ncols,
               fontsize=8)
    shown = [label for size, label in ((a.raw_t.size, 'raw policy action'),
                                       (a.exec_t.size, 'executed command'),
                                       (a.state_t.size, 'measured position')) if size]
    fig.supylabel('joint position (robot units, e.g. rad)')
    fig.suptitle('Per joint: ' + ' vs '.join(shown))
    fig.savefig(path)


def has_monitor(s: RecordSeries) -> bool:
    m = s.monitor.metrics
    return any(k in m and np.isfinite(m[k]).any()
               for k in [p[0] for p in METRIC_PANELS] +
               [f'{key}_statistic' for key, _ in CUSUM_PANELS])


def _alarm_lines(ax, s: RecordSeries) -> None:
    for t in s.monitor.alarm_t:
        ax.axvline(t, color='crimson', alpha=0.6, lw=1)


def plot_monitor(s: RecordSeries, path: str) -> None:
    """One panel per monitor metric plus each CUSUM statistic vs threshold; alarm onsets marked."""
    m = s.monitor
    panels = [p for p in METRIC_PANELS if p[0] in m.metrics and np.isfinite(m.metrics[p[0]]).any()]
    cusums = [(key, label) for key, label in CUSUM_PANELS if f'{key}_statistic' in m.metrics]
    fig = _figure(11.0, 1.5 * (len(panels) + len(cusums)) + 1.6)
    axes = fig.subplots(len(panels) + len(cusums), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, title, unit) in zip(axes, panels):
        ax.plot(m.t, m.metrics[key], '.-', color='tab:blue', lw=1, ms=3)
        ax.set_ylabel(f'{title}\n({unit})', fontsize=8)
    for ax, (key, label) in zip(axes[len(panels):], cusums):
        ax.plot(m.t, m.metrics[f'{key}_statistic'], '.-', color='tab:blue', lw=1, ms=3)
        if f'{key}_threshold' in m.metrics:
            ax.plot(m.t, m.metrics[f'{key}_threshold'], '--', color='tab:red', lw=1.2)
        ax.set_ylabel(f'{label}\n(log-likelihood)', fontsize=8)
    for ax in axes:
        _time_axis(ax, s)
        _alarm_lines(ax, s)
    for t, n, kind in zip(m.alarm_t, m.alarm_n, m.alarm_kind):
        axes[0].annotate(kind if n == 1 else f'{kind} +{n - 1}', (t, 0.97), fontsize=7,
                         xycoords=axes[0].get_xaxis_transform(), color='crimson', rotation=90,
                         va='top', ha='right', bbox={'fc': 'white', 'ec': 'none', 'alpha': 0.8})
    axes[-1].set_xlabel(TIME_LABEL)
    handles = [Line2D([], [], color='tab:blue', marker='.', label='value per /diagnostics status'),
               Line2D([], [], color='tab:red', ls='--', label='CUSUM threshold'),
               Line2D([], [], color='crimson', alpha=0.6, label='new alarm(s) seen')]
    fig.legend(handles=handles + _marker_handles(s), loc='outside lower center', ncols=5,
               fontsize=8)
    fig.suptitle(f'Action monitor metrics per status ({int(m.alarm_n.sum())} alarm(s) reported, '
                 'newest kind labelled)')
    fig.savefig(path)


def has_cost(s: RecordSeries) -> bool:
    cost = s.monitor.metrics.get('episode_cost')
    return cost is not None and bool(np.isfinite(cost).any())


def plot_cost(s: RecordSeries, path: str) -> None:
    """Cumulative safety cost of the running episode against its budget."""
    m = s.monitor
    cost = m.metrics['episode_cost']
    fig = _figure(11.0, 3.6)
    ax = fig.subplots()
    ax.step(m.t, cost, where='post', color='tab:blue', lw=1.5, label='episode cost')
    ax.fill_between(m.t, cost, step='post', color='tab:blue', alpha=0.15)
    if 'cost_budget' in m.metrics:
        ax.step(m.t, m.metrics['cost_budget'], where='post', color='tab:red', ls='--',
                label='budget')
    _time_axis(ax, s)
    _alarm_lines(ax, s)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel('cumulative cost (cost units)')
    ax.legend(handles=ax.get_legend_handles_labels()[0] + _marker_handles(s) +
              [Line2D([], [], color='crimson', alpha=0.6, label='new alarm(s)')], fontsize=8,
              loc='upper left')
    ax.set_title(f'Safety cost of the current episode vs budget (max {np.nanmax(cost):.3g})')
    fig.savefig(path)


def has_levels(s: RecordSeries) -> bool:
    return bool(s.levels.names)


def plot_levels(s: RecordSeries, path: str) -> None:
    """One row per /diagnostics status: its level from each message until the next one."""
    lv = s.levels
    fig = _figure(11.0, 0.45 * len(lv.names) + 1.8)
    ax = fig.subplots()
    end = max(s.duration_s, 1e-3)
    for row, name in enumerate(lv.names):
        t = lv.t[name]
        spans = list(zip(t, np.diff(np.append(t, end))))
        colours = [LEVEL_COLOURS[min(max(int(v), 0), 3)] for v in lv.level[name]]
        ax.broken_barh(spans, (row - 0.35, 0.7), facecolors=colours)
    ax.set_yticks(range(len(lv.names)), lv.names, fontsize=8)
    ax.invert_yaxis()
    _time_axis(ax, s)
    ax.set_xlabel(TIME_LABEL)
    handles = [Patch(color=c, label=n) for c, n in zip(LEVEL_COLOURS, LEVEL_NAMES)]
    fig.legend(handles=handles + _marker_handles(s), loc='outside lower center', ncols=6,
               fontsize=8)
    fig.suptitle('Diagnostic levels over time (/diagnostics)')
    fig.savefig(path)


PLOTS = (
    ('actions.png', has_actions, plot_actions,
     'no /vla/raw_action, /vla/safe_action, controller command or /joint_states messages'),
    ('monitor.png', has_monitor, plot_monitor, 'no vla_safety/monitor metrics on /diagnostics'),
    ('cost.png', has_cost, plot_cost, 'no episode cost in vla_safety/monitor statuses'),
    ('levels.png', has_levels, plot_levels, 'no /diagnostics statuses'),
)


def render(s: RecordSeries, out_dir: str) -> dict:
    """Draw every plot whose data is present; return {file: None if drawn, else why skipped}."""
    result = {}
    for name, available, draw, why in PLOTS:
        if available(s):
            draw(s, os.path.join(out_dir, name))
            result[name] = None
        else:
            result[name] = why
    return result
