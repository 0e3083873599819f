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
Conformal p-values of actions and the Bernoulli CUSUM that turns them into an alarm.

Each action gets the split-conformal p-value of its position score against the calibration scores;
the CUSUM watches the exceedance indicator x_t = 1[p_t <= alpha] for a rate shift
alpha -> rho*alpha.
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

from dataclasses import dataclass, replace
from functools import lru_cache
import math

import numpy as np

from .errors import InputError
from .holds import HoldCalibration
from .params import CalibrationData
from .profiles import DEFAULT_PROFILE, PROFILES

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
        return np.maximum.reduce(np.abs(actions - self.mu) * self.inv_sigma, axis=1)

    def p_value(self, score):
        """(1 + #{calibration scores >= s}) / (n + 1); works on scalars and arrays."""
        count_ge = self.n - np.searchsorted(self.scores, score, side='left')
        return (1.0 + count_ge) / (self.n + 1.0)

    def exceedance_threshold(self, alpha: float) -> float:
        """Return the score above which p <= alpha (the per-step test is one float comparison)."""
        return exceedance_limit(self.scores, alpha)


def exceedance_limit(sorted_scores: np.ndarray, alpha: float) -> float:
    """Return the score above which the conformal p-value against sorted_scores is <= alpha."""
    n = int(sorted_scores.size)
    k = math.floor(alpha * (n + 1) + 1e-9) - 1  # largest allowed count of scores >= s
    if k < 0:
        return math.inf  # too few calibration scores: p can never reach alpha
    if k >= n:
        return -math.inf
    return float(sorted_scores[n - k - 1])


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
    """
    P(the fall between exceedances lands in grid cell d), d = 0..n-1, plus the tail P(>= n).

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
    """
    ARL (samples, from S = 0) of the CUSUM with threshold h = size * up / CHAIN_RESOLUTION.

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
    """
    Average run length (samples) of the CUSUM with threshold h when x_t ~ Bernoulli(rate).

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
    """
    Smallest grid threshold h whose in-control ARL lower bound is >= target_arl0 (cached).

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

    def alarms_of(self, exceeded: list) -> list[int]:
        """Feed indicators in order, as `update` one by one; return the indices that alarmed."""
        s, up, down, h = self.statistic, self._up, self._down, self._h
        hits = []
        for i, x in enumerate(exceeded):
            s += up if x else down
            if s >= h:
                hits.append(i)
                s = 0.0
            elif not s > 0.0:
                s = 0.0
        self.statistic = s
        return hits


def simulate_run_lengths(design: CusumDesign, rate: float, runs: int, seed: int = 0,
                         max_steps: int = 10_000_000) -> np.ndarray:
    """Simulate run lengths of the CUSUM on i.i.d. Bernoulli(rate) input (vectorized)."""
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


# ---------------------------------------------------------------------------------------------
# A CUSUM threshold for autocorrelated streams: in-control run lengths on held-out episodes

RUN_LENGTH_BOOTSTRAP = 200      # episode-block bootstrap resamples of the threshold
RUN_LENGTH_CONFIDENCE = 0.9     # designed h = this quantile of the bootstrap thresholds
TAIL_SHARE = 0.2                # peaks-over-threshold: the top share of episode peaks ...
TAIL_MIN = 5                    # ... but at least this many
MIN_RUN_LENGTH_EPISODES = 10    # fewer episodes: no measured threshold (the i.i.d. design stays)
MIN_FOLD_EPISODES = 4           # the out-of-fold window and CUSUM scores need 2 episodes a fold


def cusum_path(exceeded: np.ndarray, up: float, down: float) -> np.ndarray:
    """
    Statistic S_t = max(0, S_{t-1} + step) of one episode from S = 0, without restarts.

    Lindley's recursion in closed form: S_t = C_t - min(0, min_{s<=t} C_s), C the cumulative sum.
    """
    steps = np.where(exceeded, up, -down)
    total = np.cumsum(steps)
    return total - np.minimum(np.minimum.accumulate(total), 0.0)


def cusum_alarms(exceeded: np.ndarray, up: float, down: float, h: float) -> int:
    """Alarms of the CUSUM over one episode, restarting from 0 after each (exact, for reports)."""
    alarms, start = 0, 0
    while start < exceeded.size:
        path = cusum_path(exceeded[start:], up, down)
        hits = np.flatnonzero(path >= h)
        if not hits.size:
            break
        alarms += 1
        start += int(hits[0]) + 1
    return alarms


def tail_threshold(peaks: np.ndarray, hours: float, target_per_hour: float, up: float) -> float:
    """
    Threshold whose extrapolated first-alarm rate is target_per_hour (exponential tail).

    Peaks over threshold: above u (the (m+1)-th largest episode peak) the peaks are taken as
    exponential, theta = m / sum(peak - u) (maximum likelihood), so the rate of episodes whose
    peak reaches h is (m / hours) exp(-theta (h - u)). CUSUM maxima have such tails (Cramer-
    Lundberg); the data fix theta, which autocorrelation lowers below its i.i.d. value.
    """
    ordered = np.sort(peaks)[::-1]
    m = min(ordered.size, max(TAIL_MIN, math.ceil(TAIL_SHARE * ordered.size)))
    u = float(ordered[m]) if m < ordered.size else 0.0
    excess = float(np.sum(ordered[:m] - u))
    if excess <= 0.0:
        return max(u, 0.0) + up
    theta = m / excess
    return max(up, u + math.log(max(m / (hours * target_per_hour), 1.0)) / theta)


@dataclass(frozen=True)
class RunLengthThreshold:
    """
    CUSUM threshold from in-control run lengths on held-out episodes, beside the i.i.d. one.

    Rates are false alarms per hour of in-control motion on the held-out calibration episodes
    (the CUSUM restarts at each episode start, as the monitor does on /vla/episode).
    """

    rho: float
    h: float                      # designed: bootstrap upper quantile of the extrapolated h
    h_iid: float                  # the i.i.d. chain design for the same target
    target_per_hour: float
    measured_per_hour: float      # alarms / hour at h on the held-out episodes
    measured_iid_per_hour: float  # alarms / hour at h_iid on the same episodes
    h_median: float               # bootstrap median of the extrapolated h
    hours: float                  # in-control time the measurement rests on
    n_episodes: int

    FIELDS = ('rho', 'h', 'h_iid', 'target_per_hour', 'measured_per_hour',
              'measured_iid_per_hour', 'h_median', 'hours', 'n_episodes')

    def to_array(self) -> np.ndarray:
        """Return the fields as one float array (calibration file key `motion_cusum`)."""
        return np.array([float(getattr(self, name)) for name in self.FIELDS])

    @classmethod
    def from_array(cls, values) -> 'RunLengthThreshold':
        """Inverse of `to_array`; InputError when the array is malformed."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(cls.FIELDS),) or not np.isfinite(values).all() \
                or not values[1] > 0 or not values[0] > 1:
            raise InputError('motion_cusum must hold the run-length threshold fields')
        kwargs = dict(zip(cls.FIELDS, values.tolist()))
        kwargs['n_episodes'] = int(kwargs['n_episodes'])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """JSON-ready fields plus the i.i.d. design value the measurement stands beside."""
        return {**{name: getattr(self, name) for name in self.FIELDS},
                'iid_design_per_hour': self.target_per_hour}


def run_length_threshold(exceedances: list[np.ndarray], dt: float, alpha: float, rho: float,
                         target_per_hour: float, seed: int = 0) -> RunLengthThreshold | None:
    """
    Design h for a CUSUM fed every step from held-out episodes' exceedance indicators.

    Each episode's peak statistic (from 0, as after a reset) is one in-control run; episodes are
    resampled whole (episode-block bootstrap, so within-episode autocorrelation is kept) and h
    is the RUN_LENGTH_CONFIDENCE quantile of the extrapolated thresholds. None with fewer than
    MIN_RUN_LENGTH_EPISODES episodes.
    """
    episodes = [np.asarray(x, dtype=bool) for x in exceedances if len(x)]
    if len(episodes) < MIN_RUN_LENGTH_EPISODES:
        return None
    up, down = _steps(alpha, rho)
    lengths = np.array([x.size for x in episodes], dtype=np.float64)
    peaks = np.array([cusum_path(x, up, down).max() for x in episodes])
    target = float(target_per_hour)
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(episodes), size=(RUN_LENGTH_BOOTSTRAP, len(episodes)))
    boot = [tail_threshold(peaks[d], lengths[d].sum() * dt / 3600.0, target, up) for d in draws]
    h = float(np.quantile(boot, RUN_LENGTH_CONFIDENCE))
    h_iid = design_cusum(alpha, rho, 3600.0 / (dt * target)).h
    hours = float(lengths.sum() * dt / 3600.0)
    return RunLengthThreshold(
        rho=float(rho), h=h, h_iid=float(h_iid), target_per_hour=target,
        measured_per_hour=sum(cusum_alarms(x, up, down, h) for x in episodes) / hours,
        measured_iid_per_hour=sum(cusum_alarms(x, up, down, h_iid) for x in episodes) / hours,
        h_median=float(np.median(boot)), hours=hours, n_episodes=len(episodes))


def position_run_length(score_episodes: list[np.ndarray], dt: float, alpha: float, rho: float,
                        target_per_hour: float, seed: int = 0) -> RunLengthThreshold | None:
    """
    Measure the position CUSUM's threshold on the score episodes' per-frame position scores.

    Out of fold: the episodes are halved (seeded) and each half's exceedances are taken against
    the other half's scores, then `run_length_threshold` as for the motion CUSUM.
    """
    folds = _halves(list(score_episodes), seed)
    if not all(folds):
        return None
    exceedances = []
    for fold, other in ((folds[0], folds[1]), (folds[1], folds[0])):
        limit = exceedance_limit(np.sort(np.concatenate(other)), alpha)
        exceedances += [np.asarray(s) > limit for s in fold]
    return run_length_threshold(exceedances, dt, alpha, rho, target_per_hour, seed)


def design_with_threshold(alpha: float, rho: float, h: float) -> CusumDesign:
    """
    Return a CusumDesign at a measured threshold h.

    Its i.i.d. ARLs are NaN: they would not describe an autocorrelated stream (the measured
    false-alarm rate does), and the chain solve at a high h costs seconds.
    """
    _check_rates(alpha, rho)
    if not (math.isfinite(h) and h > 0):
        raise InputError(f'CUSUM threshold must be a finite number > 0, got {h}')
    return CusumDesign(alpha, rho, h, math.nan, math.nan)


def step_differences(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increments a_t - a_{t-1} and second differences of rows [T, D], for t = 2..T-1."""
    d = rows[1:] - rows[:-1]
    return d[1:], d[1:] - d[:-1]


@dataclass(frozen=True)
class MotionCalibration:
    """
    Step scores from demonstrations: per-joint scales of the increment and second difference.

    Score of step t: s_t = max_j max(|a_t - a_{t-1}|_j / step_scale_j, |second diff|_j /
    accel_scale_j), NaN when a_{t-2..t} is not finite. `scores` are the sorted calibration scores,
    each episode scored on its own (no jump across episode seams). Optional, when calibrated with
    a control period: `cusum` (the motion CUSUM's run-length threshold), `seam_scores` (sorted
    chunk-seam scores: the increment part of the step score), `windows` (the
    nearest-neighbour window score, core.windows.WindowCalibration) and `holds` (the longest
    freeze and stall runs per episode, core.holds.HoldCalibration).
    """

    step_scale: np.ndarray
    accel_scale: np.ndarray
    scores: np.ndarray
    cusum: RunLengthThreshold | None = None
    seam_scores: np.ndarray | None = None
    windows: object = None
    position_cusum: RunLengthThreshold | None = None   # set by calibrate (needs mu, sigma)
    holds: HoldCalibration | None = None

    ARRAY_KEYS = ('motion_step_scale', 'motion_accel_scale', 'motion_scores')

    @classmethod
    def from_episodes(cls, episodes, sigma, floor: float = 1e-3, dt: float | None = None,
                      alpha: float = 0.05, rho: float = 3.0, target_per_hour: float = 0.1,
                      seed: int = 0, velocity_scale=None) -> 'MotionCalibration':
        """
        Scales = per-joint RMS over the calibration episodes (floored at floor * sigma_j).

        With `dt`, also the run-length CUSUM threshold, seam scores and window scores, each
        measured out of fold: the episodes are halved (seeded) and each half is scored against
        a calibration of the other half, so the measurement sees unseen episodes; and the hold
        runs of every episode, below the default profile's deadband of `velocity_scale` (the
        calibration's; None: the std of the episodes' velocities).
        """
        arrays = [np.asarray(e, dtype=np.float64) for e in episodes]
        base = cls._fit([e for e in arrays if len(e) >= 3], sigma, floor)
        if dt is None:
            return base
        from .windows import WindowCalibration   # windows imports this module
        folds = _halves([e for e in arrays if len(e) >= 3], seed)
        cusum = None
        if all(folds):
            exceedances = []
            for fold, other in ((folds[0], folds[1]), (folds[1], folds[0])):
                scorer = StepScorer(cls._fit(other, sigma, floor), 1.0)
                limit = scorer.exceedance_threshold(alpha)
                exceedances += [np.nan_to_num(scorer.scores_of(e), nan=-np.inf) > limit
                                for e in fold]
            cusum = run_length_threshold(exceedances, dt, alpha, rho, target_per_hour, seed)
        seams = np.sort(np.concatenate([seam_scores(e, base.step_scale) for e in arrays]))
        windows = WindowCalibration.from_folds(folds, base.step_scale, dt, seed) \
            if all(folds) else None
        holds = HoldCalibration.from_episodes(
            arrays, _stall_eps(arrays, sigma, floor, dt, velocity_scale), dt)
        return replace(base, cusum=cusum, seam_scores=seams, windows=windows, holds=holds)

    @classmethod
    def _fit(cls, episodes: list[np.ndarray], sigma, floor: float) -> 'MotionCalibration':
        """Scales and sorted step scores of episodes (each at least 3 steps long)."""
        pieces = [step_differences(e) for e in episodes]
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
        arrays = dict(zip(self.ARRAY_KEYS, (self.step_scale, self.accel_scale, self.scores)))
        if self.cusum is not None:
            arrays['motion_cusum'] = self.cusum.to_array()
        if self.position_cusum is not None:
            arrays['motion_position_cusum'] = self.position_cusum.to_array()
        if self.seam_scores is not None:
            arrays['motion_seam_scores'] = self.seam_scores
        if self.windows is not None:
            arrays.update(self.windows.to_arrays())
        if self.holds is not None:
            arrays.update(self.holds.to_arrays())
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> 'MotionCalibration | None':
        """Return the motion calibration stored by `to_arrays`, or None when a file predates it."""
        if not all(key in arrays for key in cls.ARRAY_KEYS):
            return None
        step, accel, scores = (np.asarray(arrays[k], dtype=np.float64) for k in cls.ARRAY_KEYS)
        if (step.shape != accel.shape or step.ndim != 1 or scores.ndim != 1 or not scores.size
                or not (np.all(step > 0) and np.all(accel > 0) and np.isfinite(scores).all())):
            raise InputError('motion calibration arrays are malformed')
        from .windows import WindowCalibration   # windows imports this module
        cusum = RunLengthThreshold.from_array(arrays['motion_cusum']) \
            if 'motion_cusum' in arrays else None
        seams = None
        if 'motion_seam_scores' in arrays:
            seams = np.sort(np.asarray(arrays['motion_seam_scores'], dtype=np.float64))
            if seams.ndim != 1 or not seams.size or not np.isfinite(seams).all():
                raise InputError('motion_seam_scores must be a non-empty finite 1-D array')
        windows = WindowCalibration.from_arrays(arrays, step.size)
        position = RunLengthThreshold.from_array(arrays['motion_position_cusum']) \
            if 'motion_position_cusum' in arrays else None
        holds = HoldCalibration.from_arrays(arrays, step.size)
        return cls(step, accel, np.sort(scores), cusum, seams, windows, position, holds)


def _stall_eps(episodes: list[np.ndarray], sigma, floor: float, dt: float,
               velocity_scale) -> np.ndarray:
    """Return the default profile's stall deadband per joint, deadband * velocity_scale * dt."""
    if velocity_scale is None:
        steps = np.concatenate([np.diff(e, axis=0) for e in episodes if len(e) >= 2])
        velocity_scale = steps[np.isfinite(steps).all(axis=1)].std(axis=0) / dt
    low = floor * np.asarray(sigma, dtype=np.float64)
    typical = np.maximum(np.asarray(velocity_scale, dtype=np.float64) * dt, low)
    return PROFILES[DEFAULT_PROFILE].deadband * typical


def _halves(episodes: list, seed: int) -> tuple[list, list]:
    """Two folds of episodes by a seeded permutation (empty folds when fewer than 4 episodes)."""
    if len(episodes) < MIN_FOLD_EPISODES:
        return [], []
    order = np.random.default_rng(seed).permutation(len(episodes))
    return [episodes[i] for i in order[::2]], [episodes[i] for i in order[1::2]]


def _step_scores(d: np.ndarray, dd: np.ndarray, inv_step: np.ndarray,
                 inv_accel: np.ndarray) -> np.ndarray:
    """Per-row step score from increments and second differences (NaN rows stay NaN)."""
    return np.maximum.reduce(np.maximum(np.abs(d) * inv_step, np.abs(dd) * inv_accel), axis=1)


def seam_scores(episode: np.ndarray, step_scale: np.ndarray) -> np.ndarray:
    """
    Seams simulated from a demonstration: every step a chunk boundary, max_j |jump_j| / scale_j.

    A chunked policy's new first point against the executed trajectory is one such jump, so
    the demonstrations' step increments are the seam scores of good behaviour.
    """
    jumps = np.abs(np.diff(episode, axis=0)) / step_scale
    return jumps.max(axis=1)[np.isfinite(jumps).all(axis=1)]


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


class SeamScorer(ConformalScorer):
    """Conformal p-value of a chunk seam; a `seam_spike` is a jump past margin * every seam."""

    def __init__(self, motion: MotionCalibration, spike_margin: float):
        self.inv_step = 1.0 / motion.step_scale
        self.scores = motion.seam_scores
        self.n = int(self.scores.size)
        self.spike_score = float(spike_margin * self.scores[-1])

    def score(self, first_point: np.ndarray, executed: np.ndarray) -> float:
        """max_j |first_j - executed_j| / step_scale_j (NaN or inf when either is not finite)."""
        return float(np.max(np.abs(first_point - executed) * self.inv_step))
