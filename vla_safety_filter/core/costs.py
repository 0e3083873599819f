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
Safety cost budget after SafeVLA's constrained (CMDP) formulation.

Every filter intervention (per step and reason) and every monitor alarm carries a configurable
cost; an episode's cumulative cost is compared with a budget b and escalates OK -> WARN -> ERROR.
A kind missing from the table (e.g. a refusal reason a newer filter emits) is never free: it costs
as much as the dearest priced kind of its family (`intervention.` / `alarm.`), at least
UNKNOWN_KIND_COST.
The summary over episodes is reported the SafeVLA way: mean cumulative cost, its distribution,
its maximum (the upper bound of unsafe behaviour) and the share of episodes over budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from ..names import ERROR, OK, WARN

UNKNOWN_KIND_COST = 1.0

DEFAULT_COSTS = {
    # filter interventions, charged once per /vla/filter_events message in which the reason occurs
    'intervention.position': 0.05, 'intervention.velocity': 0.05,
    'intervention.acceleration': 0.02, 'intervention.hold': 0.5,
    'intervention.soft_limit': 0.02, 'intervention.jerk': 0.02,
    'intervention.workspace': 0.05,
    # refusals of a whole input (the filter holds instead): the dearest interventions
    'intervention.nonfinite': 1.0, 'intervention.shape': 1.0, 'intervention.unknown_joint': 1.0,
    'intervention.bad_timing': 1.0, 'intervention.stale': 1.0,
    # chunk pre-check reports (the guard still limits every step) and a latched following error
    'intervention.chunk_jump': 0.05, 'intervention.chunk_speed': 0.05,
    'intervention.following_error': 2.0,
    # monitor alarms, charged once per alarm onset
    'alarm.nonfinite': 2.0, 'alarm.shape': 2.0, 'alarm.cusum': 3.0, 'alarm.reversal': 2.0,
    'alarm.jerk': 2.0, 'alarm.coherence': 2.0, 'alarm.spectral': 2.0, 'alarm.stall': 2.0,
    'alarm.freeze': 2.0,
}


@dataclass(frozen=True)
class CostModel:
    """Cost per event kind, the episode budget b, and the share of b that raises WARN."""

    costs: dict = field(default_factory=lambda: dict(DEFAULT_COSTS))
    budget: float = 10.0
    warn_fraction: float = 0.5
    # family ('intervention.') -> the price of its unpriced kinds, set once by __post_init__
    _unpriced: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (np.isfinite(self.budget) and self.budget > 0) or not 0 < self.warn_fraction <= 1:
            raise InputError(f'cost budget must be finite and > 0 and warn_fraction in (0, 1], '
                             f'got {self.budget}, {self.warn_fraction}')
        for kind, cost in self.costs.items():
            if not (np.isfinite(cost) and cost >= 0):
                raise InputError(f'cost of {kind!r} must be a finite number >= 0, got {cost!r}')
        object.__setattr__(self, '_unpriced', _family_prices(self.costs))

    def cost_of(self, kind: str) -> float:
        """Return the priced cost of `kind` (unpriced: its family's dearest, never 0)."""
        cost = self.costs.get(kind)
        if cost is not None:
            return float(cost)
        return self._unpriced.get(kind.partition('.')[0] + '.', UNKNOWN_KIND_COST)

    def level(self, cumulative: float) -> int:
        """OK below warn_fraction * budget, WARN up to the budget, ERROR above it."""
        if cumulative > self.budget:
            return ERROR
        return WARN if cumulative >= self.warn_fraction * self.budget else OK


def _family_prices(costs: dict) -> dict:
    """Return per family ('alarm.') the dearest of its priced kinds and UNKNOWN_KIND_COST."""
    prices: dict = {}
    for kind, cost in costs.items():
        family, dot, _ = kind.partition('.')
        if dot:
            prices[family + dot] = max(prices.get(family + dot, UNKNOWN_KIND_COST), float(cost))
    return prices


class CostBudget:
    """Cumulative cost of the current episode, per kind, with its escalation level."""

    def __init__(self, model: CostModel):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.by_kind: dict[str, float] = {}

    def charge(self, kind: str, count: int = 1) -> float:
        """Add `count` occurrences of `kind`; returns the new cumulative cost."""
        cost = self.model.cost_of(kind) * count
        if cost:
            self.total += cost
            self.by_kind[kind] = self.by_kind.get(kind, 0.0) + cost
        return self.total

    @property
    def level(self) -> int:
        return self.model.level(self.total)

    @property
    def over_budget(self) -> bool:
        return self.total > self.model.budget


def budget_summary(episode_costs, budget: float) -> dict:
    """SafeVLA-style report of per-episode cumulative costs (JSON-serializable)."""
    costs = np.asarray(list(episode_costs), dtype=np.float64)
    if costs.size == 0:
        return {'n_episodes': 0, 'budget': float(budget)}
    quantiles = np.quantile(costs, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {
        'n_episodes': int(costs.size),
        'budget': float(budget),
        'mean_cost': float(costs.mean()),
        'std_cost': float(costs.std()),
        'max_cost': float(costs.max()),
        'quantiles': dict(zip(('min', 'p25', 'median', 'p75', 'p90', 'max'),
                              (float(q) for q in quantiles))),
        'share_over_budget': float(np.mean(costs > budget)),
    }
