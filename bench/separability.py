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
How separable a fault is from clean motion in the 2 s after its onset, from the actions alone.

Run by hand: `python bench/separability.py [--data FILE] [--family scale] [--onsets 8]`.
Issue 12 asks for scale x1.2 (and on PushT keypoint offset 20 %) detected within 2 s in >= 95 %
of episodes at <= 1 false alarm per hour. This measures what the action stream allows, with a
detector told the answer: a k-nearest-neighbour classifier trained on windows with and without the
fault (same family, factor, centre and onset as `vla-safety evaluate` injects, core.faults.inject)
from half of the episodes, tested on the other half; and a logistic regression on the features
and their pairwise products, trained and tested alike. Each window is the 2 s before the onset and
the 2 s after it; its features are place, speed, acceleration and the onset step, scaled by the
calibration's sigma, and the ratios after/before. Printed: AUROC, and the share of faulty windows
caught at 1 % and 5 % of clean windows flagged (one window per step at 10 Hz: 1 false alarm per
hour is about 0.003 % of windows, far below either). It also prints how much the demonstrations'
own speed varies, per episode and per 2-s window.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import cKDTree
from scipy.special import expit
from vla_safety_filter.core.faults import action_range, inject

DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'data')
SPAN = 20           # steps in 2 s at 10 Hz, before and after the onset
NEIGHBOURS = 25
RIDGE = 1.0         # L2 weight of the logistic regression (per sample)
FPR = (0.01, 0.05)


def episodes(path: str) -> list[np.ndarray]:
    """Return the recording's action episodes in order."""
    with np.load(path, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    return [actions[index == k] for k in np.unique(index)]


def features(window: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Return the features of a [2 SPAN + 1, D] window whose onset is row SPAN + 1."""
    z = (window - mu) / sigma
    before, after = z[:SPAN + 1], z[SPAN + 1:]
    parts = []
    for part in (before, after):
        step = np.abs(np.diff(part, axis=0))
        accel = np.abs(np.diff(part, 2, axis=0))
        radius = np.linalg.norm(part, axis=1)
        parts.append([*part.mean(0), *np.abs(part).max(0), radius.mean(), radius.max(),
                      *step.mean(0), step.max(), step.std(), accel.mean(), accel.max()])
    b, a = np.array(parts[0]), np.array(parts[1])
    onset = np.abs(z[SPAN + 1] - z[SPAN]).max()
    return np.concatenate([b, a, a / (np.abs(b) + 1e-9), [onset]])


def windows(eps: list[np.ndarray], family: str, onsets: int, mu, sigma, seed: int) -> tuple:
    """Return features of clean and faulty windows at `onsets` random onsets per episode."""
    rng = np.random.default_rng(seed)
    scale = action_range(sigma)
    clean, faulty = [], []
    for k, e in enumerate(eps):
        if len(e) < 2 * SPAN + 2:
            continue
        for _ in range(onsets):
            at = int(rng.integers(SPAN + 1, len(e) - SPAN))
            bad, _ = inject(e, family, at, k, scale, mu, 0.1)
            rows = slice(at - SPAN - 1, at + SPAN)
            clean.append(features(e[rows], mu, sigma))
            faulty.append(features(bad[rows], mu, sigma))
    return np.array(clean), np.array(faulty)


def knn(clean: np.ndarray, faulty: np.ndarray):
    """Return a scorer: the share of faulty windows among a window's nearest training ones."""
    x = np.vstack([clean, faulty])
    centre, spread = x.mean(0), x.std(0) + 1e-12
    labels = np.r_[np.zeros(len(clean)), np.ones(len(faulty))]
    tree = cKDTree((x - centre) / spread)

    def score(rows: np.ndarray) -> np.ndarray:
        _, near = tree.query((rows - centre) / spread, k=NEIGHBOURS)
        return labels[near].mean(1)
    return score


def quadratic_logistic(clean: np.ndarray, faulty: np.ndarray):
    """Return a scorer: logistic regression on the features and their pairwise products."""
    x = np.vstack([clean, faulty])
    centre, spread = x.mean(0), x.std(0) + 1e-12
    upper = np.triu_indices(x.shape[1])

    def design(rows: np.ndarray) -> np.ndarray:
        z = np.clip((rows - centre) / spread, -10.0, 10.0)
        return np.hstack([np.ones((len(z), 1)), z, (z[:, :, None] * z[:, None, :])[:, *upper]])
    big, y = design(x), np.r_[np.zeros(len(clean)), np.ones(len(faulty))]

    def loss(w: np.ndarray) -> tuple:
        p = big @ w
        grad = big.T @ (expit(p) - y) + RIDGE * w
        return float(np.sum(np.logaddexp(0.0, p) - y * p) + 0.5 * RIDGE * w @ w), grad
    w = minimize(loss, np.zeros(big.shape[1]), jac=True, method='L-BFGS-B',
                 options={'maxiter': 500}).x
    return lambda rows: design(rows) @ w


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """Return the probability a positive scores above a negative (ties count half)."""
    both = np.concatenate([negative, positive])
    ranks = np.argsort(np.argsort(both, kind='stable'), kind='stable') + 1.0
    for value in np.unique(both):       # average ranks of ties
        tie = both == value
        ranks[tie] = ranks[tie].mean()
    n, p = len(negative), len(positive)
    return float((ranks[n:].sum() - p * (p + 1) / 2) / (n * p))


def caught_at(negative: np.ndarray, positive: np.ndarray, fpr: float) -> float:
    """Return the share of positives above the clean scores' (1 - fpr) quantile."""
    threshold = np.quantile(negative, 1.0 - fpr, method='higher')
    return float(np.mean(positive > threshold))


def speed_spread(eps: list[np.ndarray], sigma: np.ndarray) -> dict:
    """Return percentiles of mean scaled speed per episode and per 2-s window."""
    per_episode, per_window = [], []
    for e in eps:
        speed = np.linalg.norm(np.diff(e / sigma, axis=0), axis=1)
        per_episode.append(speed.mean())
        per_window += [speed[t:t + SPAN].mean() for t in range(0, len(speed) - SPAN, SPAN)]
    q = (5, 25, 50, 75, 95)
    return {'episode': np.percentile(per_episode, q), 'window': np.percentile(per_window, q)}


def main() -> None:
    """Train on even episodes, test on odd ones, print the separability of each family."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--data', default=os.path.join(DATA, 'pusht_cchi_v7_replay.npz'))
    parser.add_argument('--family', action='append',
                        help='fault families (default: scale and offset)')
    parser.add_argument('--onsets', type=int, default=30, help='onsets per episode')
    args = parser.parse_args()
    eps = episodes(args.data)
    train, test = eps[0::2], eps[1::2]
    stacked = np.vstack(train)
    mu, sigma = stacked.mean(0), stacked.std(0)
    print(f'{os.path.basename(args.data)}: {len(train)} training and {len(test)} test episodes')
    spread = speed_spread(eps, sigma)
    for name, q in spread.items():
        print(f'  speed per {name} (5/25/50/75/95 %): {np.round(q, 3)}; 75/25 ratio '
              f'{q[3] / q[1]:.2f}, 95/5 ratio {q[4] / q[0]:.2f}')
    for family in args.family or ['scale', 'offset']:
        c_train, f_train = windows(train, family, args.onsets, mu, sigma, 0)
        c_test, f_test = windows(test, family, args.onsets, mu, sigma, 1)
        print(f'  {family}: {len(c_test)} clean and {len(f_test)} faulty test windows')
        for name, fit in (('k-NN', knn), ('quadratic logistic', quadratic_logistic)):
            score = fit(c_train, f_train)
            neg, pos = score(c_test), score(f_test)
            rates = ', '.join(f'{100 * caught_at(neg, pos, f):.0f} % at {100 * f:.0f} % FPR'
                              for f in FPR)
            print(f'    {name:<19} AUROC {auroc(neg, pos):.3f}; caught {rates}')


if __name__ == '__main__':
    main()
