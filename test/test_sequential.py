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

"""Conformal p-values and the Bernoulli CUSUM: hand cases, ARL design checked by simulation."""
import math

import numpy as np
import pytest

from vla_safety_filter.core import sequential
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.sequential import (BernoulliCusum, ConformalScorer, cusum_arl,
                                               design_cusum, MAX_CHAIN_STATES,
                                               simulate_run_lengths)


def calibration(scores, dim=2):
    return CalibrationData(tuple(f'j{i}' for i in range(dim)), np.zeros(dim), np.ones(dim),
                           np.sort(np.asarray(scores, dtype=float)), np.ones(dim), 2.0, 0.05, 0.02)


def test_p_value_by_hand():
    scorer = ConformalScorer(calibration([1.0, 2.0, 3.0, 4.0]))
    # s = 2.5: scores >= s are {3, 4} -> (1 + 2) / 5
    assert scorer.p_value(2.5) == pytest.approx(3 / 5)
    assert scorer.p_value(3.0) == pytest.approx(3 / 5)  # ties count as >=
    assert scorer.p_value(9.0) == pytest.approx(1 / 5)
    assert scorer.p_value(0.0) == pytest.approx(1.0)
    assert scorer.score(np.array([0.5, -3.0])) == pytest.approx(3.0)


def test_exceedance_threshold_matches_p_value_test():
    rng = np.random.default_rng(0)
    scorer = ConformalScorer(calibration(rng.gamma(2.0, size=999)))
    threshold = scorer.exceedance_threshold(0.05)
    s = np.concatenate([rng.gamma(2.0, size=5000), scorer.scores])
    np.testing.assert_array_equal(s > threshold, scorer.p_value(s) <= 0.05)


def test_exchangeable_p_values_are_valid():
    rng = np.random.default_rng(1)
    scorer = ConformalScorer(calibration(rng.normal(size=2000) ** 2))
    fresh = rng.normal(size=20000) ** 2
    rate = np.mean(scorer.p_value(fresh) <= 0.05)
    assert rate == pytest.approx(0.05, abs=0.006)


def test_cusum_increments_by_hand():
    design = design_cusum(0.05, 4.0, 500)
    cusum = BernoulliCusum(design)
    assert not cusum.update(True)
    assert cusum.statistic == pytest.approx(math.log(4.0))
    cusum.update(False)
    assert cusum.statistic == pytest.approx(math.log(4.0) + math.log(0.8 / 0.95))
    for _ in range(100):
        cusum.update(False)
    assert cusum.statistic == 0.0  # never below zero
    alarms = [cusum.update(True) for _ in range(20)]
    assert alarms.index(True) == math.ceil(design.h / math.log(4.0)) - 1
    assert cusum.statistic < design.h  # restarted after the alarm


@pytest.mark.parametrize('rho, target', [(4.0, 1000.0), (3.0, 2000.0)])
def test_arl0_matches_simulation_within_10_percent(rho, target):
    design = design_cusum(0.05, rho, target)
    assert design.arl0 >= target
    assert design.arl0 <= 1.05 * target  # ARL0(h) is a step function; fine for rho <= 4
    measured = simulate_run_lengths(design, 0.05, runs=3000, seed=7).mean()
    assert abs(measured - design.arl0) <= 0.10 * design.arl0
    assert abs(measured - target) <= 0.10 * target


def test_detection_delay_for_rate_shift():
    design = design_cusum(0.05, 4.0, 1000.0)
    delays = simulate_run_lengths(design, 0.05 * 4.0, runs=3000, seed=3)
    assert design.arl1 < design.arl0 / 20
    assert delays.mean() == pytest.approx(design.arl1, rel=0.10)
    assert cusum_arl(0.05, 4.0, design.h) == pytest.approx(design.arl0)
    assert cusum_arl(0.05, 4.0, design.h, rate=0.2, upper=False) == pytest.approx(design.arl1)


@pytest.mark.parametrize('alpha, rho, target', [(0.05, 3.0, 500.0), (0.01, 3.0, 2000.0),
                                                (0.002, 2.0, 3000.0)])
def test_designed_arls_bracket_the_simulated_run_lengths(alpha, rho, target):
    """The chain rounded up/down bounds the real CUSUM's ARL from below/above (3 SE of slack)."""
    design = design_cusum(alpha, rho, target)
    assert target <= design.arl0
    for rate, seed in ((alpha, 11), (rho * alpha, 12)):
        lengths = simulate_run_lengths(design, rate, runs=2000, seed=seed)
        slack = 3 * lengths.std() / np.sqrt(lengths.size)
        low, high = cusum_arl(alpha, rho, design.h, rate), cusum_arl(alpha, rho, design.h, rate,
                                                                     upper=False)
        assert low - slack <= lengths.mean() <= high + slack
        assert high <= 1.15 * low                  # the grid keeps the bounds tight


def test_design_work_does_not_grow_as_alpha_shrinks(monkeypatch):
    """
    Keep the design work bounded as alpha shrinks.

    Regression: the per-sample lattice needed ~1/alpha states (3 s at alpha = 0.001 inside the
    monitor's configure); the embedded chain solves O(log) systems of bounded size.
    """
    sizes = []
    solve = np.linalg.solve

    def counting_solve(a, b):
        sizes.append(a.shape[0])
        return solve(a, b)

    monkeypatch.setattr(sequential.np.linalg, 'solve', counting_solve)
    for alpha in (0.01, 0.001, 0.0001):
        design_cusum.cache_clear()
        design = design_cusum(alpha, 3.0, 36000.0)
        assert design.arl0 >= 36000.0 and design.arl1 < design.arl0
    assert 0 < len(sizes) <= 3 * 30 and max(sizes) <= MAX_CHAIN_STATES


def test_bad_cusum_settings():
    with pytest.raises(InputError, match='rho'):
        design_cusum(0.05, 1.0, 100)
    with pytest.raises(InputError, match='rho'):
        design_cusum(0.05, 25.0, 100)
    with pytest.raises(InputError, match='alpha'):
        design_cusum(0.0, 4.0, 100)
    with pytest.raises(InputError, match='ARL0'):
        design_cusum(0.05, 4.0, 0.5)
    with pytest.raises(InputError, match='ARL0'):
        design_cusum(0.05, 4.0, math.inf)
    with pytest.raises(InputError, match='out of reach'):
        design_cusum(0.05, 1.01, 1e12)
