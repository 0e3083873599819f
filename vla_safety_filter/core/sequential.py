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

"""Conformal p-values of actions and the Bernoulli CUSUM that turns them into an alarm (DESIGN §5).

Each action gets the split-conformal p-value of its position score against the calibration scores;
the CUSUM watches the exceedance indicator x_t = 1[p_t <= alpha] for a rate shift alpha -> rho*alpha.
Its threshold h comes from a target in-control average run length (ARL0), computed on the chain
embedded at exceedances: between two exceedances the statistic only falls, by `down` per sample,
for a Geometric(rate) number of samples, so the run length is E[exceedances to alarm] / rate
(Wald's identity) and the chain needs a grid fine against the up-step only. Its size, and the
design time, do not grow as alpha shrinks (the per-sample lattice it replaces grew as 1/alpha:
3 s at alpha = 0.001). Rounding the statistic up on the grid gives a lower bound on the ARL (the
designed ARL0 is at least the target for the real CUSUM); rounding down gives an upper bound,
used for the reported detection delay ARL1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError
from .params import CalibrationData

CHAIN_RESOLUTION = 64   # grid points per up-step of the embedded chain (cost independent of alpha)
MAX_CHAIN_STATES = 4096  # a threshold needing more grid points is refused as out of reach


class ConformalScorer:
    """Position score s = max_j |a_j - mu_j| / sigma_j and its conformal p-value."""

    def __init__(self, calibration: CalibrationData):
        self.mu = np.asarray(calibration.mu, dtype=np.float64)
        self.inv_sigma = 1.0 / np.asarray(calibration.sigma, dtype=np.float64)
        self.scores = np.sort(np.asarray(calibration.scores, dtype=np.float64))
        self.n = int(self.scores.size)

    def score(self, action: np.ndarray) -> float:
        """Nonconformity score of one action (NaN or inf when the action is not finite)."""
        return float(np.max(np.abs(action - self.mu) * self.inv_sigma))

    def scores_of(self, actions: np.ndarray) -> np.ndarray:
        """Scores of a [T, D] block of actions."""
        return np.max(np.abs(actions - self.mu) * self.inv_sigma, axis=1)

    def p_value(self, score):
        """(1 + #{calibration scores >= s}) / (n + 1); works on scalars and arrays."""
        count_ge = self.n - np.searchsorted(self.scores, score, side='left')
        return (1.0 + count_ge) / (self.n + 1.0)

    def exceedance_threshold(self, alpha: float) -> float:
        """The score above which p <= alpha, so the per-step test is one float comparison."""
        k = math.floor(alpha * (self.n + 1) + 1e-9) - 1  # largest allowed count of scores >= s
        if k < 0:
            return math.inf  # too few calibration scores: p can never reach alpha
        if k >= self.n:
            return -math.inf
        return float(self.scores[self.n - k - 1])


@dataclass(frozen=True)
class CusumDesign:
    """CUSUM parameters and its run lengths in CUSUM samples (bounds from the embedded chain)."""

    alpha: float
    rho: float
    h: float
    arl0: float        # expected samples to a false alarm at rate alpha: a lower bound
    arl1: float        # expected samples to detection at rate rho*alpha from S = 0: an upper bound

    @property
    def up(self) -> float:
        return math.log(self.rho)

    @property
    def down(self) -> float:
        return math.log((1.0 - self.rho * self.alpha) / (1.0 - self.alpha))


def _check_rates(alpha: float, rho: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InputError(f'CUSUM alpha must be in (0, 1), got {alpha}')
    if not (rho > 1.0 and rho * alpha < 1.0):
        raise InputError(f'CUSUM rho must satisfy 1 < rho < 1/alpha = {1 / alpha:.3g}, got {rho}')


def _steps(alpha: float, rho: float) -> tuple[float, float]:
    """Up- and down-step sizes (both > 0) of the log-likelihood-ratio statistic."""
    return math.log(rho), -math.log((1.0 - rho * alpha) / (1.0 - alpha))


def _fall_masses(rate: float, down: float, delta: float, n: int, upper: bool) -> np.ndarray:
    """P(the fall between exceedances lands in grid cell d), d = 0..n-1, plus the tail P(>= n).

    The fall is down * G, G ~ Geometric(rate) on {0, 1, ...}. `upper`: the statistic is rounded
    up (fall rounded down: cell d = [d, d+1) delta); else rounded down (cell d = (d-1, d] delta).
    """
    log_keep = math.log1p(-rate) if rate < 1.0 else -math.inf
    edges = np.arange(n + 1) * delta
    if upper:   # P(down * G >= x) = (1 - rate)^ceil(x / down)
        counts = np.ceil(edges / down - 1e-12)
    else:       # P(down * G > x - delta), edges shifted by one cell
        counts = np.where(edges > 0, np.floor((edges - delta) / down + 1e-12) + 1, 0.0)
    with np.errstate(invalid='ignore'):
        survival = np.where(counts > 0, np.exp(counts * log_keep), 1.0)
    return np.append(survival[:-1] - survival[1:], survival[-1])


def _chain_arl(rate: float, up: float, down: float, size: int, upper: bool = True) -> float:
    """ARL (samples, from S = 0) of the CUSUM with threshold h = size * up / CHAIN_RESOLUTION.

    State k: the statistic k grid cells high just before a fall; the fall takes it to k' <= k
    (0 at the floor), the exceedance then adds CHAIN_RESOLUTION cells; alarm at >= size.
    `upper`: statistic rounded up (a lower bound on the ARL), else down (an upper bound).
    """
    if rate <= 0.0:
        return math.inf
    res = CHAIN_RESOLUTION
    if size <= res:
        return 1.0 / rate                              # the first exceedance alarms
    masses = _fall_masses(rate, down, up / res, size, upper)
    k = np.arange(size)
    lag = k[:, None] - k[None, :]                      # fall in cells from state k to k'
    fall = np.where(lag >= 0, masses[np.clip(lag, 0, size)], 0.0)
    fall[:, 0] = np.cumsum(masses[::-1])[::-1][k]      # every fall of k cells or more ends at 0
    moves = np.zeros((size, size))
    moves[:, res:] = fall[:, :size - res]
    return float(np.linalg.solve(np.eye(size) - moves, np.ones(size))[0] / rate)


def cusum_arl(alpha: float, rho: float, h: float, rate: float | None = None,
              upper: bool = True) -> float:
    """Average run length (samples) of the CUSUM with threshold h when x_t ~ Bernoulli(rate).

    A bound, tight to the grid: a lower bound by default, an upper bound with upper=False.
    """
    _check_rates(alpha, rho)
    up, down = _steps(alpha, rho)
    size = max(1, math.ceil(h / (up / CHAIN_RESOLUTION) - 1e-9))
    if size > MAX_CHAIN_STATES:
        raise InputError(f'CUSUM threshold {h} is too high for the ARL computation')
    return _chain_arl(alpha if rate is None else rate, up, down, size, upper)


@lru_cache(maxsize=64)
def design_cusum(alpha: float, rho: float, target_arl0: float) -> CusumDesign:
    """Smallest grid threshold h whose in-control ARL lower bound is >= target_arl0 (cached).

    Exponential then binary search over the grid: O(log) solves of at most MAX_CHAIN_STATES.
    """
    _check_rates(alpha, rho)
    if not (math.isfinite(target_arl0) and target_arl0 > 1):
        raise InputError(f'target ARL0 must be a finite number > 1 sample, got {target_arl0}')
    up, down = _steps(alpha, rho)

    def arl0(size: int) -> float:
        return _chain_arl(alpha, up, down, size)

    lo, hi = 0, CHAIN_RESOLUTION
    while arl0(hi) < target_arl0:
        lo, hi = hi, 2 * hi
        if hi > MAX_CHAIN_STATES:
            raise InputError(f'target ARL0 {target_arl0} is out of reach for alpha={alpha}, '
                             f'rho={rho}')
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if arl0(mid) >= target_arl0 else (mid, hi)
    return CusumDesign(alpha, rho, hi * up / CHAIN_RESOLUTION, arl0(hi),
                       _chain_arl(rho * alpha, up, down, hi, upper=False))


class BernoulliCusum:
    """Log-likelihood-ratio CUSUM on exceedance indicators; restarts from 0 after each alarm."""

    def __init__(self, design: CusumDesign):
        self.design = design
        self._up, self._down, self._h = design.up, design.down, design.h
        self.statistic = 0.0

    def reset(self) -> None:
        self.statistic = 0.0

    def update(self, exceeded: bool) -> bool:
        """Add one indicator; True when the statistic crosses h (then it restarts)."""
        s = self.statistic + (self._up if exceeded else self._down)
        if s >= self._h:
            self.statistic = 0.0
            return True
        self.statistic = s if s > 0.0 else 0.0
        return False


def simulate_run_lengths(design: CusumDesign, rate: float, runs: int, seed: int = 0,
                         max_steps: int = 10_000_000) -> np.ndarray:
    """Monte-Carlo run lengths of the CUSUM on i.i.d. Bernoulli(rate) input (vectorized over runs)."""
    rng = np.random.default_rng(seed)
    stat = np.zeros(runs)
    lengths = np.zeros(runs, dtype=np.int64)
    alive = np.arange(runs)
    t = 0
    while alive.size and t < max_steps:
        t += 1
        x = rng.random(alive.size) < rate
        s = np.maximum(stat[alive] + np.where(x, design.up, design.down), 0.0)
        hit = s >= design.h
        lengths[alive[hit]] = t
        stat[alive] = s
        alive = alive[~hit]
    lengths[alive] = max_steps
    return lengths


def step_differences(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increments a_t - a_{t-1} and second differences of rows [T, D], for t = 2..T-1."""
    d = np.diff(rows, axis=0)
    return d[1:], d[1:] - d[:-1]


@dataclass(frozen=True)
class MotionCalibration:
    """Step scores from demonstrations: per-joint scales of the increment and second difference.

    Score of step t: s_t = max_j max(|a_t - a_{t-1}|_j / step_scale_j, |second diff|_j /
    accel_scale_j), NaN when a_{t-2..t} is not finite. `scores` are the sorted calibration scores,
    each episode scored on its own (no jump across episode seams).
    """

    step_scale: np.ndarray
    accel_scale: np.ndarray
    scores: np.ndarray

    ARRAY_KEYS = ('motion_step_scale', 'motion_accel_scale', 'motion_scores')

    @classmethod
    def from_episodes(cls, episodes, sigma, floor: float = 1e-3) -> 'MotionCalibration':
        """Scales = per-joint RMS over the calibration episodes (floored at floor * sigma_j)."""
        pieces = [step_differences(np.asarray(e, dtype=np.float64)) for e in episodes
                  if len(e) >= 3]
        if not pieces:
            raise InputError('motion calibration needs an episode of at least 3 steps')
        d = np.concatenate([p[0] for p in pieces])
        dd = np.concatenate([p[1] for p in pieces])
        low = floor * np.asarray(sigma, dtype=np.float64)
        ok = np.isfinite(d).all(axis=1) & np.isfinite(dd).all(axis=1)
        step_scale = np.maximum(np.sqrt((d[ok] ** 2).mean(axis=0)), low)
        accel_scale = np.maximum(np.sqrt((dd[ok] ** 2).mean(axis=0)), low)
        scores = np.concatenate([_step_scores(*p, 1.0 / step_scale, 1.0 / accel_scale)
                                 for p in pieces])
        return cls(step_scale, accel_scale, np.sort(scores[np.isfinite(scores)]))

    def to_arrays(self) -> dict:
        """Extra arrays for a calibration .npz (keys ARRAY_KEYS; older files simply lack them)."""
        return dict(zip(self.ARRAY_KEYS, (self.step_scale, self.accel_scale, self.scores)))

    @classmethod
    def from_arrays(cls, arrays) -> 'MotionCalibration | None':
        """The motion calibration stored by `to_arrays`, or None when a file predates it."""
        if not all(key in arrays for key in cls.ARRAY_KEYS):
            return None
        step, accel, scores = (np.asarray(arrays[k], dtype=np.float64) for k in cls.ARRAY_KEYS)
        if (step.shape != accel.shape or step.ndim != 1 or scores.ndim != 1 or not scores.size
                or not (np.all(step > 0) and np.all(accel > 0) and np.isfinite(scores).all())):
            raise InputError('motion calibration arrays are malformed')
        return cls(step, accel, np.sort(scores))


def _step_scores(d: np.ndarray, dd: np.ndarray, inv_step: np.ndarray,
                 inv_accel: np.ndarray) -> np.ndarray:
    """Per-row step score from increments and second differences (NaN rows stay NaN)."""
    return np.maximum(np.abs(d) * inv_step, np.abs(dd) * inv_accel).max(axis=1)


class StepScorer(ConformalScorer):
    """Conformal p-values of step scores; a spike is a score past margin * the largest one."""

    def __init__(self, motion: MotionCalibration, spike_margin: float):
        self.inv_step = 1.0 / motion.step_scale
        self.inv_accel = 1.0 / motion.accel_scale
        self.scores = motion.scores
        self.n = int(self.scores.size)
        self.spike_score = float(spike_margin * self.scores[-1])

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """Step scores of rows[2:] given rows [T, D] (the first two rows are context)."""
        return _step_scores(*step_differences(rows), self.inv_step, self.inv_accel)
