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
Nearest-neighbour window score: how far the recent motion is from every demonstrated one.

A window at step t is the position a_t and the mean velocity over the last `span` steps, each
scaled per joint (position by the demonstrations' std, velocity by the RMS step), so a robot
lingering at a demonstrated place with demonstrated speed scores low wherever that is, and a
motion no demonstration made (a wrong speed there, a place never visited) scores high. Score =
Euclidean distance to the nearest demonstrated window (scipy cKDTree); calibration scores are
the distances of one half of the calibration episodes to the other half's windows (out of fold),
and the conformal p-value is (1 + #{scores >= s}) / (n + 1).
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from scipy.spatial import cKDTree

from .errors import InputError
from .sequential import ConformalScorer

WINDOW_S = 0.3            # the velocity of a window is the mean over this span
MAX_WINDOW_POINTS = 20000  # demonstrated windows kept (an even subsample beyond this)
HINTS = 4                 # demonstrated windows tried before a tree query (bounded_scores)
ARRAY_KEYS = ('motion_window_points', 'motion_window_scores', 'motion_window_norm',
              'motion_window_span')


def window_features(rows: np.ndarray, norm: np.ndarray, span: int) -> np.ndarray:
    """
    Windows [T - span, 2D] of rows [T, D]: scaled position and scaled mean velocity.

    `norm` [3, D] = centre, position scale, step scale. A row touching a non-finite action is NaN.
    """
    position = (rows[span:] - norm[0]) / norm[1]
    velocity = (rows[span:] - rows[:-span]) / (span * norm[2])
    return np.concatenate((position, velocity), axis=1)


def _windows_of(episodes: list[np.ndarray], norm: np.ndarray, span: int,
                limit: int) -> np.ndarray:
    """Return the finite windows of episodes, every k-th one so that at most ~`limit` remain."""
    total = sum(max(0, e.shape[0] - span) for e in episodes)
    every = max(1, -(-total // limit))
    parts = [window_features(e, norm, span)[::every] for e in episodes if e.shape[0] > span]
    points = np.concatenate(parts) if parts else np.empty((0, 2 * norm.shape[1]))
    return points[np.isfinite(points).all(axis=1)]


@dataclass(frozen=True)
class WindowCalibration:
    """Demonstrated windows (the tree's points), out-of-fold scores and the scaling."""

    points: np.ndarray   # [N, 2D]
    scores: np.ndarray   # sorted nearest-neighbour distances of out-of-fold windows
    norm: np.ndarray     # [3, D]: centre, position scale, step scale
    span: int

    @classmethod
    def from_folds(cls, folds: tuple[list, list], step_scale: np.ndarray, dt: float,
                   seed: int = 0) -> 'WindowCalibration | None':
        """Windows of both folds; each fold's windows scored against the other fold's tree."""
        frames = np.concatenate([e for fold in folds for e in fold])
        scale = np.maximum(frames.std(axis=0), np.asarray(step_scale))
        norm = np.stack([frames.mean(axis=0), scale, np.asarray(step_scale, dtype=np.float64)])
        span = max(1, round(WINDOW_S / dt))
        halves = [_windows_of(fold, norm, span, MAX_WINDOW_POINTS // 2) for fold in folds]
        if min(h.shape[0] for h in halves) == 0:
            return None
        scores = np.concatenate([cKDTree(halves[1 - k]).query(halves[k])[0] for k in (0, 1)])
        return cls(np.concatenate(halves), np.sort(scores), norm, span)

    def to_arrays(self) -> dict:
        """Arrays for the calibration file (keys ARRAY_KEYS)."""
        return dict(zip(ARRAY_KEYS, (self.points, self.scores, self.norm, np.int64(self.span))))

    @classmethod
    def from_arrays(cls, arrays, dim: int) -> 'WindowCalibration | None':
        """Return the window calibration a file carries (None if none); InputError if malformed."""
        if not all(key in arrays for key in ARRAY_KEYS):
            return None
        points, scores, norm = (np.asarray(arrays[k], dtype=np.float64) for k in ARRAY_KEYS[:3])
        span = int(np.asarray(arrays['motion_window_span']))
        if (points.ndim != 2 or points.shape[1] != 2 * dim or not points.shape[0]
                or scores.ndim != 1 or not scores.size or norm.shape != (3, dim) or span < 1
                or not (np.isfinite(points).all() and np.isfinite(scores).all())
                or not np.all(norm[1:] > 0)):
            raise InputError('motion window calibration arrays are malformed')
        return cls(points, np.sort(scores), norm, span)


class WindowScorer(ConformalScorer):
    """Nearest-neighbour distance of windows to the demonstrations and its conformal p-value."""

    def __init__(self, windows: WindowCalibration, spike_margin: float):
        self.tree = cKDTree(windows.points)
        self.points = windows.points
        self.hint = 0  # index of the demonstrated window nearest to the last one queried
        self.norm = windows.norm
        self.span = windows.span
        # window_features' scalings as floats, for bounded_scores
        self._centre, self._scale = self.norm[0].tolist(), self.norm[1].tolist()
        self._step = (self.span * self.norm[2]).tolist()
        self.scores = windows.scores
        self.n = int(self.scores.size)
        self.spike_score = float(spike_margin * self.scores[-1])

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """Score rows[span:] given rows [T, D] (the first `span` rows are context); NaN gaps."""
        features = window_features(rows, self.norm, self.span)
        out = np.full(features.shape[0], np.nan)
        finite = np.isfinite(features).all(axis=1)
        if finite.any():
            out[finite] = self.tree.query(features[finite])[0]
        return out

    def bounded_scores(self, rows: np.ndarray, bound: float) -> tuple[list, list]:
        """
        Return scores as `scores_of` and the windows' features, as lists, sparing queries.

        A window within `bound` of the demonstrated window nearest to the last one queried, or of
        one of the HINTS - 1 windows stored after it (its demonstration's next steps), gets that
        distance: an upper bound of its score, itself <= bound. Callers that compare scores only
        with values >= bound and keep a maximum >= bound see no difference, and the steps of a
        smooth motion mostly skip the tree query (most of a step's cost). Plain floats: a block
        holds a few windows, for which numpy's per-call cost exceeds the arithmetic.
        """
        x = rows.tolist()
        hints = self.points[self.hint:self.hint + HINTS].tolist()
        scores, features, ask = [], [], []
        for row, back in zip(x[self.span:], x):   # the same operations as window_features
            f = ([(a - c) / s for a, c, s in zip(row, self._centre, self._scale)]
                 + [(a - b) / v for a, b, v in zip(row, back, self._step)])
            features.append(f)
            if not all(map(math.isfinite, f)):
                scores.append(math.nan)
                continue
            near = math.sqrt(min(sum((a - b) * (a - b) for a, b in zip(f, hint))
                                 for hint in hints))
            scores.append(near)
            if not near <= bound:
                ask.append(len(scores) - 1)
        if ask:
            distances, index = self.tree.query(np.array([features[i] for i in ask]))
            for i, distance in zip(ask, distances.tolist()):
                scores[i] = distance
            self.hint = int(index[-1])
        return scores, features

    def score_features(self, features) -> float:
        """Return the score of one window's features (NaN when they are not finite)."""
        if not np.isfinite(features).all():
            return float('nan')
        return float(self.tree.query(features)[0])
