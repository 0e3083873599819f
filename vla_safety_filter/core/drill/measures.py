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
Measures of a drill: success with Wilson intervals, paired exact McNemar, AUROC, cost summary.

Conditions share seeds, so each episode of a condition is paired with the episode of `none` on the
same seed; the exact McNemar test uses only the discordant pairs, which is the right test for
paired outcomes (Fisher's test treats the two samples as independent).
"""
from __future__ import annotations

from fractions import Fraction
import math

import numpy as np

from ..costs import budget_summary
from ..evaluation import auroc

#: the normal distribution's 0.975 quantile (scipy.stats.norm.ppf(0.975)); a constant, so that
#: importing the drill (in every worker process) does not load scipy.stats
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """
    Return the Wilson score interval of a binomial proportion (0, 1 when n is 0).

    The bound at 0 (or 1) is exact for 0 (or n) successes; round-off would otherwise leave it
    a hair away and the interval would not contain the observed rate.
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mcnemar_exact(baseline, treated) -> dict:
    """
    Run the two-sided exact McNemar test of paired booleans.

    b: only the baseline succeeds, c: only the treated succeeds;
    p = min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2); 1 with no discordant pair.
    """
    baseline, treated = np.asarray(baseline, dtype=bool), np.asarray(treated, dtype=bool)
    if baseline.shape != treated.shape:
        raise ValueError('McNemar needs paired outcomes of the same length')
    b = int(np.sum(baseline & ~treated))
    c = int(np.sum(~baseline & treated))
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * _binomial_half_cdf(min(b, c), b + c))
    return {'only_baseline': b, 'only_treated': c, 'p': p}


def _binomial_half_cdf(k: int, n: int) -> float:
    """Return P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer counts) then rounded once."""
    return float(Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n))


def roc_curve(scores, positive) -> tuple[list[float], list[float]]:
    """Return false- and true-positive rates over every threshold (ROC plot), from (0, 0)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return [0.0, 1.0], [0.0, 1.0]
    thresholds = np.unique(scores)[::-1]
    fpr = [0.0] + [float((scores[~positive] >= t).sum() / n_neg) for t in thresholds]
    tpr = [0.0] + [float((scores[positive] >= t).sum() / n_pos) for t in thresholds]
    return fpr, tpr


def score_aurocs(scores: dict, failed) -> dict:
    """AUROC for failure of each named per-episode score (None when only one class occurs)."""
    return {name: auroc(values, failed) for name, values in scores.items()}


def cost_summary(costs, budget: float) -> dict:
    """SafeVLA-style cost report (core.costs.budget_summary) with a histogram of the costs."""
    costs = np.asarray(costs, dtype=np.float64)
    summary = budget_summary(costs, budget)
    if costs.size:
        counts, edges = np.histogram(costs, bins=min(10, max(1, costs.size)))
        summary['histogram'] = {'counts': counts.tolist(), 'edges': edges.tolist()}
    return summary
