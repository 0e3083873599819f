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
Holds: runs of exactly repeated actions (`freeze`) and of below-deadband motion (`stall`).

A frozen policy or a stuck pipeline repeats its action bit for bit; a human operator or a live
policy pausing still moves a little. So the two runs get separate thresholds, both calibrated
per episode from the demonstrations (doc/monitoring.md, "Holds"): the longest run of each kind
in each calibration episode; the alarm threshold is the largest of them times a margin plus one
step, never below the profile's floor. A new exchangeable episode's longest run beats the
largest of K episodes' with probability at most 1/(K+1), so with fewer than (1 - alpha)/alpha
episodes the profile's fixed thresholds are used instead (with a warning in the report).
Run length at step t: the number of consecutive steps ending at t whose action holds against
the previous one; a non-finite row breaks every run (the step after it has no previous action).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import NamedTuple

import numpy as np

from .errors import InputError

HOLD_KINDS = ('freeze', 'stall')
RANK_TOLERANCE = 1e-9


class HoldThresholds(NamedTuple):
    """Alarm thresholds in steps of the monitor (a run reaching one alarms) and their origin."""

    freeze: int
    stall: int
    calibrated: bool   # False: the profile's fixed values (too few calibration episodes)


def armed_kinds(thresholds: HoldThresholds, stall: bool) -> tuple[str, ...]:
    """
    Return the hold kinds that alarm: stall when the profile arms it; freeze when it is earlier.

    An exact repeat is also inside the deadband, so every freeze run lies in a stall run at
    least as long: with the stall armed, a freeze threshold at or above the stall threshold
    would only duplicate its alarms (as with the fixed fallback values).
    """
    freeze = not stall or thresholds.freeze < thresholds.stall
    return tuple(k for k, on in zip(HOLD_KINDS, (freeze, stall)) if on)


def hold_flags(rows: np.ndarray, inv_eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Per row of an episode: whether it repeats the row before exactly, whether it stays inside.

    The first row, a row that is not finite and the row after it hold nothing (no predecessor).
    """
    finite = np.isfinite(rows).all(axis=1)
    valid = np.zeros(rows.shape[0], dtype=bool)
    valid[1:] = finite[1:] & finite[:-1]
    freeze = valid.copy()
    stall = valid.copy()
    freeze[1:] &= (rows[1:] == rows[:-1]).all(axis=1)
    with np.errstate(invalid='ignore'):   # inf - inf in rows that are not valid anyway
        stall[1:] &= (np.abs(np.diff(rows, axis=0)) * inv_eps < 1.0).all(axis=1)
    return freeze, stall


def run_lengths(flags: np.ndarray, carry: int = 0) -> np.ndarray:
    """Length of the current run of true flags at each row, continuing a run of `carry`."""
    idx = np.arange(flags.size)
    last_break = np.maximum.accumulate(np.where(flags, -1, idx))
    return np.where(last_break < 0, carry + idx + 1, idx - last_break)


def longest_runs(episode: np.ndarray, inv_eps: np.ndarray) -> tuple[int, int]:
    """Return the longest freeze run and the longest stall run of one episode, in steps."""
    rows = np.asarray(episode, dtype=np.float64)
    if rows.shape[0] == 0:
        return 0, 0
    freeze, stall = hold_flags(rows, inv_eps)
    return int(run_lengths(freeze).max()), int(run_lengths(stall).max())


def _enough_episodes(n: int, alpha: float) -> bool:
    """Return whether n episodes reach (1 - alpha)/alpha (as calibration.min_episodes)."""
    return n >= math.ceil((1.0 - alpha) / alpha - RANK_TOLERANCE)


@dataclass(frozen=True)
class HoldCalibration:
    """
    The longest freeze and stall runs of each calibration episode, and how they were measured.

    `runs` [K, 2]: per calibration episode its longest (freeze, stall) run, in steps of `dt`;
    `stall_eps` [D]: the per-joint deadband of the stall runs (the detector uses the same one).
    """

    runs: np.ndarray
    stall_eps: np.ndarray
    dt: float

    ARRAY_KEYS = ('motion_hold_runs', 'motion_hold_eps', 'motion_hold_dt')

    @classmethod
    def from_episodes(cls, episodes, stall_eps, dt: float) -> 'HoldCalibration':
        """Measure the longest runs of every episode with the deadband stall_eps."""
        eps = np.asarray(stall_eps, dtype=np.float64)
        if eps.ndim != 1 or not np.all(eps > 0) or not np.isfinite(eps).all():
            raise InputError('hold calibration needs a positive finite deadband per joint')
        runs = np.array([longest_runs(e, 1.0 / eps) for e in episodes], dtype=np.int64)
        return cls(runs.reshape(-1, 2), eps, float(dt))

    @property
    def n_episodes(self) -> int:
        return int(self.runs.shape[0])

    def longest(self) -> tuple[int, int]:
        """Return the longest freeze and stall runs over every calibration episode (steps)."""
        if not self.n_episodes:
            return 0, 0
        top = self.runs.max(axis=0)
        return int(top[0]), int(top[1])

    def thresholds(self, profile, dt: float, alpha: float) -> HoldThresholds:
        """
        Alarm thresholds in steps of period dt under `profile` (core.profiles.MonitorProfile).

        Calibrated: ceil(margin * longest run) + 1 step, at least the profile's floor; with
        fewer than (1 - alpha)/alpha episodes: the profile's fixed freeze_s and stall_s.
        """
        if not _enough_episodes(self.n_episodes, alpha):
            return HoldThresholds(max(1, round(profile.freeze_s / dt)),
                                  max(1, round(profile.stall_s / dt)), False)
        steps = []
        for run, floor_s in zip(self.longest(), (profile.freeze_min_s, profile.stall_min_s)):
            own = (math.ceil(profile.hold_margin * run - RANK_TOLERANCE) + 1) * self.dt
            steps.append(max(1, math.ceil(max(own, floor_s) / dt - RANK_TOLERANCE)))
        return HoldThresholds(steps[0], steps[1], True)

    def to_arrays(self) -> dict:
        """Arrays for a calibration .npz (ARRAY_KEYS; older files lack them)."""
        return dict(zip(self.ARRAY_KEYS, (self.runs, self.stall_eps, np.float64(self.dt))))

    @classmethod
    def from_arrays(cls, arrays, dim: int) -> 'HoldCalibration | None':
        """Return the stored hold calibration, None when the file predates it."""
        if not all(key in arrays for key in cls.ARRAY_KEYS):
            return None
        runs = np.asarray(arrays['motion_hold_runs'])
        eps = np.asarray(arrays['motion_hold_eps'], dtype=np.float64)
        dt = float(np.asarray(arrays['motion_hold_dt'], dtype=np.float64))
        if (runs.ndim != 2 or runs.shape[1] != 2 or not np.all(runs >= 0)
                or not np.array_equal(runs, np.round(runs)) or eps.shape != (dim,)
                or not (np.all(eps > 0) and np.isfinite(eps).all())
                or not (math.isfinite(dt) and dt > 0)):
            raise InputError('motion_hold_* arrays are malformed')
        return cls(runs.astype(np.int64), eps, dt)

    def report(self, profile, alpha: float) -> dict:
        """JSON-ready: longest runs, their spread over episodes and the thresholds of `profile`."""
        limits = self.thresholds(profile, self.dt, alpha)
        longest = self.longest()
        out = {'n_episodes': self.n_episodes, 'calibrated': limits.calibrated,
               'margin': profile.hold_margin, 'dt': self.dt,
               'armed': list(armed_kinds(limits, 'stall' in profile.primary))}
        for k, kind in enumerate(HOLD_KINDS):
            per_episode = self.runs[:, k]
            out[f'{kind}_longest_run_steps'] = longest[k]
            out[f'{kind}_median_run_steps'] = (float(np.median(per_episode))
                                               if per_episode.size else None)
            out[f'{kind}_threshold_steps'] = limits[k]
            out[f'{kind}_threshold_s'] = round(limits[k] * self.dt, 9)
        return out


class HoldDetector:
    """
    Streaming freeze and stall runs with one alarm per run that reaches its threshold.

    Exact whatever the blocks: the previous row and both run lengths carry across calls. Plain
    floats, O(D) per row: on the few rows of a block numpy's per-call cost exceeds the arithmetic
    (the vectorized `hold_flags` measures whole calibration episodes by the same definition).
    """

    def __init__(self, stall_eps, thresholds: HoldThresholds, kinds=HOLD_KINDS):
        self._inv_eps = 1.0 / np.asarray(stall_eps, dtype=np.float64)
        self.inv_eps = self._inv_eps.tolist()
        self.thresholds = {'freeze': int(thresholds.freeze), 'stall': int(thresholds.stall)}
        self.kinds = tuple(k for k in HOLD_KINDS if k in kinds)   # the kinds that alarm
        self.reset()

    def reset(self) -> None:
        """Start an episode: no previous action, no run."""
        self._previous = None
        self.runs = dict.fromkeys(HOLD_KINDS, 0)
        self.longest = dict.fromkeys(HOLD_KINDS, 0)

    def block(self, rows: np.ndarray, t0: int) -> list[tuple[str, int]]:
        """Advance over rows [n, D] (steps t0 ...); return the alarm onsets (kind, step)."""
        runs, longest, onsets = self.runs, self.longest, []
        freeze_at, stall_at = (self.thresholds[k] if k in self.kinds else -1 for k in HOLD_KINDS)
        previous = self._previous
        for i, row in enumerate(np.asarray(rows, dtype=np.float64).tolist()):
            if not all(map(math.isfinite, row)):
                runs['freeze'] = runs['stall'] = 0
                previous = None
                continue
            held = previous is not None
            freeze = held and row == previous
            stall = freeze or held and all(abs(a - b) * e < 1.0
                                           for a, b, e in zip(row, previous, self.inv_eps))
            runs['freeze'] = runs['freeze'] + 1 if freeze else 0
            runs['stall'] = runs['stall'] + 1 if stall else 0
            if runs['freeze'] == freeze_at:
                onsets.append(('freeze', t0 + i))
            if runs['stall'] == stall_at:
                onsets.append(('stall', t0 + i))
            longest['freeze'] = max(longest['freeze'], runs['freeze'])
            longest['stall'] = max(longest['stall'], runs['stall'])
            previous = row
        self._previous = previous
        return onsets

    def episode_runs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Return each kind's run at every row of an episode from its start, as `block` counts."""
        return dict(zip(HOLD_KINDS, map(run_lengths, hold_flags(rows, self._inv_eps))))

    def resume(self, runs: dict[str, np.ndarray], last_row: np.ndarray) -> None:
        """Take the state `block` leaves after an episode's first rows (runs: `episode_runs`)."""
        self.runs = {kind: int(r[-1]) for kind, r in runs.items()}
        self.longest = {kind: int(r.max()) for kind, r in runs.items()}
        self._previous = last_row.tolist() if np.isfinite(last_row).all() else None

    def active(self, kind: str) -> bool:
        """Return whether the current run of `kind` has reached its threshold (alarm holds)."""
        return kind in self.kinds and self.runs[kind] >= self.thresholds[kind]
