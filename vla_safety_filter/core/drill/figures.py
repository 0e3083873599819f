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
A drill's figures (matplotlib Agg, PNG) and its one-page HTML summary.

success.png: success rate with Wilson 95 % intervals and mean cost per condition; costs.png: the
per-episode cost distribution per condition; roc.png: ROC for failure of each monitor score on
the first steps, one panel per condition.
"""
from __future__ import annotations

import html
import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

FIGURES = ('success.png', 'costs.png', 'roc.png')


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def plot_success(conditions: dict, path: str) -> None:
    """Success rate with its interval, and mean (bar) and max (dot) cost, per condition."""
    names = list(conditions)
    x = np.arange(len(names))
    fig = _figure(max(6.0, 0.8 * len(names)), 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    rate = np.array([conditions[n]['success_rate'] for n in names], dtype=float)
    ci = np.array([conditions[n]['ci95'] for n in names], dtype=float)
    top.errorbar(x, rate, yerr=[rate - ci[:, 0], ci[:, 1] - rate], fmt='o', capsize=4)
    top.set_ylabel('success rate (Wilson 95 %)')
    top.set_ylim(-0.02, 1.02)
    top.grid(alpha=0.3)
    bottom.bar(x, [conditions[n]['cost'].get('mean_cost', 0.0) for n in names],
               color='tab:orange', label='mean')
    bottom.plot(x, [conditions[n]['cost'].get('max_cost', 0.0) for n in names], 'k.',
                label='max')
    bottom.set_ylabel('cost per episode')
    bottom.set_yscale('symlog', linthresh=1.0)
    bottom.legend()
    bottom.set_xticks(x, names, rotation=30, ha='right')
    fig.savefig(path)


def plot_costs(costs: dict, budget: float, path: str) -> None:
    """Box plot of the per-episode costs of each condition, with the budget line."""
    names = list(costs)
    fig = _figure(max(6.0, 0.8 * len(names)), 4.0)
    ax = fig.subplots()
    ax.boxplot([costs[n] for n in names], showfliers=True)
    ax.axhline(budget, color='tab:red', linestyle='--', label=f'budget {budget:g}')
    ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=30, ha='right')
    ax.set_yscale('symlog', linthresh=1.0)
    ax.set_ylabel('cost per episode')
    ax.legend()
    fig.savefig(path)


def plot_roc(curves: dict, aurocs: dict, early_steps: int, path: str) -> None:
    """One panel per condition: ROC of each monitor score for failure on the first steps."""
    names = list(curves)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(4.0 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        ax.plot([0, 1], [0, 1], color='0.7', linestyle=':')
        ax.set_title(f'{name}: first {early_steps} steps', fontsize=9)
        ax.set_xlabel('false-positive rate')
        ax.set_ylabel('true-positive rate')
        scored = {k: v for k, v in aurocs[name].items() if v is not None}
        if not scored:
            ax.text(0.5, 0.5, 'one outcome only: no ROC', ha='center', va='center')
            continue
        for score, value in scored.items():
            fpr, tpr = curves[name][score]
            ax.plot(fpr, tpr, label=f'{score} ({value:.2f})')
        ax.legend(fontsize=6, loc='lower right')
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.savefig(path)


def _cell(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.3g}'
    return html.escape(str(value))


def write_html(report: dict, path: str) -> None:
    """index.html: settings, the per-condition table and the figures."""
    early = f'auroc_first_{report["early_steps"]}_steps'
    head = ('condition', 'success', 'rate', 'ci95', 'McNemar p vs none', 'mean cost',
            'max cost', 'over budget', 'policy faults', 'stops', f'best AUROC, first '
            f'{report["early_steps"]} steps')
    rows = []
    for name, c in report['conditions'].items():
        scored = {k: v for k, v in c[early].items() if v is not None}
        best = max(scored, key=scored.get) if scored else None
        cells = (name, f'{c["successes"]}/{c["n"]}', c['success_rate'],
                 f'[{c["ci95"][0]:.2f}, {c["ci95"][1]:.2f}]', c['mcnemar_p_vs_none'],
                 c['cost'].get('mean_cost'), c['cost'].get('max_cost'),
                 c['cost'].get('share_over_budget'), c['policy_faults'], c['stopped'],
                 f'{best} {scored[best]:.2f}' if best else None)
        rows.append('<tr>' + ''.join(f'<td>{_cell(v)}</td>' for v in cells) + '</tr>')
    settings = ', '.join(f'{k}: {html.escape(str(report[k]))}' for k in
                         ('world', 'policy', 'contract', 'episodes', 'seed', 'replan_every',
                          'fault_at_s', 'profile'))
    images = ''.join(f'<p><img src="{name}" alt="{name}"></p>' for name in FIGURES)
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>vla-safety drill</title>'
            f'<style>td,th{{padding:2px 8px;border-bottom:1px solid #ccc}}</style></head><body>'
            f'<h1>vla-safety drill</h1><p>{settings}</p><table><tr>'
            + ''.join(f'<th>{html.escape(h)}</th>' for h in head) + '</tr>' + ''.join(rows)
            + f'</table>{images}</body></html>')
    with open(path, 'w') as fh:
        fh.write(page)


def render(report: dict, costs: dict, curves: dict, directory: str) -> None:
    """All figures and index.html in `directory`."""
    plot_success(report['conditions'], os.path.join(directory, 'success.png'))
    plot_costs(costs, report['budget'], os.path.join(directory, 'costs.png'))
    early = f'auroc_first_{report["early_steps"]}_steps'
    plot_roc(curves, {n: c[early] for n, c in report['conditions'].items()},
             report['early_steps'], os.path.join(directory, 'roc.png'))
    write_html(report, os.path.join(directory, 'index.html'))
