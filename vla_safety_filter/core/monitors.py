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
Alarms use jerk_norm = jerk_rms * dt^2 (dimensionless). A non-finite or wrong-length action is an
alarm at once and becomes a gap: every contribution that would use it is zero and counted out,
so no NaN reaches a sum. Metrics advance in blocks of profile.block_s (vectorized, alarm steps
exact); the same code computes a whole episode at once (`episode_metrics`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from .costs import CostBudget, CostModel
from .errors import InputError
from .params import CalibrationData
from .profiles import get_profile, MonitorProfile
from .sequential import (BernoulliCusum, ConformalScorer, design_cusum, design_with_threshold,
                         MotionCalibration, SeamScorer, StepScorer)
from .windows import WindowScorer
from ..names import ERROR, LEVEL_NAMES, OK, WARN

# columns of the per-step contribution table
FLIPS, ELIGIBLE, COS_SUM, COS_N, JERK_SQ, JERK_N = range(6)
METRIC_NAMES = ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'spectral_low_ratio', 'stall_s')
MAX_ALARMS_KEPT = 1000
HUGE = 1e15  # an action whose |sum| reaches this counts as non-finite (keeps squares finite)


class Alarm(NamedTuple):
    """One alarm onset: its kind and the step that raised it."""

    kind: str
    step: int


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
    u = np.where(valid[:, None], np.diff(np.where(finite[:, None], x, 0.0), axis=0), 0.0) * inv_eps
    return u, valid


def step_contributions(context: np.ndarray, rows: np.ndarray, inv_eps: np.ndarray):
    """Per-step window contributions [B, 6] and 'still' flags [B] for rows given 3 context rows."""
    u, valid = _history(context, rows, inv_eps)
    ut, u1, u2 = u[2:], u[1:-1], u[:-2]
    sign = np.trunc(np.clip(u, -1.0, 1.0))            # +-1 beyond the deadband, 0 inside
    pair = sign[2:] * sign[1:-1]
    moving = np.count_nonzero(sign, axis=1) > 0
    out = np.zeros((rows.shape[0], 6))
    out[:, ELIGIBLE] = np.count_nonzero(pair, axis=1)
    out[:, FLIPS] = np.count_nonzero(pair < 0, axis=1)
    both = moving[2:] & moving[1:-1]
    norm_sq = (u * u).sum(axis=1)
    norms = np.sqrt(norm_sq[2:] * norm_sq[1:-1])
    out[:, COS_SUM] = np.where(both, (ut * u1).sum(axis=1) / np.where(both, norms, 1.0), 0.0)
    out[:, COS_N] = both
    jerk_ok = valid[2:] & valid[1:-1] & valid[:-2]
    third = ut - 2.0 * u1 + u2
    out[:, JERK_SQ] = np.where(jerk_ok, (third * third).sum(axis=1), 0.0)
    out[:, JERK_N] = jerk_ok * rows.shape[1]
    still = valid[2:] & ~moving[2:]
    return out, still


def window_sums(table: np.ndarray, window: int) -> np.ndarray:
    """Column sums of every run of `window` consecutive rows (summed afresh: no cancellation)."""
    return np.lib.stride_tricks.sliding_window_view(table, window, axis=0).sum(axis=-1)


def stall_runs(still: np.ndarray, carry: int) -> np.ndarray:
    """Length of the current run of 'still' steps at each step, continuing a run of `carry`."""
    idx = np.arange(still.size)
    last_break = np.maximum.accumulate(np.where(still, -1, idx))
    return np.where(last_break < 0, carry + idx + 1, idx - last_break)


def window_values(sums: np.ndarray, deadband: float, dt: float) -> dict:
    """Metric values from window sums (rows = steps); empty windows give the neutral value."""
    eligible, cos_n, jerk_n = sums[:, ELIGIBLE], sums[:, COS_N], sums[:, JERK_N]
    reversal = np.where(eligible > 0.5, sums[:, FLIPS] / np.maximum(eligible, 1.0), 0.0)
    coherence = np.where(cos_n > 0.5, sums[:, COS_SUM] / np.maximum(cos_n, 1.0), 1.0)
    jerk_norm = np.sqrt(np.maximum(sums[:, JERK_SQ], 0.0) / np.maximum(jerk_n, 1.0)) * deadband
    return {'reversal_rate': np.clip(reversal, 0.0, 1.0), 'momentum_coherence': coherence,
            'jerk_norm': jerk_norm, 'jerk_rms': jerk_norm / (dt * dt), 'eligible': eligible,
            'pairs': cos_n}


def spectral_low_ratio(actions: np.ndarray, velocity_scale: np.ndarray, dt: float,
                       cutoff_hz: float) -> float:
    """Return the share of scaled, mean-removed velocity power below cutoff_hz (1 when still)."""
    finite = np.isfinite(actions).all(axis=1)
    valid = finite[1:] & finite[:-1]
    vel = np.where(valid[:, None], np.diff(np.where(finite[:, None], actions, 0.0), axis=0), 0.0)
    vel = vel / (velocity_scale * dt)
    if valid.any():
        vel = np.where(valid[:, None], vel - vel[valid].mean(axis=0), 0.0)
    power = np.abs(np.fft.rfft(vel, axis=0)) ** 2
    freqs = np.fft.rfftfreq(vel.shape[0], dt)
    total = power[1:].sum()
    if not total > 1e-12 * vel.shape[0]:
        return 1.0
    return float(power[1:][freqs[1:] < cutoff_hz].sum() / total)


class ActionMonitor:
    """
    Streaming health monitor of one action stream: metrics, conformal CUSUM, alarms, cost budget.

    Memory is bounded by the window; `update` is O(D) per step plus one vectorized block every
    profile.block_s and one FFT every profile.spectral_period_s.
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
        self._zeros = np.zeros(self.dim)
        self._blockbuf = np.empty((self.block, self.dim))
        self.reset_episode()

    def _init_motion(self, motion: MotionCalibration | None) -> None:
        """Step, seam and window scorers and the motion CUSUM; all disarmed without motion data."""
        self.step_scorer = self.seam_scorer = self.window_scorer = None
        self.run_length = None
        if motion is None:
            return
        if motion.step_scale.shape != (self.dim,):
            raise InputError('motion calibration must hold one step scale per joint')
        p = self.profile
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
        self._context = np.full((3, self.dim), np.nan)
        # the last actions, in order
        self._actions = np.full((self.spectral_window + 1, self.dim), np.nan)
        self._contrib = np.zeros((self.window, 6))
        self._stall = 0
        self._active = dict.fromkeys(('nonfinite', 'shape', 'reversal', 'jerk', 'coherence',
                                      'spectral', 'stall', 'step_spike', 'window_spike'),
                                     False)
        self._next_spectral = self.spectral_window - 1
        self._last_score = float('nan')
        self._values = None
        self.cusum.reset()
        if self.step_scorer is not None:
            self.motion_cusum.reset()
        self._last_step_score = float('nan')
        self._step_stats = [0, 0, 0.0]  # scored steps, exceedances, largest score
        self._window_stats = [0, 0, 0.0]
        self._last_window_score = float('nan')
        self._seam = [float('nan'), 0.0]  # last seam score, largest
        span = self.window_scorer.span if self.window_scorer is not None else 0
        self._window_context = np.full((span, self.dim), np.nan)
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
            a = action if type(action) is np.ndarray else np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            a = None  # not numbers at all
        raised = ()
        if a is None or a.shape != self._zeros.shape:
            raised = self._bad(t, 'shape')
            a = self._zeros + np.nan
        elif not -HUGE < a.sum() < HUGE:  # false for NaN, Inf (and absurd magnitudes)
            raised = self._bad(t, 'nonfinite')
            a = self._zeros + np.nan
        elif self._active['nonfinite'] or self._active['shape']:
            self._active['nonfinite'] = self._active['shape'] = False
        self._blockbuf[self._pending] = a
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
        """Charge the filter's interventions of one step (iterable of reasons, e.g. 'position')."""
        for reason in set(reasons):
            self.budget.charge('intervention.' + reason)
        self._refresh_level()

    # ---- block path ----------------------------------------------------------------------
    def _flush(self) -> tuple:
        """Advance metrics, CUSUM and alarms over the pending block of actions."""
        n = self._pending
        if n == 0:
            return ()
        self._pending = 0
        rows = self._blockbuf[:n].copy()
        t0 = self.step_count - n
        raised = self._cusum_block(rows, t0) + self._motion_block(rows, t0)
        contrib, still = step_contributions(self._context, rows, self.inv_eps)
        table = np.concatenate([self._contrib, contrib])
        sums = window_sums(table[1:], self.window)
        runs = stall_runs(still, self._stall)
        self._contrib = table[-self.window:]
        self._context = np.concatenate([self._context, rows])[-3:]
        self._actions = np.concatenate([self._actions, rows])[-(self.spectral_window + 1):]
        self._stall = int(runs[-1])
        values = window_values(sums, self.profile.deadband, self.dt)
        values['stall_s'] = runs * self.dt
        self._values = {k: v[-1] for k, v in values.items()}
        raised += self._metric_alarms(values, runs, t0)
        if self.step_count - 1 >= self._next_spectral:
            raised += self._spectral_check(self.step_count - 1)
        self._accumulate(values, runs, t0)
        self._refresh_level()
        return raised

    def _cusum_block(self, rows: np.ndarray, t0: int) -> tuple:
        scores = self.scorer.scores_of(rows)             # NaN for the gap rows
        finite = scores == scores
        if finite.all():
            self._last_score = float(scores[-1])
            self._scored += scores.size
        elif finite.any():
            self._last_score = float(scores[finite][-1])
            self._scored += int(finite.sum())
        exceeded = scores > self.exceed_score
        self._exceeded += int(np.count_nonzero(exceeded))
        raised = ()
        for i in range((-t0) % self.cusum_stride, rows.shape[0], self.cusum_stride):
            if finite[i] and self.cusum.update(bool(exceeded[i])):
                raised += self._raise('cusum', t0 + i)
        return raised

    def _motion_block(self, rows: np.ndarray, t0: int) -> tuple:
        """Step scores of the block: spike alarms at once, exceedances into the motion CUSUM."""
        if self.step_scorer is None:
            return ()
        scores = self.step_scorer.scores_of(np.concatenate([self._context[-2:], rows]))
        finite = scores == scores
        if finite.any():
            kept = scores[finite]
            self._last_step_score = float(kept[-1])
            stats = self._step_stats
            stats[0] += kept.size
            stats[1] += int(np.count_nonzero(kept > self.step_exceed))
            stats[2] = max(stats[2], float(kept.max()))
        raised = self._spike_alarms(scores > self.step_scorer.spike_score, t0, 'step_spike')
        exceeded = scores > self.step_exceed
        for i in range((-t0) % self.motion_stride, rows.shape[0], self.motion_stride):
            if finite[i] and self.motion_cusum.update(bool(exceeded[i])):
                raised += self._raise('motion_cusum', t0 + i)
        return raised + self._window_block(rows, t0)

    def _window_block(self, rows: np.ndarray, t0: int) -> tuple:
        """Window scores of the block: a `window_spike` past the margin, statistics kept."""
        if self.window_scorer is None:
            return ()
        x = np.concatenate([self._window_context, rows])
        self._window_context = x[rows.shape[0]:]
        scores = self.window_scorer.scores_of(x)
        finite = scores == scores
        if finite.any():
            kept = scores[finite]
            self._last_window_score = float(kept[-1])
            stats = self._window_stats
            stats[0] += kept.size
            stats[1] += int(np.count_nonzero(kept > self.window_exceed))
            stats[2] = max(stats[2], float(kept.max()))
        return self._spike_alarms(scores > self.window_scorer.spike_score, t0, 'window_spike')

    def _spike_alarms(self, spikes: np.ndarray, t0: int, kind: str) -> tuple:
        """One alarm of `kind` per run of consecutive spiking steps (runs span blocks)."""
        hits = np.flatnonzero(spikes)
        raised = ()
        previous = -1 if self._active[kind] else -2
        for i in hits.tolist():
            if i != previous + 1:
                raised += self._raise(kind, t0 + i)
            previous = i
        self._active[kind] = bool(hits.size) and bool(hits[-1] == spikes.size - 1)
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

    def _metric_alarms(self, values: dict, runs: np.ndarray, t0: int) -> tuple:
        p, primary = self.profile, self.profile.primary
        conditions = {}
        if 'reversal' in primary:
            conditions['reversal'] = ((values['reversal_rate'] > p.reversal_max)
                                      & (values['eligible'] >= self.min_pairs))
        if 'jerk' in primary:
            conditions['jerk'] = values['jerk_norm'] > p.jerk_max
        if 'coherence' in primary:
            conditions['coherence'] = ((values['momentum_coherence'] < p.coherence_min)
                                       & (values['pairs'] >= self.min_pairs))
        if 'stall' in primary:
            conditions['stall'] = runs >= self.stall_steps
        first_full = max(0, self.window - 1 - t0)  # alarms only once the window is full
        last = runs.size - 1
        raised = ()
        for kind, cond in conditions.items():
            hits = np.flatnonzero(cond[first_full:]) + first_full
            previous = first_full - 1 if self._active[kind] else -2
            for i in hits.tolist():
                if i != previous + 1:
                    raised += self._raise(kind, t0 + i)
                previous = i
            self._active[kind] = bool(hits.size) and bool(hits[-1] == last)
        return raised

    def _spectral_check(self, step: int) -> tuple:
        self._next_spectral = step + self.spectral_every
        ratio = spectral_low_ratio(self._actions, self.velocity_scale, self.dt,
                                   self.profile.spectral_cutoff_hz)
        self._sums['spectral_low_ratio'] += ratio
        self._maxima['spectral_low_ratio'] = max(self._maxima['spectral_low_ratio'], ratio)
        self._n_spectral += 1
        if 'spectral' not in self.profile.primary:
            return ()
        low = ratio < self.profile.spectral_min
        was, self._active['spectral'] = self._active['spectral'], low
        return self._raise('spectral', step) if low and not was else ()

    def _accumulate(self, values: dict, runs: np.ndarray, t0: int) -> None:
        first_full = max(0, self.window - 1 - t0)
        if first_full >= runs.size:
            return
        names = ('reversal_rate', 'jerk_rms', 'momentum_coherence', 'stall_s')
        table = np.stack([values[name][first_full:] for name in names])
        self._n_full += table.shape[1]
        totals, peaks = table.sum(axis=1).tolist(), table.max(axis=1).tolist()
        for name, total, peak in zip(names, totals, peaks):
            self._sums[name] += total
            self._maxima[name] = max(self._maxima[name], peak)

    # ---- reporting -----------------------------------------------------------------------
    def window_metrics(self) -> dict:
        """Return the current window metrics (flushes the pending block; computes the FFT now)."""
        self._unreported.extend(self._flush())
        values = self._values or {}
        spectral = spectral_low_ratio(self._actions, self.velocity_scale, self.dt,
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
        }

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
            values['window_score'] = self._last_window_score
            values['window_p_value'] = _p_value(self.window_scorer, self._last_window_score)
        if self.seam_scorer is not None:
            values['seam_score'] = self._seam[0]
            values['seam_p_value'] = _p_value(self.seam_scorer, self._seam[0])
        return values

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
        }


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
    t_len, dim = actions.shape
    contrib, still = step_contributions(np.full((3, dim), np.nan), actions, inv_eps)
    sums = window_sums(np.concatenate([np.zeros((window - 1, 6)), contrib]), window)
    values = window_values(sums, p.deadband, dt)
    values['stall_s'] = stall_runs(still, 0) * dt
    padded = np.concatenate([np.full((spectral_window, dim), np.nan), actions])
    values['spectral_low_ratio'] = np.array([
        spectral_low_ratio(padded[t:t + spectral_window + 1], vs, dt, p.spectral_cutoff_hz)
        for t in range(t_len)])
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
            self.reason = 'alarm ' + ', '.join(f'{a.kind}@{a.step}' for a in step.alarms)
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
