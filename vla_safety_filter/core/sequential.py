"""Conformal p-values of actions and the Bernoulli CUSUM that turns them into an alarm (DESIGN §5).

Each action gets the split-conformal p-value of its position score against the calibration scores;
the CUSUM watches the exceedance indicator x_t = 1[p_t <= alpha] for a rate shift alpha -> rho*alpha.
Its threshold h comes from a target in-control average run length (ARL0) computed numerically with
a Markov-chain (Brook-Evans) discretization of the CUSUM statistic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError
from .params import CalibrationData

ARL_RESOLUTION = 100  # lattice steps per down-step in the Markov-chain ARL approximation


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
    """CUSUM parameters and its numerically computed run lengths (in CUSUM samples)."""

    alpha: float
    rho: float
    h: float
    arl0: float        # expected samples to a false alarm at rate alpha (Markov-chain value)
    arl1: float        # expected samples to detection at rate rho*alpha, starting from S = 0

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


def _lattice(alpha: float, rho: float) -> tuple[float, int, int]:
    """Lattice step and the up/down moves in lattice units."""
    down = -math.log((1.0 - rho * alpha) / (1.0 - alpha))
    step = down / ARL_RESOLUTION
    return step, max(1, round(math.log(rho) / step)), ARL_RESOLUTION


def _arl_on_lattice(n_states: int, p_up: float, up: int, down: int) -> float:
    """Expected run length from S = 0 of the lattice CUSUM with alarm at state >= n_states."""
    from scipy.sparse import csc_matrix, identity
    from scipy.sparse.linalg import spsolve

    states = np.arange(n_states)
    rows, cols, vals = [], [], []
    stay = states + up < n_states
    rows.append(states[stay]); cols.append(states[stay] + up); vals.append(np.full(stay.sum(), p_up))
    rows.append(states); cols.append(np.maximum(states - down, 0)); vals.append(np.full(n_states, 1 - p_up))
    transition = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n_states, n_states))
    run_lengths = spsolve((identity(n_states, format='csc') - transition).tocsc(), np.ones(n_states))
    return float(run_lengths[0])


def cusum_arl(alpha: float, rho: float, h: float, rate: float | None = None) -> float:
    """Average run length (samples) of the CUSUM with threshold h when x_t ~ Bernoulli(rate)."""
    _check_rates(alpha, rho)
    step, up, down = _lattice(alpha, rho)
    return _arl_on_lattice(max(1, math.ceil(h / step - 1e-9)), alpha if rate is None else rate,
                           up, down)


@lru_cache(maxsize=64)
def design_cusum(alpha: float, rho: float, target_arl0: float) -> CusumDesign:
    """Smallest threshold h whose in-control ARL is at least target_arl0 samples (cached: pure)."""
    _check_rates(alpha, rho)
    if not target_arl0 > 1:
        raise InputError(f'target ARL0 must be > 1 sample, got {target_arl0}')
    step, up, down = _lattice(alpha, rho)
    lo, hi = 1, up
    while _arl_on_lattice(hi, alpha, up, down) < target_arl0:
        lo, hi = hi, hi * 2
        if hi > 10_000_000:
            raise InputError(f'target ARL0 {target_arl0} is out of reach for alpha={alpha}, rho={rho}')
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _arl_on_lattice(mid, alpha, up, down) >= target_arl0:
            hi = mid
        else:
            lo = mid
    return CusumDesign(alpha, rho, hi * step, _arl_on_lattice(hi, alpha, up, down),
                       _arl_on_lattice(hi, rho * alpha, up, down))


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
