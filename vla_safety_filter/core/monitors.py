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
Streaming action-health metrics, alarms and the per-episode summary (doc/monitoring.md).

Per step d_t = a_t - a_{t-1}, scaled per joint by the deadband
eps_j = deadband * velocity_scale_j * dt
(u = d / eps, so |u_j| >= 1 means "joint j moves"). Over a window of W steps:
  reversal_rate       flips / eligible pairs, pairs (t, j) with |u| >= 1 at t-1 and t; in [0, 1]
  jerk_rms            RMS over (t, j) of third difference / dt^3 / velocity_scale_j   (1/s^2)
  momentum_coherence  mean cosine of consecutive u vectors, both moving; 1 when none
  spectral_low_ratio  share of the mean-removed velocity power below the cutoff over the longer
                      spectral window (profile.spectral_window_s); 1 when still
  stall_s             time since some joint last moved (alarm after profile.stall_s)
Step scores (with a MotionCalibration): the increment and second difference per joint, scaled by
calibration RMS, max over joints; a score past spike_margin * every calibration score alarms at
once (`step_spike`); their conformal exceedances feed a second CUSUM (`motion_cusum`), fed
every step when its threshold was measured on held-out episodes (autocorrelation-aware), else
thinned with the i.i.d. design. Window score: nearest-neighbour distance of the recent
(position, velocity) window to the demonstrations (`window_spike` past the margin); seam score:
a new chunk's first point against the executed trajectory (`check_seam`, `seam_spike`).
Holds (with the motion calibration's hold runs, core.holds): `freeze` when a run of exactly
repeated actions, `stall` when a run below the deadband, reaches its calibrated threshold.
Alarms use jerk_norm = jerk_rms * dt^2 (dimensionless). A non-finite or wrong-length action is an
alarm at once and becomes a gap: every contribution that would use it is zero and counted out,
so no NaN reaches a sum. Metrics and scores advance in blocks of profile.block_s (alarm steps
exact): the scores vectorized over the block, the window metrics kept incrementally per step in
plain floats (`_StepWindow`: on one row of a few joints numpy's per-call cost exceeds the
arithmetic); `episode_metrics` computes the same definitions over a whole episode with numpy.
A recorded episode is scored at once by `ActionMonitor.score_episode` (vectorized over the
episode, block order kept where results depend on it: identical to stepping `update`), and
`AlarmScan` finds a chunk at a time, ahead of stepping, the alarms each update would raise.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
import copy
from dataclasses import dataclass, field, replace
from functools import lru_cache, reduce
import math
from operator import add
from typing import NamedTuple

import numpy as np

from .costs import CostBudget, CostModel
from .errors import InputError
from .holds import armed_kinds, HoldDetector, run_lengths
from .params import CalibrationData
from .profiles import get_profile, MonitorProfile
from .sequential import (BernoulliCusum, ConformalScorer, design_cusum, design_with_threshold,
                         MotionCalibration, SeamScorer, StepScorer)
from .windows import window_features, WindowScorer
from ..names import ERROR, LEVEL_NAMES, OK, WARN

# columns of the per-step contribution table
FLIPS, ELIGIBLE, COS_SUM, COS_N, JERK_SQ, JERK_N = range(6)
METRIC_NAMES = ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'spectral_low_ratio', 'stall_s')
MAX_ALARMS_KEPT = 1000
HISTORY_BLOCKS = 16  # the action buffer holds this many blocks beyond the history it keeps
HUGE = 1e15  # an action whose |sum| reaches this counts as non-finite (keeps squares finite)
FAULT_KINDS = ('', 'nonfinite', 'shape')  # a recorded row's fault, by code (score_episode)
# score_episode orders what it raises and charges as stepping does: key 8 t + phase of step t,
# then the rank of the part of `_flush` that raised the alarm, then the alarm's step
FAULT, FLUSH, FLUSHED, INTERVENTIONS, COSTS, LAST_FLUSH, LAST_FLUSHED = range(7)
RANKS = {'cusum': 1, 'step_spike': 2, 'motion_cusum': 3, 'window_spike': 4,
         'reversal': 5, 'jerk': 6, 'coherence': 7, 'stall': 8, 'spectral': 10}
HOLD_RANK = 9   # core.holds' freeze and stall (by step, freeze first, as the detector raises)
_FLOAT64 = np.dtype(np.float64)  # the per-step path takes float64 rows as they are
# score_episode queries every 12th window score, and every third one except between two far
# from the demonstrations; those bound the others (most are not queried)
WINDOW_HOPS = (12, 3)


class Alarm(NamedTuple):
    """One alarm onset: its kind and the step that raised it."""

    kind: str
    step: int


class EpisodeScores(NamedTuple):
    """A recorded episode's summaries: the whole episode and its first steps (None if shorter)."""

    whole: dict
    early: dict | None


class StepStatus(NamedTuple):
    """What one update raised (usually nothing) and the current diagnostic level."""

    step: int
    alarms: tuple
    level: int


def _history(context: np.ndarray, rows: np.ndarray, inv_eps: np.ndarray):
    """Deadband-scaled steps u for `rows` given the 3 preceding rows (NaN rows are gaps)."""
    x = np.concatenate([context, rows])
    finite = np.isfinite(x).all(axis=1)
    valid = finite[1:] & finite[:-1]
    z = np.where(finite[:, None], x, 0.0)
    u = np.where(valid[:, None], z[1:] - z[:-1], 0.0) * inv_eps
    return u, valid


def _added(values) -> float:
    """
    Add floats left to right from 0.0, as the batch path's numpy sums do.

    Python 3.11's sum() of floats does exactly this; from 3.12 it compensates the rounding,
    which would part the streaming path from the batch one in the last bits.
    """
    return reduce(add, values, 0.0)


def _row_sums(x: np.ndarray) -> np.ndarray:
    """Sum each row left to right from 0.0, as Python's sum() of the row's list (same rounding)."""
    total = np.zeros(x.shape[0])
    for column in x.T:
        total += column
    return total


def step_contributions(context: np.ndarray, rows: np.ndarray, inv_eps: np.ndarray):
    """
    Per-step window contributions [B, 6] and 'still' flags [B] for rows given 3 context rows.

    (Ufuncs and their reductions rather than clip, diff and count_nonzero: the same values
    for fewer microseconds of numpy's per-call cost.)
    """
    u, valid = _history(context, rows, inv_eps)
    ut, u1, u2 = u[2:], u[1:-1], u[:-2]
    sign = np.trunc(np.minimum(np.maximum(u, -1.0), 1.0))   # +-1 beyond the deadband, 0 inside
    pair = sign[2:] * sign[1:-1]
    moving = np.logical_or.reduce(sign != 0.0, axis=1)
    out = np.zeros((rows.shape[0], 6))
    out[:, ELIGIBLE] = np.add.reduce(pair != 0.0, axis=1)
    out[:, FLIPS] = np.add.reduce(pair < 0.0, axis=1)
    both = moving[2:] & moving[1:-1]
    norm_sq = _row_sums(u * u)
    norms = np.sqrt(norm_sq[2:] * norm_sq[1:-1])
    out[:, COS_SUM] = np.where(both, _row_sums(ut * u1) / np.where(both, norms, 1.0), 0.0)
    out[:, COS_N] = both
    jerk_ok = valid[2:] & valid[1:-1] & valid[:-2]
    third = ut - 2.0 * u1 + u2
    out[:, JERK_SQ] = np.where(jerk_ok, _row_sums(third * third), 0.0)
    out[:, JERK_N] = jerk_ok * rows.shape[1]
    still = valid[2:] & ~moving[2:]
    return out, still


def _fed(scores: np.ndarray, stride: int, t0: int) -> np.ndarray:
    """Return which scores (of steps t0, t0 + 1, ...) a CUSUM takes: finite, t % stride == 0."""
    finite = scores == scores
    if stride > 1:
        finite &= (np.arange(scores.size) + t0) % stride == 0
    return finite


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the Euclidean distance between each row of a and the same row of b (for bounds)."""
    d = a - b
    return np.sqrt(np.einsum('ij,ij->i', d, d))   # a few times faster than a sum over axis 1


def _kept(scores: list, stats: list, limit: float) -> list:
    """Return the finite scores; count them and their exceedances of limit, keep the largest."""
    finite = [s for s in scores if s == s]
    if finite:
        stats[0] += len(finite)
        stats[1] += sum(s > limit for s in finite)
        stats[2] = max(stats[2], max(finite))
    return finite


class _StepWindow:
    """
    Streaming twin of step_contributions + window_sums: O(D) per step from the last three steps.

    Plain floats, not numpy: at the D of a robot arm the per-call cost of numpy on one row is
    larger than the arithmetic. Each column is summed afresh over the window (no cancellation).
    """

    def __init__(self, inv_eps: list, window: int):
        self.inv_eps = inv_eps
        self.window = window
        self.reset()

    def reset(self) -> None:
        """Start an episode: no previous step, empty window."""
        self.previous = None
        self.u1 = self.u2 = None   # scaled steps of the last two steps (None: a gap)
        self.moving1, self.norm1 = False, 0.0
        self.columns = [deque(maxlen=self.window) for _ in range(6)]

    def resume(self, last: list, table: np.ndarray) -> None:
        """Continue after a batch: its last three rows (lists) and contribution rows (numpy)."""
        rows = [None if row[0] != row[0] else row for row in last]
        u = [None if a is None or b is None else [(p - q) * e for p, q, e in
                                                  zip(a, b, self.inv_eps)]
             for b, a in zip(rows, rows[1:])]
        self.previous, self.u2, self.u1 = rows[-1], u[0], u[1]
        self.moving1 = u[1] is not None and any(v >= 1.0 or v <= -1.0 for v in u[1])
        self.norm1 = 0.0 if u[1] is None else _added(v * v for v in u[1])
        for column, values in zip(self.columns, table.T.tolist()):
            column.extend(values)

    def add(self, action: list) -> tuple[list, bool]:
        """Take one action (a list; all NaN for a gap); return the window sums and 'still'."""
        if action[0] != action[0]:   # the monitor stores gaps as all-NaN rows
            action = None
        previous, self.previous = self.previous, action
        u = None if action is None or previous is None else [
            (a - b) * e for a, b, e in zip(action, previous, self.inv_eps)]
        row = self._contribution(u)
        for column, value in zip(self.columns, row):
            column.append(value)
        sums = [sum(column) for column in self.columns]   # counts: ints
        for k in (COS_SUM, JERK_SQ):
            sums[k] = _added(self.columns[k])
        return sums, u is not None and not self.moving1

    def _contribution(self, u: list | None) -> tuple:
        """Contribution row (FLIPS ... JERK_N) of the step u; shifts the step history."""
        u1, u2 = self.u1, self.u2
        flips = eligible = cos_n = jerk_n = 0
        cos = jerk = 0.0
        moving, norm = False, 0.0
        if u is not None:
            moving = any(v >= 1.0 or v <= -1.0 for v in u)
            norm = _added(v * v for v in u)
            if u1 is not None:
                pairs = [a * b for a, b in zip(u, u1)
                         if (a >= 1.0 or a <= -1.0) and (b >= 1.0 or b <= -1.0)]
                eligible, flips = len(pairs), sum(p < 0.0 for p in pairs)
                if moving and self.moving1:
                    cos = _added(a * b for a, b in zip(u, u1)) / math.sqrt(norm * self.norm1)
                    cos_n = 1
                if u2 is not None:
                    jerk = _added(t * t for t in (a - 2.0 * b + c for a, b, c in zip(u, u1, u2)))
                    jerk_n = len(u)
        self.u1, self.u2 = u, u1
        self.moving1, self.norm1 = moving, norm
        return flips, eligible, cos, cos_n, jerk, jerk_n


def window_sums(table: np.ndarray, window: int) -> np.ndarray:
    """
    Column sums of every run of `window` consecutive rows, summed afresh (no cancellation).

    Oldest row first from 0.0, the order in which `_StepWindow` sums its columns: the same
    rounding, so the batch and streaming metrics are equal, not only close.
    """
    n = table.shape[0] - window + 1
    sums = np.zeros((n, table.shape[1]))
    for k in range(window):
        sums += table[k:k + n]
    return sums


def _onset_steps(hits: np.ndarray) -> np.ndarray:
    """Return the steps where a run of consecutive hits starts (an alarm onset each)."""
    if not hits.any():
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(hits & ~np.concatenate([[False], hits[:-1]]))


def window_values(sums: np.ndarray, deadband: float, dt: float) -> dict:
    """Metric values from window sums (rows = steps); empty windows give the neutral value."""
    eligible, cos_n, jerk_n = sums[:, ELIGIBLE], sums[:, COS_N], sums[:, JERK_N]
    reversal = np.where(eligible > 0.5, sums[:, FLIPS] / np.maximum(eligible, 1.0), 0.0)
    coherence = np.where(cos_n > 0.5, sums[:, COS_SUM] / np.maximum(cos_n, 1.0), 1.0)
    jerk_norm = np.sqrt(np.maximum(sums[:, JERK_SQ], 0.0) / np.maximum(jerk_n, 1.0)) * deadband
    return {'reversal_rate': np.minimum(np.maximum(reversal, 0.0), 1.0),
            'momentum_coherence': coherence,
            'jerk_norm': jerk_norm, 'jerk_rms': jerk_norm / (dt * dt), 'eligible': eligible,
            'pairs': cos_n}


def spectral_low_ratio(actions: np.ndarray, velocity_scale: np.ndarray, dt: float,
                       cutoff_hz: float) -> float:
    """Return the share of scaled, mean-removed velocity power below cutoff_hz (1 when still)."""
    return float(spectral_low_ratios(actions[None], velocity_scale, dt, cutoff_hz)[0])


def spectral_low_ratios(windows: np.ndarray, velocity_scale: np.ndarray, dt: float,
                        cutoff_hz: float) -> np.ndarray:
    """
    Return `spectral_low_ratio` of each window [K, n + 1, D] of actions (NaN rows are gaps).

    A window's value does not depend on the others: element-wise operations, one FFT per
    column, and sums in a fixed order (cumulative sums), so a batch equals the windows one by
    one bit for bit (score_episode relies on it).
    """
    x = np.ascontiguousarray(windows.transpose(0, 2, 1))   # [K, D, n + 1]: each column in a row
    finite = np.isfinite(x).all(axis=1)
    valid = (finite[:, 1:] & finite[:, :-1])[:, None, :]
    steps = np.diff(np.where(finite[:, None, :], x, 0.0), axis=2)
    vel = np.where(valid, steps, 0.0) / (velocity_scale * dt)[:, None]
    mean = np.cumsum(vel, axis=2)[..., -1] / np.maximum(valid.sum(axis=2), 1)
    vel = np.where(valid, vel - mean[..., None], 0.0)
    spectrum = np.fft.rfft(vel, axis=2)[..., 1:]   # along contiguous rows: the fastest way
    power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
    # summed in the order (frequency, joint) as ever
    sums = np.cumsum(power.transpose(0, 2, 1).reshape(power.shape[0], -1), axis=1)
    total = sums[:, -1]
    n, dim = vel.shape[2], vel.shape[1]
    low = _low_bins(n, dt, cutoff_hz) * dim
    below = sums[:, low - 1] if low else np.zeros_like(total)
    still = ~(total > 1e-12 * n)
    return np.where(still, 1.0, below / np.where(still, 1.0, total))


@lru_cache(maxsize=64)
def _low_bins(n: int, dt: float, cutoff_hz: float) -> int:
    """Return how many non-zero frequency bins of an n-point real FFT lie below cutoff_hz."""
    return int(np.count_nonzero(np.fft.rfftfreq(n, dt)[1:] < cutoff_hz))


class ActionMonitor:
    """
    Streaming health monitor of one action stream: metrics, conformal CUSUM, alarms, cost budget.

    Memory is bounded by the windows; `update` is O(D) per step (finiteness check, row copy)
    plus one block every profile.block_s (O(D) per step of it, and a nearest-neighbour query
    for the window score unless the last neighbour bounds it) and one FFT every
    profile.spectral_period_s.
    """

    def __init__(self, calibration: CalibrationData, dt: float,
                 profile: MonitorProfile | str = 'generic', costs: CostModel | None = None,
                 motion: MotionCalibration | None = None):
        if not (np.isfinite(dt) and dt > 0):
            raise InputError(f'monitor dt must be a positive number, got {dt!r}')
        self.calibration = calibration
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.dt = float(dt)
        p, self.dim = self.profile, len(calibration.joint_names)
        self.velocity_scale = np.asarray(calibration.velocity_scale, dtype=np.float64)
        if self.velocity_scale.shape != (self.dim,) or not np.all(self.velocity_scale > 0):
            raise InputError('calibration velocity_scale must hold one positive value per joint')
        self.inv_eps = 1.0 / (p.deadband * self.velocity_scale * self.dt)
        self.window = max(4, round(p.window_s / self.dt))
        self.block = max(1, round(p.block_s / self.dt))
        self.stall_steps = max(1, round(p.stall_s / self.dt))
        self.spectral_every = max(1, round(p.spectral_period_s / self.dt))
        self.spectral_window = max(8, round(p.spectral_window_s / self.dt))
        self.min_pairs = max(4, self.window // 5)
        self.scorer = ConformalScorer(calibration)
        self.alpha = float(calibration.alpha)
        self.exceed_score = self.scorer.exceedance_threshold(self.alpha)
        self.position_run_length, self.cusum_stride, design = self._cusum_design(
            None if motion is None else motion.position_cusum, p.cusum_stride_s)
        self.cusum = BernoulliCusum(design)
        self._init_motion(motion)
        self.budget = CostBudget(costs or CostModel())
        self._nan_row = np.full(self.dim, np.nan)
        self._shape = self._nan_row.shape
        span = self.window_scorer.span if self.window_scorer is not None else 0
        self._keep = max(self.spectral_window + 1, span)  # past rows a block looks at (>= 9)
        self._hist = np.empty((self._keep + HISTORY_BLOCKS * self.block, self.dim))
        self._steps = _StepWindow(self.inv_eps.tolist(), self.window)
        self._armed = [k for k in ('reversal', 'jerk', 'coherence', 'stall') if k in p.primary
                       and not (k == 'stall' and self.holds is not None)]  # holds' stall instead
        self.reset_episode()

    def _init_motion(self, motion: MotionCalibration | None) -> None:
        """Step, seam and window scorers and the motion CUSUM; all disarmed without motion data."""
        self.step_scorer = self.seam_scorer = self.window_scorer = self.holds = None
        self.run_length = None
        if motion is None:
            return
        if motion.step_scale.shape != (self.dim,):
            raise InputError('motion calibration must hold one step scale per joint')
        p = self.profile
        if motion.holds is not None:   # calibrated freeze and stall runs
            limits = motion.holds.thresholds(p, self.dt, self.alpha)
            self.holds = HoldDetector(motion.holds.stall_eps, limits,
                                      armed_kinds(limits, 'stall' in p.primary))
        self.step_scorer = StepScorer(motion, p.spike_margin)
        self.step_exceed = self.step_scorer.exceedance_threshold(self.alpha)
        if motion.seam_scores is not None:
            self.seam_scorer = SeamScorer(motion, p.spike_margin)
        if motion.windows is not None and motion.windows.norm.shape == (3, self.dim):
            self.window_scorer = WindowScorer(motion.windows, p.window_margin)
            self.window_exceed = self.window_scorer.exceedance_threshold(self.alpha)
        measured = self._cusum_design(motion.cusum, p.motion_stride_s)
        self.run_length, self.motion_stride, design = measured
        self.motion_cusum = BernoulliCusum(design)

    def _cusum_design(self, measured, stride_s: float):
        """
        Return (measured or None, stride in steps, design) of a CUSUM.

        Every step at the measured threshold when it fits the profile's rho and target, else the
        i.i.d. design thinned to one sample per stride_s.
        """
        p = self.profile
        if (measured is not None and np.isclose(measured.rho, p.cusum_rho)
                and np.isclose(measured.target_per_hour * p.cusum_arl0_hours, 1.0)):
            return measured, 1, design_with_threshold(self.alpha, p.cusum_rho, measured.h)
        stride = max(1, round(stride_s / self.dt))
        samples_per_hour = 3600.0 / (stride * self.dt)
        return None, stride, design_cusum(self.alpha, p.cusum_rho,
                                          p.cusum_arl0_hours * samples_per_hour)

    # ---- per-step path -------------------------------------------------------------------
    def reset_episode(self) -> None:
        """Forget the current episode (on /vla/episode): windows, CUSUM, costs, alarms."""
        self.step_count = 0
        self._pending = 0
        # actions in order in _hist[:_end] (NaN rows for gaps; the first _keep rows start as gaps)
        self._end = self._keep
        self._hist[:self._keep] = np.nan
        self._steps.reset()
        self._stall = 0
        self._active = dict.fromkeys(('nonfinite', 'shape', 'reversal', 'jerk', 'coherence',
                                      'spectral', 'stall', 'step_spike', 'window_spike',
                                      'freeze'),
                                     False)
        self._next_spectral = self.spectral_window - 1
        self._last_score = float('nan')
        self._values = None
        self.cusum.reset()
        if self.step_scorer is not None:
            self.motion_cusum.reset()
        if self.holds is not None:
            self.holds.reset()
        self._last_step_score = float('nan')
        self._step_stats = [0, 0, 0.0]  # scored steps, exceedances, largest score
        self._window_stats = [0, 0, 0.0]
        self._last_window = [None, float('nan')]  # last finite window features, its score
        self._seam = [float('nan'), 0.0]  # last seam score, largest
        self.budget.reset()
        self.alarms: list[Alarm] = []
        self.alarm_counts: dict[str, int] = {}
        self._sums = dict.fromkeys(METRIC_NAMES, 0.0)
        self._maxima = dict.fromkeys(METRIC_NAMES, 0.0)
        self._n_full = 0
        self._n_spectral = 0
        self._bad_steps = 0
        self._scored = 0
        self._exceeded = 0
        self._level = OK
        self._unreported: list[Alarm] = []

    def update(self, action) -> StepStatus:
        """Take one action (any sequence of D numbers); returns the alarms it raised."""
        t = self.step_count
        self.step_count = t + 1
        try:
            a = action if type(action) is np.ndarray and action.dtype is _FLOAT64 \
                else np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            a = None  # not numbers at all
        raised = ()
        if a is None or a.shape != self._shape:
            raised = self._bad(t, 'shape')
            a = self._nan_row
        # false for NaN, Inf and absurd magnitudes; a Python sum of the list is the cheapest
        # reduction of D ~ 14 numbers (numpy's per-call cost is several times the arithmetic)
        elif not -HUGE < sum(a.tolist()) < HUGE:
            raised = self._bad(t, 'nonfinite')
            a = self._nan_row
        elif self._active['nonfinite'] or self._active['shape']:
            self._active['nonfinite'] = self._active['shape'] = False
        self._hist[self._end] = a
        self._end += 1
        self._pending += 1
        if self._pending == self.block:
            raised = raised + self._flush()
        if self._unreported:  # raised by a flush that window_metrics() or a summary forced
            raised, self._unreported = tuple(self._unreported) + raised, []
        return StepStatus(t, raised, self._level)

    def _bad(self, t: int, kind: str) -> tuple:
        self._bad_steps += 1
        if self._active[kind]:
            return ()
        self._active[kind] = True
        return self._raise(kind, t)

    def _raise(self, kind: str, step: int) -> tuple:
        alarm = Alarm(kind, step)
        if len(self.alarms) < MAX_ALARMS_KEPT:
            self.alarms.append(alarm)
        self.alarm_counts[kind] = self.alarm_counts.get(kind, 0) + 1
        self.budget.charge('alarm.' + kind)
        self._refresh_level()
        return (alarm,)

    def _refresh_level(self) -> None:
        active = any(self._active.values())
        self._level = max(self.budget.level, WARN if active else OK)

    def active_alarms(self) -> list[str]:
        """Kinds whose alarm condition holds now (non-finite input, a metric past its limit)."""
        return [kind for kind, on in self._active.items() if on]

    def set_budget(self, budget: float) -> None:
        """Apply a new episode cost budget now (validated by CostModel)."""
        self.budget.model = replace(self.budget.model, budget=budget)
        self._refresh_level()

    def record_interventions(self, reasons) -> None:
        """
        Charge the filter's interventions of one step (iterable of reasons, e.g. 'position').

        Each reason once, in the order given: the cost adds up the same in every process (a
        set's order changes with the string hash seed).
        """
        for reason in dict.fromkeys(reasons):
            self.budget.charge('intervention.' + reason)
        self._refresh_level()

    # ---- block path ----------------------------------------------------------------------
    def _flush(self) -> tuple:
        """Advance CUSUMs, scores, metrics and alarms over the pending block of actions."""
        n = self._pending
        if n == 0:
            return ()
        self._pending = 0
        t0, end = self.step_count - n, self._end
        raised = self._cusum_block(self._hist[end - n:end], t0) + self._motion_block(end, n, t0)
        raised += self._metrics_block(end, n, t0)
        if self.holds is not None:
            raised += self._hold_block(self._hist[end - n:end], t0)
        if self.step_count - 1 >= self._next_spectral:
            raised += self._spectral_check(self.step_count - 1)
        self._compact()
        self._refresh_level()
        return raised

    def _compact(self) -> None:
        """Move the rows still needed to the front of the buffer when a block might not fit."""
        if self._end + self.block > self._hist.shape[0]:
            keep = self._keep
            self._hist[:keep] = self._hist[self._end - keep:self._end]
            self._end = keep

    def _recent(self) -> np.ndarray:
        """Return the last spectral_window + 1 actions (the FFT metric's input), a view."""
        return self._hist[self._end - self.spectral_window - 1:self._end]

    def _cusum_block(self, rows: np.ndarray, t0: int) -> tuple:
        """Position scores of the block: statistics and the (strided) position CUSUM."""
        limit, stride, raised = self.exceed_score, self.cusum_stride, ()
        for i, score in enumerate(self.scorer.scores_of(rows).tolist()):
            if score != score:  # a gap row
                continue
            self._last_score = score
            self._scored += 1
            exceeded = score > limit
            self._exceeded += exceeded
            if (t0 + i) % stride == 0 and self.cusum.update(exceeded):
                raised += self._raise('cusum', t0 + i)
        return raised

    def _motion_block(self, end: int, n: int, t0: int) -> tuple:
        """Step scores of the block: spike alarms at once, exceedances into the motion CUSUM."""
        if self.step_scorer is None:
            return ()
        scores = self.step_scorer.scores_of(self._hist[end - n - 2:end]).tolist()
        finite = _kept(scores, self._step_stats, self.step_exceed)
        if finite:
            self._last_step_score = finite[-1]
        spike = self.step_scorer.spike_score
        raised = self._onsets([s > spike for s in scores], t0, 'step_spike')
        limit, stride = self.step_exceed, self.motion_stride
        for i, score in enumerate(scores):
            if ((t0 + i) % stride == 0 and score == score
                    and self.motion_cusum.update(score > limit)):
                raised += self._raise('motion_cusum', t0 + i)
        return raised + self._window_block(end, n, t0)

    def _window_block(self, end: int, n: int, t0: int) -> tuple:
        """
        Window scores of the block: a `window_spike` past the margin, statistics kept.

        Scores at or below every threshold and the largest score so far need no exact value
        (`WindowScorer.bounded_scores`); the last one is computed when a diagnostic reads it.
        """
        scorer = self.window_scorer
        if scorer is None:
            return ()
        stats = self._window_stats
        bound = min(self.window_exceed, stats[2], scorer.spike_score)
        scores, features = scorer.bounded_scores(self._hist[end - n - scorer.span:end], bound)
        if _kept(scores, stats, self.window_exceed):
            last = max(i for i, s in enumerate(scores) if s == s)
            self._last_window = [features[last], None]
        return self._onsets([s > scorer.spike_score for s in scores], t0, 'window_spike')

    def _hold_block(self, rows: np.ndarray, t0: int) -> tuple:
        """Freeze and stall runs of the block (core.holds): one alarm per run at its threshold."""
        raised = ()
        for kind, step in self.holds.block(rows, t0):
            raised += self._raise(kind, step)
        for kind in self.holds.kinds:
            self._active[kind] = self.holds.active(kind)
        return raised

    def _onsets(self, hits: list, t0: int, kind: str, first: int = 0) -> tuple:
        """
        One alarm of `kind` per run of consecutive hits from row `first` on (runs span blocks).

        The condition holds at the end when the last row is a hit.
        """
        raised, active = (), self._active[kind]
        for i in range(first, len(hits)):
            if hits[i] and not active:
                raised += self._raise(kind, t0 + i)
            active = hits[i]
        self._active[kind] = active
        return raised

    def check_seam(self, first_point, executed) -> tuple:
        """
        Score a new chunk's first point against the executed command; `seam_spike` past it.

        Call when a chunk arrives, before `update` of its first point; returns the alarms raised
        (the alarm's step is the step that first point will take). O(D); disarmed (no alarms)
        without seam calibration or when either point is not finite or of the wrong length.
        """
        if self.seam_scorer is None:
            return ()
        first = np.asarray(first_point, dtype=np.float64)
        last = np.asarray(executed, dtype=np.float64)
        if first.shape != (self.dim,) or last.shape != (self.dim,):
            return ()
        score = self.seam_scorer.score(first, last)
        if not np.isfinite(score):
            return ()
        self._seam = [score, max(self._seam[1], score)]
        if score <= self.seam_scorer.spike_score:
            return ()
        raised = self._raise('seam_spike', self.step_count)
        self._refresh_level()
        return raised

    def _metrics_block(self, end: int, n: int, t0: int) -> tuple:
        """Window metrics of each step of the block, their alarms and episode statistics."""
        rows = []
        for action in self._hist[end - n:end].tolist():
            sums, still = self._steps.add(action)
            self._stall = self._stall + 1 if still else 0
            rows.append(self._step_values(sums, self._stall))
        self._values = rows[-1]
        first_full = max(0, self.window - 1 - t0)  # alarms only once the window is full
        raised = ()
        for kind in self._armed:
            raised += self._onsets([self._hit(kind, v) for v in rows], t0, kind, first_full)
        self._accumulate(rows[first_full:])
        return raised

    def _step_values(self, sums: list, run: int) -> dict:
        """Metric values of one step from its window sums (empty windows give neutral values)."""
        eligible, cos_n = sums[ELIGIBLE], sums[COS_N]
        reversal = sums[FLIPS] / max(eligible, 1.0) if eligible > 0.5 else 0.0
        jerk_norm = math.sqrt(max(sums[JERK_SQ], 0.0) / max(sums[JERK_N], 1.0)) \
            * self.profile.deadband
        return {'reversal_rate': min(max(reversal, 0.0), 1.0),
                'momentum_coherence': sums[COS_SUM] / max(cos_n, 1.0) if cos_n > 0.5 else 1.0,
                'jerk_norm': jerk_norm, 'jerk_rms': jerk_norm / (self.dt * self.dt),
                'eligible': eligible, 'pairs': cos_n, 'stall_s': run * self.dt, 'run': run}

    def _hit(self, kind: str, v: dict):
        """Return whether metric values (one step's floats or arrays) meet `kind`'s condition."""
        p = self.profile
        if kind == 'reversal':
            return (v['reversal_rate'] > p.reversal_max) & (v['eligible'] >= self.min_pairs)
        if kind == 'jerk':
            return v['jerk_norm'] > p.jerk_max
        if kind == 'coherence':
            return (v['momentum_coherence'] < p.coherence_min) & (v['pairs'] >= self.min_pairs)
        return v['run'] >= self.stall_steps   # stall

    def _spectral_check(self, step: int) -> tuple:
        self._next_spectral = step + self.spectral_every
        ratio = spectral_low_ratio(self._recent(), self.velocity_scale, self.dt,
                                   self.profile.spectral_cutoff_hz)
        self._sums['spectral_low_ratio'] += ratio
        self._maxima['spectral_low_ratio'] = max(self._maxima['spectral_low_ratio'], ratio)
        self._n_spectral += 1
        if 'spectral' not in self.profile.primary:
            return ()
        low = ratio < self.profile.spectral_min
        was, self._active['spectral'] = self._active['spectral'], low
        return self._raise('spectral', step) if low and not was else ()

    def _accumulate(self, rows: list) -> None:
        """Add the metric values of steps with a full window to the episode sums and maxima."""
        if not rows:
            return
        self._n_full += len(rows)
        for name in ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'stall_s'):
            values = [v[name] for v in rows]
            self._sums[name] += sum(values)
            self._maxima[name] = max(self._maxima[name], max(values))

    # ---- batch path: a recorded episode at once ------------------------------------------
    def score_episode(self, actions, charges=None, early_steps: int | None = None
                      ) -> EpisodeScores:
        """
        Score a recorded episode from its start exactly as `update` step by step would.

        `actions`: [T, D] numbers or T actions of any form `update` takes. `charges[k]`, if
        given, = (reasons, kinds) charged after step k: `record_interventions(reasons)`, then
        `budget.charge(kind)` for each kind. Returns `episode_summary()` after the last step and
        the summary a copy of the monitor would give after `early_steps` steps (None when the
        episode is shorter); the monitor ends as after stepping and that summary (alarms, costs,
        level, metrics, statistics identical). Every step is scored once, vectorized; the block
        order of stepping is kept where results depend on it (FFT checks, block sums, charges).
        """
        return self.score_episodes([(actions, charges)], early_steps)[0]

    def score_episodes(self, episodes, early_steps: int | None = None) -> list[EpisodeScores]:
        """
        Score recorded episodes one after the other, each as `score_episode` scores it.

        `episodes`: (actions, charges) pairs. Their steps are scored in one vectorized pass
        (the episodes end to end, apart by the gap rows a reset starts from), so that short
        episodes share numpy's per-call cost; the monitor ends as after the last one.
        """
        self.reset_episode()   # the FFT schedule and CUSUMs start from a reset
        parts = self._score_all([self._episode_rows(actions) for actions, _ in episodes],
                                early_steps)
        results, plans = [], {}
        for (_, charges), scored in zip(episodes, parts):
            self.reset_episode()
            n = 0 if scored is None else scored.faults.size
            priced = None if charges is None or not n else self._priced(charges[:n], plans)
            early = None
            if n and early_steps and early_steps <= n:
                self._take(scored, early_steps, priced)
                early = self.episode_summary()
                self.reset_episode()
            if n:
                self._take(scored, n, priced)
                self._resume(scored)
            results.append(EpisodeScores(self.episode_summary(), early))
        return results

    def _episode_rows(self, actions) -> tuple[np.ndarray, np.ndarray]:
        """Return float64 rows [T, D] (NaN rows for gaps) and each row's FAULT_KINDS code."""
        if isinstance(actions, np.ndarray) and actions.ndim == 2 \
                and actions.shape[1] == self.dim and actions.dtype.kind in 'biuf':
            rows = actions.astype(np.float64)
            faults = np.zeros(rows.shape[0], dtype=np.int8)
        else:
            actions = list(actions)
            rows = np.full((len(actions), self.dim), np.nan)
            faults = np.zeros(len(actions), dtype=np.int8)
            for k, action in enumerate(actions):
                try:
                    a = np.asarray(action, dtype=np.float64)
                except (TypeError, ValueError):
                    a = None
                if a is None or a.shape != self._shape:
                    faults[k] = 2
                else:
                    rows[k] = a
        total = _row_sums(rows)   # update's finiteness test, the same additions in the same order
        bad = ~((-HUGE < total) & (total < HUGE))   # (malformed rows are NaN rows already)
        if bad.any():
            faults[bad & (faults == 0)] = 1
            rows[bad] = np.nan
        return rows, faults

    def _score_all(self, episodes: list, early_steps: int | None) -> list:
        """
        Score every step of episodes [(rows, faults)] at once; a `_Scored` each (None if empty).

        The episodes end to end, each after max(keep, window) gap rows: every score, window
        metric and FFT check of a step reads only rows after the gap before its episode, so it
        equals the episode's own from a reset. The CUSUMs, holds and onsets run per episode.
        """
        gap = np.full((max(self._keep, self.window), self.dim), np.nan)
        x = np.concatenate([part for rows, _ in episodes for part in (gap, rows)] or [gap])
        starts = np.cumsum([gap.shape[0] + rows.shape[0] for rows, _ in episodes])
        starts -= [rows.shape[0] for rows, _ in episodes]
        lengths = [[n] + ([early_steps] if early_steps and early_steps <= n else [])
                   for n in (rows.shape[0] for rows, _ in episodes)]
        position = self.scorer.scores_of(x)
        steps = None if self.step_scorer is None else self.step_scorer.scores_of(x)
        windows = features = None
        if self.window_scorer is not None:
            span = self.window_scorer.span
            windows, features = self._window_scores(x, [
                (s - span, s - span + n) for s, ns in zip(starts, lengths) for n in ns])
        metrics, padded = self._metric_values(x)
        checks = [{n: self._spectral_steps(n) for n in ns} for ns in lengths]
        ratios = self._spectral_ratios(x, starts, checks)
        parts = []
        for s, (rows, faults), check, ratio in zip(starts.tolist(), episodes, checks, ratios):
            n = rows.shape[0]
            if not n:
                parts.append(None)
                continue
            scored = _Scored(x[s - self._keep:s + n], faults, position[s:s + n], (),
                             metrics={k: v[s - 3:s - 3 + n] for k, v in metrics.items()},
                             padded=padded[s - 3:s - 3 + self.window - 1 + n],
                             checks=check, ratios=ratio)
            self._score_parts(scored, steps, windows, features, s)
            parts.append(scored)
        return parts

    def _score_parts(self, scored: '_Scored', steps, windows, features, s: int) -> None:
        """Take one episode's share of the batch at row s: CUSUM runs, alarm conditions, onsets."""
        n = scored.faults.size
        self.cusum.reset()
        scored.cusum = self._cusum_run(self.cusum, scored.position, self.exceed_score,
                                       self.cusum_stride)
        if steps is not None:
            scored.steps = steps[s - 2:s - 2 + n]
            scored.hits['step_spike'] = scored.steps > self.step_scorer.spike_score
            self.motion_cusum.reset()
            scored.motion_cusum = self._cusum_run(self.motion_cusum, scored.steps,
                                                  self.step_exceed, self.motion_stride)
        if windows is not None:
            span = self.window_scorer.span
            scored.windows = windows[s - span:s - span + n]
            scored.features = features[s - span:s - span + n]
            scored.hits['window_spike'] = scored.windows > self.window_scorer.spike_score
        for kind in self._armed:
            hits = scored.hits[kind] = self._hit(kind, scored.metrics)
            hits[:self.window - 1] = False    # alarms only once the window is full
        if self.holds is not None:    # a run alarms as it reaches its threshold
            scored.holds = self.holds.episode_runs(scored.x[self._keep:])
            for kind in self.holds.kinds:
                scored.hits[kind] = scored.holds[kind] >= self.holds.thresholds[kind]
        scored.onsets = {kind: _onset_steps(hits).tolist() for kind, hits in scored.hits.items()}

    @staticmethod
    def _cusum_run(cusum: BernoulliCusum, scores: np.ndarray, limit: float,
                   stride: int) -> tuple[list, float]:
        """Feed a CUSUM the exceedances of finite scores at steps t % stride == 0 (alarms, S)."""
        steps = np.flatnonzero(_fed(scores, stride, 0))
        alarms = steps[cusum.alarms_of((scores[steps] > limit).tolist())]
        return alarms.tolist(), cusum.statistic

    def _window_scores(self, x: np.ndarray, prefixes: list) -> tuple[np.ndarray, np.ndarray]:
        """
        Return the scores and features of the windows of rows x[span:], as good as exact.

        Every score compares with the exceedance and spike thresholds as the exact one, and the
        largest in each summarized prefix [start, stop) of windows is exact (`_bounded_scores`);
        NaN where not finite.
        """
        scorer = self.window_scorer
        features = window_features(x, scorer.norm, scorer.span)
        finite = np.flatnonzero(np.isfinite(features).all(axis=1))
        scores = np.full(features.shape[0], np.nan)
        if finite.size:
            scores[finite] = self._bounded_scores(features[finite], finite, prefixes)
        return scores, features

    def _bounded_scores(self, f: np.ndarray, steps: np.ndarray, prefixes: list) -> np.ndarray:
        """
        Return scores of the finite windows `f` (at `steps`), querying the tree for few.

        Every WINDOW_HOPS[0]-th window (and the last) is queried. Between two of them that score
        past the exceedance threshold (far from the demonstrations, where a query costs most and
        consecutive windows mostly share their nearest demonstrated window) the others are left
        to the bounds; elsewhere every WINDOW_HOPS[1]-th window is queried. The queried windows
        bound the others (`_WindowBounds`); those the bounds leave open against a threshold, and
        those whose upper bound exceeds the largest queried score of the shortest summarized
        prefix holding them, are queried last. The others keep their upper bound: the same
        comparisons and maxima as their score.
        """
        scorer, (coarse, fine), n = self.window_scorer, WINDOW_HOPS, f.shape[0]
        bounds = _WindowBounds(scorer, f, (self.window_exceed, scorer.spike_score))
        bounds.query(np.append(np.arange(0, n - 1, coarse), n - 1))
        scorer.hint = int(bounds.nearest[-1])
        rest = np.flatnonzero(~bounds.queried)
        before, after = bounds.anchors(rest)
        ask = rest[np.minimum(bounds.upper[before], bounds.upper[after]) <= self.window_exceed]
        bounds.query(ask[ask % fine == 0])
        rest = np.flatnonzero(~bounds.queried)
        ask = bounds.bound(rest)
        known = np.where(bounds.queried, bounds.upper, -np.inf)
        cap = np.full(n, np.inf)   # the largest queried score of the shortest prefix with it
        for start, stop in sorted(prefixes, key=lambda prefix: prefix[0] - prefix[1]):
            low, high = np.searchsorted(steps, (start, stop)).tolist()
            cap[low:high] = known[low:high].max(initial=-np.inf)
        bounds.query(rest[ask | (bounds.upper[rest] * (1.0 + 1e-9) > cap[rest])])
        return bounds.upper

    def _metric_values(self, x: np.ndarray) -> tuple[dict, np.ndarray]:
        """Return the window metrics of rows x[3:], their contributions after window - 1 zeros."""
        contributions, still = step_contributions(x[:3], x[3:], self.inv_eps)
        padded = np.concatenate([np.zeros((self.window - 1, 6)), contributions])
        values = window_values(window_sums(padded, self.window), self.profile.deadband, self.dt)
        values['run'] = run_lengths(still)
        values['stall_s'] = values['run'] * self.dt
        return values, padded

    def _take(self, scored: '_Scored', n: int, priced: '_Charges | None') -> None:
        """
        Leave what `episode_summary()` reports as stepping the first n steps would.

        From the whole episode's scores (they depend on the past only) and its `_priced`
        charges (None: none given). `_resume` sets the rest that stepping on reads.
        """
        raised = self._fault_onsets(scored.faults[:n])
        stats, last = _score_stats(scored.position[:n], self.exceed_score)
        self._scored, self._exceeded = stats[:2]
        self._last_score = self._last_score if last is None else last
        raised += self._keyed(scored.cusum[0], 'cusum', n)
        if scored.steps is not None:
            self._step_stats, last = _score_stats(scored.steps[:n], self.step_exceed)
            self._last_step_score = self._last_step_score if last is None else last
            raised += self._keyed(scored.motion_cusum[0], 'motion_cusum', n)
        if scored.windows is not None:
            self._window_stats, _ = _score_stats(scored.windows[:n], self.window_exceed)
        flags = {kind: hits[:n] for kind, hits in scored.hits.items()}
        for kind, onsets in scored.onsets.items():
            raised += self._keyed(onsets, kind, n,
                                  HOLD_RANK if kind in scored.holds else RANKS[kind])
        if self.holds is not None:
            self.holds.resume({kind: runs[:n] for kind, runs in scored.holds.items()},
                              scored.x[self._keep + n - 1])
        self._take_metrics(scored, n)
        spectral, flags['spectral'] = self._take_spectral(scored, n)
        self._replay(sorted(raised + spectral), priced, scored.faults[:n], flags)
        self.step_count = n

    def _resume(self, scored: '_Scored') -> None:
        """
        After `_take` of the whole episode: the rest that stepping on (and diagnostics) read.

        The CUSUM statistics, the last step's metrics, the streaming window, the last finite
        window's features and the history rows.
        """
        n = scored.faults.size
        self.cusum.statistic = scored.cusum[1]
        if scored.steps is not None:
            self.motion_cusum.statistic = scored.motion_cusum[1]
        self._values = {name: column[-1].item() for name, column in scored.metrics.items()}
        self._stall = self._values['run']
        self._steps.resume(scored.x[self._keep + n - 3:].tolist(), scored.padded[n - 1:])
        if scored.windows is not None:
            finite = np.flatnonzero(scored.windows == scored.windows)
            if finite.size:
                self._last_window = [scored.features[finite[-1]].tolist(), None]
        self._hist[:self._keep] = scored.x[n:]

    def _keyed(self, steps: list, kind: str, n: int, rank: int | None = None) -> list:
        """
        Return alarms of `kind` at the ascending `steps` below n, keyed by the flush raising each.

        (Plain ints: an episode has a few. Its summary's flush raises those of the block of
        n steps, if they do not fill it.)
        """
        rank = RANKS[kind] if rank is None else rank
        keyed, block = [], self.block
        for step in steps[:bisect_left(steps, n)]:
            end = (step // block + 1) * block - 1
            keyed.append((8 * end + FLUSH if end < n else 8 * (n - 1) + LAST_FLUSH, rank, step,
                          kind))
        return keyed

    def _fault_onsets(self, faults: np.ndarray) -> list:
        """Return the alarms of non-finite and malformed rows: one per kind and run of them."""
        raised, active, previous = [], set(), -2
        for t in np.flatnonzero(faults).tolist():
            if t != previous + 1:
                active.clear()
            kind = FAULT_KINDS[faults[t]]
            if kind not in active:
                active.add(kind)
                raised.append((8 * t + FAULT, 0, t, kind))
            previous = t
        self._bad_steps = int(np.count_nonzero(faults))
        if previous == faults.size - 1:
            for kind in active:
                self._active[kind] = True
        return raised

    def _take_metrics(self, scored: '_Scored', n: int) -> None:
        """Set the metrics' episode sums and maxima over the first n steps."""
        first = self.window - 1
        if n <= first:
            return
        self._n_full = n - first
        names = ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'stall_s')
        if self.block == 1:   # a block's sum is then its value: accumulated one by one, in order
            table = np.empty((len(names), n - first + 1))
            table[:, 0] = [self._sums[name] for name in names]
            for row, name in zip(table[:, 1:], names):
                row[:] = scored.metrics[name][first:n]
            totals = np.add.accumulate(table, axis=1)[:, -1].tolist()
            largest = table[:, 1:].max(axis=1).tolist()
            for name, total, peak in zip(names, totals, largest):
                self._sums[name] = total
                self._maxima[name] = max(self._maxima[name], peak)
            return
        cuts = [0, *range((first // self.block + 1) * self.block - first, n - first,
                          self.block), n - first]
        for name in names:
            column = scored.metrics[name][first:n].tolist()
            total = self._sums[name]
            for start, stop in zip(cuts, cuts[1:]):
                total += sum(column[start:stop])
            self._sums[name] = total
            self._maxima[name] = max(self._maxima[name], max(column))

    def _take_spectral(self, scored: '_Scored', n: int) -> tuple[list, np.ndarray]:
        """Run the FFT metric at the flushes where stepping runs it: sums, alarms, condition."""
        p, raised = self.profile, []
        low = np.zeros(n, dtype=bool)
        checks = scored.checks[n]
        for step in checks:
            ratio = scored.ratios[step]
            self._sums['spectral_low_ratio'] += ratio
            self._maxima['spectral_low_ratio'] = max(self._maxima['spectral_low_ratio'], ratio)
            if 'spectral' in p.primary:
                now = ratio < p.spectral_min
                if now and not low[step - 1]:
                    raised += self._keyed([step], 'spectral', n)
                low[step:] = now
        self._n_spectral = len(checks)
        if checks:
            self._next_spectral = checks[-1] + self.spectral_every
        return raised, low

    def _spectral_steps(self, n: int) -> list[int]:
        """Return the steps at which stepping n steps (and a summary) runs the FFT metric."""
        if self.block == 1:
            return list(range(self._next_spectral, n, self.spectral_every))
        checks, step = [], self._flush_after(self._next_spectral, n)
        while step is not None:
            checks.append(step)
            step = self._flush_after(step + self.spectral_every, n)
        return checks

    def _spectral_ratios(self, x: np.ndarray, starts: np.ndarray, checks: list) -> list[dict]:
        """Return the FFT metric at the check steps of the episodes starting at rows `starts`."""
        todo = [sorted(set().union(*check.values())) for check in checks]
        ends = np.array([s + step for s, steps in zip(starts.tolist(), todo) for step in steps],
                        dtype=np.int64)
        if not ends.size:
            return [{} for _ in todo]
        windows = np.lib.stride_tricks.sliding_window_view(x, self.spectral_window + 1, axis=0)
        ratios = spectral_low_ratios(windows[ends - self.spectral_window].transpose(0, 2, 1),
                                     self.velocity_scale, self.dt,
                                     self.profile.spectral_cutoff_hz).tolist()
        out, k = [], 0
        for steps in todo:
            out.append(dict(zip(steps, ratios[k:k + len(steps)])))
            k += len(steps)
        return out

    def _flush_after(self, step: int, n: int) -> int | None:
        """Return the last step of the flush that takes `step` (None past the episode)."""
        if step >= n:
            return None
        return min((step // self.block + 1) * self.block, n) - 1

    def _priced(self, charges, plans: dict) -> '_Charges':
        """
        Return the episode's charges as (kind, cost) pairs in the order stepping adds them.

        A step's (reasons, kinds) adds 'intervention.' + each distinct reason in order
        (`record_interventions`), then each kind (`budget.charge`). Most steps charge one of a
        few tuples, priced once each in `plans` (sets and lists are priced step by step).
        """
        keys, starts, kinds, pairs = [], [], [], []
        for t, charge in enumerate(charges):
            try:
                plan = plans[charge]
            except KeyError:
                plan = self._plan(*charge)
                if type(charge[0]) is tuple and type(charge[1]) is tuple:
                    plans[charge] = plan
            except TypeError:   # unhashable
                plan = self._plan(*charge)
            if plan[0]:
                keys.append(8 * t + INTERVENTIONS)
                starts.append(len(pairs))
                kinds.append(len(pairs) + plan[1])
                pairs.extend(plan[0])
        starts.append(len(pairs))
        return _Charges(keys, starts, kinds, pairs)

    def _plan(self, reasons, kinds) -> tuple[tuple, int]:
        """Return the (kind, cost) pairs a step's (reasons, kinds) charge and where kinds start."""
        interventions = self._prices(['intervention.' + reason
                                      for reason in dict.fromkeys(reasons)])
        return interventions + self._prices(kinds), len(interventions)

    def _prices(self, kinds) -> tuple:
        """Return (kind, cost) of each of `kinds` that costs anything, in order."""
        cost_of = self.budget.model.cost_of
        return tuple((kind, cost) for kind, cost in ((k, cost_of(k)) for k in kinds) if cost)

    def _replay(self, raised: list, priced: '_Charges | None', faults: np.ndarray, flags: dict
                ) -> None:
        """Charge the alarms and the `_priced` charges of the steps in stepping's order; level."""
        n = faults.size
        last = max(raised[-1][0] if raised else 0,   # the last refresh of the level
                   8 * (n - 1) + (FLUSHED if n % self.block == 0 else LAST_FLUSHED),
                   8 * (n - 1) + INTERVENTIONS if priced is not None else 0)
        charges = _NO_CHARGES if priced is None else priced
        end = bisect_left(charges.keys, 8 * n)   # the charges of the first n steps
        done = 0   # pairs charged
        for key, _, step, kind in raised:   # each alarm after the charges keyed before it
            before = charges.starts[bisect_left(charges.keys, key, 0, end)]
            self._spend(charges.pairs[done:before])
            done = before
            self._record(Alarm(kind, step), key % 8 == LAST_FLUSH)
        # the level is refreshed last before the kinds of the last step (COSTS) or after them
        late = charges.starts[end]
        if end and charges.keys[end - 1] - INTERVENTIONS + COSTS > last:
            late = charges.kinds[end - 1]
        self._spend(charges.pairs[done:late])
        total = self.budget.total
        self._spend(charges.pairs[late:charges.starts[end]])
        step, phase = divmod(last, 8)
        flushed = step if phase >= LAST_FLUSH else (step + 1) // self.block * self.block - 1
        active = faults[step] or flushed >= 0 and any(f[flushed] for f in flags.values())
        for kind, f in flags.items():
            self._active[kind] = bool(f[-1])
        self._level = max(self.budget.model.level(total), WARN if active else OK)

    def _record(self, alarm: Alarm, unreported: bool) -> None:
        """Keep and charge one alarm as `_raise` does (those of the closing flush unreported)."""
        if len(self.alarms) < MAX_ALARMS_KEPT:
            self.alarms.append(alarm)
        self.alarm_counts[alarm.kind] = self.alarm_counts.get(alarm.kind, 0) + 1
        self.budget.charge('alarm.' + alarm.kind)
        if unreported:
            self._unreported.append(alarm)

    def _spend(self, priced) -> None:
        """Add (kind, cost) pairs to the budget one at a time, as `budget.charge` adds each."""
        budget = self.budget
        for kind, cost in priced:
            budget.total += cost
            budget.by_kind[kind] = budget.by_kind.get(kind, 0.0) + cost

    # ---- reporting -----------------------------------------------------------------------
    def window_metrics(self) -> dict:
        """Return the current window metrics (flushes the pending block; computes the FFT now)."""
        self._unreported.extend(self._flush())
        values = self._values or {}
        spectral = spectral_low_ratio(self._recent(), self.velocity_scale, self.dt,
                                      self.profile.spectral_cutoff_hz)
        score = self._last_score
        return {
            'steps': self.step_count,
            'window_full': self.step_count >= self.window,
            'reversal_rate': float(values.get('reversal_rate', 0.0)),
            'jerk_rms': float(values.get('jerk_rms', 0.0)),
            'momentum_coherence': float(values.get('momentum_coherence', 1.0)),
            'spectral_low_ratio': spectral,
            'stall_s': float(values.get('stall_s', 0.0)),
            'score': score,
            'p_value': float(self.scorer.p_value(score)) if np.isfinite(score) else float('nan'),
            'cusum_statistic': self.cusum.statistic,
            'cusum_threshold': self.cusum.design.h,
            'cusum_stride_steps': self.cusum_stride,
            **_measured_keys('cusum', self.position_run_length),
            'episode_cost': self.budget.total,
            'cost_budget': self.budget.model.budget,
            'nonfinite_steps': self._bad_steps,
            'alarms': sum(self.alarm_counts.values()),
            **self._motion_metrics(),
            **self._hold_metrics(),
        }

    def _hold_metrics(self) -> dict:
        """Return the freeze and stall runs and thresholds in steps (none without holds)."""
        if self.holds is None:
            return {}
        return {f'{kind}_{what}_steps': value for kind in ('freeze', 'stall')
                for what, value in (('run', self.holds.runs[kind]),
                                    ('threshold', self.holds.thresholds[kind]))}

    def _motion_metrics(self) -> dict:
        """Diagnostic values of the step score (none when motion calibration is absent)."""
        if self.step_scorer is None:
            return {}
        values = {'step_score': self._last_step_score,
                  'step_p_value': _p_value(self.step_scorer, self._last_step_score),
                  'motion_cusum_statistic': self.motion_cusum.statistic,
                  'motion_cusum_threshold': self.motion_cusum.design.h,
                  'motion_cusum_stride_steps': self.motion_stride}
        values.update(_measured_keys('motion_cusum', self.run_length))
        if self.window_scorer is not None:
            score = self._window_score()
            values['window_score'] = score
            values['window_p_value'] = _p_value(self.window_scorer, score)
        if self.seam_scorer is not None:
            values['seam_score'] = self._seam[0]
            values['seam_p_value'] = _p_value(self.seam_scorer, self._seam[0])
        return values

    def _window_score(self) -> float:
        """Return the last finite window score (its tree query runs once, when first read)."""
        features, score = self._last_window
        if score is None:
            score = self._last_window[1] = self.window_scorer.score_features(features)
        return score

    def status(self) -> tuple[int, str, list[tuple[str, str]]]:
        """Return the level (0 OK, 1 WARN, 2 ERROR), message and key/values for /diagnostics."""
        metrics = self.window_metrics()
        level = self._level
        active = [k for k, on in self._active.items() if on]
        if level == ERROR:
            message = f'cost {self.budget.total:.3g} over budget {self.budget.model.budget:.3g}'
        elif active:
            message = 'active: ' + ', '.join(active)
        elif level == WARN:
            message = f'cost {self.budget.total:.3g} near budget {self.budget.model.budget:.3g}'
        else:
            message = 'ok'
        values = [(key, f'{value:.6g}' if isinstance(value, float) else str(value))
                  for key, value in metrics.items()]
        values.append(('level', LEVEL_NAMES[level]))
        values.append(('profile', self.profile.name))
        values.append(('last_alarm', f'{self.alarms[-1].kind}@{self.alarms[-1].step}'
                       if self.alarms else 'none'))
        return level, message, values

    def episode_summary(self) -> dict:
        """Per-episode figures: length-normalized metric means and maxima, alarms, cost, level."""
        self._unreported.extend(self._flush())
        n_full, n_spec = max(self._n_full, 1), max(self._n_spectral, 1)
        means = {name: self._sums[name] / (n_spec if name == 'spectral_low_ratio' else n_full)
                 for name in METRIC_NAMES}
        first_by_kind: dict[str, int] = {}
        for alarm in self.alarms:
            first_by_kind.setdefault(alarm.kind, alarm.step)
        return {
            'n_steps': self.step_count,
            'nonfinite_steps': self._bad_steps,
            'exceedance_rate': self._exceeded / self._scored if self._scored else 0.0,
            'metric_mean': means,
            'metric_max': dict(self._maxima),
            'alarms': [{'kind': a.kind, 'step': a.step} for a in self.alarms],
            'alarm_counts': dict(self.alarm_counts),
            'first_alarm_step': self.alarms[0].step if self.alarms else None,
            'first_alarm_by_kind': first_by_kind,
            'cost': self.budget.total,
            'cost_by_kind': dict(self.budget.by_kind),
            'level': LEVEL_NAMES[self._level],
            'step_exceedance_rate': (self._step_stats[1] / self._step_stats[0]
                                     if self._step_stats[0] else 0.0),
            'step_score_max': self._step_stats[2],
            'window_exceedance_rate': (self._window_stats[1] / self._window_stats[0]
                                       if self._window_stats[0] else 0.0),
            'window_score_max': self._window_stats[2],
            'seam_score_max': self._seam[1],
            **({} if self.holds is None else
               {f'{kind}_longest_run_steps': n for kind, n in self.holds.longest.items()}),
        }


class AlarmScan:
    """
    The alarms `ActionMonitor.update` would raise in an episode, found a chunk at a time.

    For a stop on the first alarm (the drill's `+stop`): the actions of an episode are given in
    chunks from its start, before they are stepped; `scan` returns the alarms each update
    raises, for the updates whose blocks the known actions complete, exactly as stepping (the
    scores vectorized over the chunk with the rows before it as context; the CUSUMs, alarm
    conditions, stall run and FFT schedule carried over). The monitor only lends its settings
    and scorers; no statistics or costs are kept (`score_episode` gives them afterwards).
    """

    def __init__(self, monitor: ActionMonitor):
        self.monitor = m = monitor
        self.context = max(m._keep, m.window + 3)   # rows before a chunk that its scores read
        self.rows = np.full((self.context, m.dim), np.nan)   # gaps before the episode
        self.step = 0
        self.cusum = BernoulliCusum(m.cusum.design)
        self.motion_cusum = None if m.step_scorer is None else BernoulliCusum(
            m.motion_cusum.design)
        self.held: dict = {}       # kind -> its alarm condition held at the last step
        self.bad: set = set()      # fault kinds of the run of bad rows the last row ends
        self.stall = 0
        self.next_spectral = m.spectral_window - 1
        self.low = False
        self.pending: list = []    # alarms of an update beyond the known rows
        self.holds = None if m.holds is None else copy.deepcopy(m.holds)
        if self.holds is not None:
            self.holds.reset()

    def scan(self, actions) -> dict:
        """Take the next actions; return {step: alarms its update raises} for decided steps."""
        m, c, t0 = self.monitor, self.context, self.step
        rows, faults = m._episode_rows(actions)
        n = rows.shape[0]
        if not n:
            return {}
        x = np.concatenate([self.rows, rows])
        raised = self.pending + self._faults(faults, t0)
        raised += self._cusum(self.cusum, m.scorer.scores_of(rows), m.exceed_score,
                              m.cusum_stride, 'cusum')
        if m.step_scorer is not None:
            steps = m.step_scorer.scores_of(x[c - 2:])
            raised += self._onsets(steps > m.step_scorer.spike_score, 'step_spike')
            raised += self._cusum(self.motion_cusum, steps, m.step_exceed, m.motion_stride,
                                  'motion_cusum')
        if m.window_scorer is not None:
            raised += self._onsets(self._window_spikes(x), 'window_spike')
        raised += self._metrics(x, n) + self._spectral(x, n)
        if self.holds is not None:
            for kind, step in self.holds.block(rows, t0):
                raised += self._keyed([step - t0], kind, HOLD_RANK)
        self.rows, self.step = x[-c:], t0 + n
        raised.sort()
        decided = 8 * self.step
        self.pending = [alarm for alarm in raised if alarm[0] >= decided]
        out: dict = {}
        for key, _, step, kind in raised[:len(raised) - len(self.pending)]:
            out.setdefault(key // 8, []).append(Alarm(kind, step))
        return {step: tuple(alarms) for step, alarms in out.items()}

    def _window_spikes(self, x: np.ndarray) -> np.ndarray:
        """
        Return whether each window of the chunk scores past the spike threshold.

        A window within the threshold of the demonstrated window nearest to the last one
        queried is no spike (its score is at most that distance); only the others are queried.
        """
        scorer = self.monitor.window_scorer
        features = window_features(x[self.context - scorer.span:], scorer.norm, scorer.span)
        near = np.sqrt(((features - scorer.points[scorer.hint]) ** 2).sum(axis=1))
        ask = np.flatnonzero(np.isfinite(features).all(axis=1)
                             & ~(near * (1.0 + 1e-12) <= scorer.spike_score))
        spikes = np.zeros(features.shape[0], dtype=bool)
        if ask.size:
            distances, nearest = scorer.tree.query(features[ask])
            spikes[ask] = distances > scorer.spike_score
            scorer.hint = int(nearest[-1])
        return spikes

    def _keyed(self, steps, kind: str, rank: int | None = None) -> list:
        """Return alarms of `kind` at chunk `steps` keyed by the flush of their block."""
        if not len(steps):
            return []
        block = self.monitor.block
        rank = RANKS[kind] if rank is None else rank
        steps = np.asarray(steps, dtype=np.int64) + self.step
        return [(8 * ((step // block + 1) * block - 1) + FLUSH, rank, step, kind)
                for step in steps.tolist()]

    def _faults(self, faults: np.ndarray, t0: int) -> list:
        """Return the alarms of bad rows (one per kind and run of them, runs span chunks)."""
        raised, active = [], self.bad
        previous = t0 - 1 if active else -2
        for t in (np.flatnonzero(faults) + t0).tolist():
            if t != previous + 1:
                active = set()
            kind = FAULT_KINDS[faults[t - t0]]
            if kind not in active:
                active.add(kind)
                raised.append((8 * t + FAULT, 0, t, kind))
            previous = t
        self.bad = active if previous == t0 + faults.size - 1 else set()
        return raised

    def _cusum(self, cusum: BernoulliCusum, scores: np.ndarray, limit: float, stride: int,
               kind: str) -> list:
        """Feed a CUSUM the chunk's finite scores at steps t % stride == 0; return its alarms."""
        steps = np.flatnonzero(_fed(scores, stride, self.step))
        return self._keyed(steps[cusum.alarms_of((scores[steps] > limit).tolist())], kind)

    def _onsets(self, hits: np.ndarray, kind: str) -> list:
        """Return the onsets of `kind` among the chunk's hits (a run may span chunks)."""
        held, self.held[kind] = self.held.get(kind, False), bool(hits[-1])
        if not hits.any():
            return []
        return self._keyed(np.flatnonzero(hits & ~np.concatenate([[held], hits[:-1]])), kind)

    def _metrics(self, x: np.ndarray, n: int) -> list:
        """Return the onsets of the armed metric alarms over the chunk (window full)."""
        m, c, w = self.monitor, self.context, self.monitor.window
        contributions, still = step_contributions(x[c - w - 2:c - w + 1], x[c - w + 1:],
                                                  m.inv_eps)
        values = window_values(window_sums(contributions, w), m.profile.deadband, m.dt)
        if 'stall' in m._armed:     # (calibrated holds replace it)
            values['run'] = run_lengths(still[w - 1:], self.stall)
            self.stall = int(values['run'][-1])
        raised = []
        for kind in m._armed:
            hits = m._hit(kind, values)
            hits[:max(0, w - 1 - self.step)] = False
            raised += self._onsets(hits, kind)
        return raised

    def _spectral(self, x: np.ndarray, n: int) -> list:
        """Run the FFT metric at the flushes of the chunk where stepping runs it; its onsets."""
        m, checks = self.monitor, []
        end = (self.next_spectral // m.block + 1) * m.block - 1   # the flush that takes it
        while end < self.step + n:
            checks.append(end)
            self.next_spectral = end + m.spectral_every
            end = (self.next_spectral // m.block + 1) * m.block - 1
        if not checks or 'spectral' not in m.profile.primary:
            return []
        span = m.spectral_window + 1
        windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=0)
        starts = np.asarray(checks) - self.step + self.context - m.spectral_window
        ratios = spectral_low_ratios(windows[starts].transpose(0, 2, 1), m.velocity_scale,
                                     m.dt, m.profile.spectral_cutoff_hz)
        raised = []
        for end, ratio in zip(checks, ratios.tolist()):
            low = ratio < m.profile.spectral_min
            if low and not self.low:
                raised += self._keyed([end - self.step], 'spectral')
            self.low = low
        return raised


def alarm_reason(alarms) -> str:
    """Return why an alarm stop is asserted: 'alarm kind@step, ...'."""
    return 'alarm ' + ', '.join(f'{a.kind}@{a.step}' for a in alarms)


class _Charges(NamedTuple):
    """An episode's charges in stepping's order (`ActionMonitor._priced`)."""

    keys: list     # 8 t + INTERVENTIONS of each step t that charges anything, ascending
    starts: list   # where the (kind, cost) pairs of each such step start in `pairs`; their end
    kinds: list    # where the pairs of its kinds (after its interventions) start in `pairs`
    pairs: list    # (kind, cost) pairs of the steps in order: interventions, then kinds


_NO_CHARGES = _Charges([], [0], [], [])


class _WindowBounds:
    """
    Window scores between bounds, exact where queried (`ActionMonitor._bounded_scores`).

    The triangle inequality through a queried window q bounds a window w above by the distance
    of w to the demonstrated window nearest to q, below by the score of q less the distance of w
    to q, with a 1e-9 relative slack for the rounding of the two distance computations.
    """

    def __init__(self, scorer: WindowScorer, f: np.ndarray, limits: tuple):
        self.scorer, self.f, self.limits, n = scorer, f, limits, f.shape[0]
        self.upper = np.full(n, np.inf)    # upper bounds; the scores where queried
        self.nearest = np.zeros(n, dtype=np.intp)   # of the queried windows
        self.queried = np.zeros(n, dtype=bool)

    def query(self, windows: np.ndarray) -> None:
        """Score `windows` exactly (a tree query)."""
        if windows.size:
            self.upper[windows], self.nearest[windows] = self.scorer.tree.query(
                np.take(self.f, windows, axis=0))
            self.queried[windows] = True

    def anchors(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the queried windows before and after each of the unqueried `windows`."""
        anchors = np.flatnonzero(self.queried)   # the first and the last window among them
        after = np.searchsorted(anchors, windows)
        return anchors[after - 1], anchors[after]

    def bound(self, windows: np.ndarray) -> np.ndarray:
        """
        Bound unqueried `windows` through the queried ones on either side (upper bounds kept).

        Returns which of them the bounds leave open against a limit (on neither side of it).
        """
        # (np.take: rows of a 2-D array several times faster than fancy indexing)
        f = np.take(self.f, windows, axis=0)
        upper, lower = np.inf, -np.inf
        for q in self.anchors(windows):
            nearest = np.take(self.scorer.points, self.nearest[q], axis=0)
            upper = np.minimum(upper, _distances(f, nearest))
            lower = np.maximum(lower, self.upper[q] * (1.0 - 1e-9)
                               - _distances(f, np.take(self.f, q, axis=0)) * (1.0 + 1e-9))
        self.upper[windows] = upper
        loose, placed = upper * (1.0 + 1e-9), np.ones(windows.size, dtype=bool)
        for limit in self.limits:
            placed &= (loose <= limit) | (lower > limit)
        return ~placed


@dataclass
class _Scored:
    """Every step of a recorded episode scored once (score_episode takes any first n steps)."""

    x: np.ndarray                 # the episode's rows after the reset's gap rows
    faults: np.ndarray            # FAULT_KINDS code per step
    position: np.ndarray          # position scores
    cusum: tuple                  # (alarm steps [list], statistic after the last step)
    motion_cusum: tuple = ((), 0.0)
    steps: np.ndarray | None = None      # step scores (None without motion calibration)
    windows: np.ndarray | None = None    # window scores (bounded: _bounded_scores), features
    features: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)   # window metrics per step
    padded: np.ndarray | None = None     # per-step contributions after window - 1 zero rows
    hits: dict = field(default_factory=dict)      # alarm condition per kind and step
    onsets: dict = field(default_factory=dict)    # steps [list] where each kind's run starts
    checks: dict = field(default_factory=dict)    # episode length -> steps of its FFT checks
    ratios: dict = field(default_factory=dict)    # FFT metric by step
    holds: dict = field(default_factory=dict)     # core.holds run per kind and step


def _score_stats(scores: np.ndarray, limit: float) -> tuple[list, float | None]:
    """Return [count, exceedances of limit, largest] of the finite scores and the last one."""
    kept = scores[scores == scores]
    if not kept.size:
        return [0, 0, 0.0], None
    stats = [int(kept.size), int(np.count_nonzero(kept > limit)), max(0.0, float(kept.max()))]
    return stats, float(kept[-1])


def _measured_keys(prefix: str, measured) -> dict:
    """Diagnostic values of a measured CUSUM threshold beside the i.i.d. one (none if absent)."""
    if measured is None:
        return {}
    return {f'{prefix}_threshold_iid': measured.h_iid,
            f'{prefix}_target_per_hour': measured.target_per_hour,
            f'{prefix}_measured_per_hour': measured.measured_per_hour,
            f'{prefix}_measured_per_hour_iid': measured.measured_iid_per_hour,
            f'{prefix}_measured_hours': measured.hours}


def _p_value(scorer: ConformalScorer, score: float) -> float:
    """Return the conformal p-value of a score, NaN when the score is not finite."""
    return float(scorer.p_value(score)) if np.isfinite(score) else float('nan')


def episode_metrics(actions: np.ndarray, calibration: CalibrationData, dt: float,
                    profile: MonitorProfile | str = 'generic') -> dict:
    """Batch: per-step window metrics of a whole episode [T, D] (same definitions as streaming)."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    actions = np.asarray(actions, dtype=np.float64)
    vs = np.asarray(calibration.velocity_scale, dtype=np.float64)
    inv_eps = 1.0 / (p.deadband * vs * dt)
    window = max(4, round(p.window_s / dt))
    spectral_window = max(8, round(p.spectral_window_s / dt))
    dim = actions.shape[1]
    contrib, still = step_contributions(np.full((3, dim), np.nan), actions, inv_eps)
    sums = window_sums(np.concatenate([np.zeros((window - 1, 6)), contrib]), window)
    values = window_values(sums, p.deadband, dt)
    values['stall_s'] = run_lengths(still) * dt
    padded = np.concatenate([np.full((spectral_window, dim), np.nan), actions])
    windows = np.lib.stride_tricks.sliding_window_view(padded, spectral_window + 1, axis=0)
    values['spectral_low_ratio'] = spectral_low_ratios(windows.transpose(0, 2, 1), vs, dt,
                                                       p.spectral_cutoff_hz)
    scorer = ConformalScorer(calibration)
    values['score'] = scorer.scores_of(actions)
    values['p_value'] = np.where(np.isfinite(values['score']), scorer.p_value(values['score']),
                                 np.nan)
    return values


STOP_ON = ('none', 'alarm', 'budget')
CLEAR_CUSUM_FRACTION = 0.5  # the stop clears only with the CUSUM at or below this share of h


class SafetyStop:
    """
    When the monitor asserts the safety stop (/vla/safety_stop true) and when it withdraws it.

    stop_on 'alarm': asserted again at every alarm onset. Its condition has *cleared* when, for
    `hold_off_steps` consecutive monitored steps, no alarm started and no alarm condition held
    (`ActionMonitor.active_alarms()` empty), and the CUSUM statistic is at most
    CLEAR_CUSUM_FRACTION of its threshold. stop_on 'budget': asserted at the first budget overrun
    of an episode, until the next episode. stop_on 'none': never asserted (a stop still asserted
    when the mode is switched to 'none' is withdrawn at the next step). The filter refuses its
    `~/reset` while the stop is asserted.
    """

    def __init__(self, mode: str, hold_off_steps: int, asserted: str = ''):
        self.mode = check_stop_on(mode)
        if not hold_off_steps >= 1:
            raise InputError(f'stop hold-off must be at least one step, got {hold_off_steps!r}')
        self.hold_off_steps = int(hold_off_steps)
        self.reason = asserted     # why the stop is asserted ('' = not asserted)
        self._quiet = 0            # consecutive steps without any alarm condition

    @property
    def asserted(self) -> bool:
        return bool(self.reason)

    def after_step(self, monitor: 'ActionMonitor', step: StepStatus) -> bool | None:
        """
        Decide what to publish after a step.

        True: publish an assertion now; False: publish the withdrawal now; None: no change.
        """
        if step.alarms or monitor.active_alarms():
            self._quiet = 0
        else:
            self._quiet += 1
        if self.mode == 'alarm' and step.alarms:
            self.reason = alarm_reason(step.alarms)
            return True
        if self.after_charge(monitor):
            return True
        if self.asserted and (self.mode == 'none' or self.mode == 'alarm'
                              and self._cleared(monitor)):
            self.reason = ''
            return False
        return None

    def after_charge(self, monitor: 'ActionMonitor') -> bool | None:
        """After costs were charged: True when a first budget overrun asserts the stop."""
        if self.mode == 'budget' and not self.asserted and monitor.budget.over_budget:
            self.reason = f'cost {monitor.budget.total:.3g} over budget'
            return True
        return None

    def on_episode(self) -> bool | None:
        """Handle a new episode: a budget stop is withdrawn (False); an alarm stop needs quiet."""
        if self.asserted and self.mode == 'budget':
            self.reason = ''
            return False
        return None

    def _cleared(self, monitor: 'ActionMonitor') -> bool:
        cusum = monitor.cusum
        return (self._quiet >= self.hold_off_steps
                and cusum.statistic <= CLEAR_CUSUM_FRACTION * cusum.design.h)


def check_stop_on(mode) -> str:
    """Return the stop_on value if known, else raise InputError."""
    if mode not in STOP_ON:
        raise InputError(f'stop_on must be one of {", ".join(STOP_ON)}, got {mode!r}')
    return mode
