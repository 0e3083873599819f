"""Safety cost budget after SafeVLA's constrained (CMDP) formulation.

Every filter intervention (per step and reason) and every monitor alarm carries a configurable cost;
an episode's cumulative cost is compared with a budget b and escalates OK -> WARN -> ERROR.
The summary over episodes is reported the SafeVLA way: mean cumulative cost, its distribution,
its maximum (the upper bound of unsafe behaviour) and the share of episodes over budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = ('OK', 'WARN', 'ERROR')

DEFAULT_COSTS = {
    # filter interventions, charged once per step in which the reason occurred
    'intervention.position': 0.05, 'intervention.velocity': 0.05,
    'intervention.acceleration': 0.02, 'intervention.nonfinite': 1.0, 'intervention.shape': 1.0,
    # monitor alarms, charged once per alarm onset
    'alarm.nonfinite': 2.0, 'alarm.shape': 2.0, 'alarm.cusum': 3.0, 'alarm.reversal': 2.0,
    'alarm.jerk': 2.0, 'alarm.coherence': 2.0, 'alarm.spectral': 2.0, 'alarm.stall': 2.0,
}


@dataclass(frozen=True)
class CostModel:
    """Cost per event kind, the episode budget b, and the share of b that raises WARN."""

    costs: dict = field(default_factory=lambda: dict(DEFAULT_COSTS))
    budget: float = 10.0
    warn_fraction: float = 0.5

    def __post_init__(self):
        if not self.budget > 0 or not 0 < self.warn_fraction <= 1:
            raise InputError(f'cost budget must be > 0 and warn_fraction in (0, 1], got '
                             f'{self.budget}, {self.warn_fraction}')
        for kind, cost in self.costs.items():
            if not (np.isfinite(cost) and cost >= 0):
                raise InputError(f'cost of {kind!r} must be a finite number >= 0, got {cost!r}')

    def cost_of(self, kind: str) -> float:
        return float(self.costs.get(kind, 0.0))

    def level(self, cumulative: float) -> int:
        """OK below warn_fraction * budget, WARN up to the budget, ERROR above it."""
        if cumulative > self.budget:
            return ERROR
        return WARN if cumulative >= self.warn_fraction * self.budget else OK


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
