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
Drill conditions: what stands between the policy and the world, and which fault is elicited.

A condition is `none`, `filter`, `filter+stop`, or a fault family of core.faults (plus
`unnormalized` and `wrong-unnormalizer`) alone, `+filter` or `+filter+stop`. The filter is
core.executive.Executive, run as the safety_filter node runs it: it observes the measured
position, takes one chunk per policy request as its plan and ticks once per world step on
simulated time. `+stop` adds the node-side
action monitor on the raw actions with stop_on alarm: an alarm latches the filter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..execspec import Metadata, normalize, unnormalize
from ..faults import action_range, FAULT_FAMILIES, inject, UNNORMALIZED

#: the policy's output unnormalized with a sibling dataset's statistics instead of its own
WRONG_UNNORMALIZER = 'wrong-unnormalizer'
FAULTS = (*FAULT_FAMILIES, UNNORMALIZED, WRONG_UNNORMALIZER)
GUARDS = ('', 'filter', 'filter+stop')
#: how a policy's outputs are normalized: a standard score, or [-1, 1] over the demos' min..max
NORM_MODES = ('mean_std', 'min_max')


def action_normalizer(actions, mode: str, source: str = 'demonstrations') -> Metadata:
    """
    Return the unnormalizer a policy trained on these actions would use, in `mode`.

    mean_std: the actions' mean and standard deviation; min_max: their per-dimension min and max
    (the diffusion-policy PushT normalizer, outputs in [-1, 1]).
    """
    if mode not in NORM_MODES:
        raise InputError(f'unknown normalization mode {mode!r}; choose from {list(NORM_MODES)}')
    actions = np.asarray(actions, dtype=np.float64)
    mask = np.ones(actions.shape[1], dtype=bool)
    if mode == 'min_max':
        return Metadata('min_max', mask, low=actions.min(axis=0), high=actions.max(axis=0),
                        source=source).require_valid()
    return Metadata('mean_std', mask, mean=actions.mean(axis=0), std=actions.std(axis=0),
                    source=source).require_valid()


@dataclass(frozen=True)
class Condition:
    """One drill condition: an optional fault, the filter on or off, the monitor's stop."""

    name: str
    fault: str | None
    filtered: bool
    stop: bool


def parse_condition(name: str) -> Condition:
    """`none`, `filter`, `filter+stop`, `FAULT`, `FAULT+filter`, `FAULT+filter+stop`."""
    text = name.strip()
    fault, _, guard = text.partition('+')
    if fault in ('none', 'filter'):
        fault, guard = None, '' if text == 'none' else text
    if (fault is not None and fault not in FAULTS) or guard not in GUARDS:
        raise InputError(f'unknown condition {name!r}: use none, filter, filter+stop, FAULT, '
                         f'FAULT+filter or FAULT+filter+stop with FAULT one of {list(FAULTS)}')
    return Condition(text, fault, guard.startswith('filter'), guard == 'filter+stop')


def parse_conditions(text: str) -> list[Condition]:
    """Parse a comma-separated list of distinct conditions (at least one)."""
    names = [n.strip() for n in str(text).split(',') if n.strip()]
    if not names:
        raise InputError('no condition given: e.g. --conditions none,filter')
    if len(set(names)) != len(names):
        raise InputError(f'condition listed twice in {text!r}')
    return [parse_condition(n) for n in names]


class ChunkFault:
    """
    A fault injected between policy and filter, on chunks as they arrive during an episode.

    The raw actions are kept per world step, so core.faults.inject sees the episode so far and
    each family behaves as on a recorded stream (a drift keeps growing across chunks, a freeze
    repeats the action planned for the onset step). From the onset on, `unnormalized` sends the
    policy's output in normalized units, normalize(own, a), and `wrong-unnormalizer`
    unnormalizes those with a sibling dataset's statistics: unnormalize(sibling, normalize(own,
    a)). `own` defaults to the mean_std unnormalizer of (mu, sigma).
    """

    def __init__(self, family: str, at: int, seed: int, mu, sigma, dt: float,
                 sibling: Metadata | None = None, own: Metadata | None = None):
        if family not in FAULTS:
            raise InputError(f'unknown fault {family!r}; choose from {list(FAULTS)}')
        self.family, self.at, self.seed, self.dt = family, int(at), int(seed), float(dt)
        self.mu = np.asarray(mu, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.span = action_range(self.sigma)
        self.own = own or Metadata('mean_std', np.ones(self.mu.size, dtype=bool), mean=self.mu,
                                   std=self.sigma, source='calibration')
        self.sibling = sibling
        if family == WRONG_UNNORMALIZER:
            _check_sibling(self.own, sibling)
        self._raw = np.zeros((0, self.mu.size))

    def apply(self, chunk: np.ndarray, t0: int) -> np.ndarray:
        """Return the chunk as it reaches the filter when its first row runs at world step t0."""
        chunk = np.asarray(chunk, dtype=np.float64)
        end = t0 + len(chunk)
        if end > len(self._raw):
            grown = np.zeros((max(end, 2 * len(self._raw)), self.mu.size))
            grown[:len(self._raw)] = self._raw
            self._raw = grown
        self._raw[t0:end] = chunk
        if end <= self.at:
            return chunk.copy()
        if self.family in (UNNORMALIZED, WRONG_UNNORMALIZER):
            return self._renormalized(chunk, t0)
        faulty, _ = inject(self._raw[:end], self.family, self.at, self.seed, self.span,
                           self.mu, self.dt)
        return faulty[t0:end]

    def _renormalized(self, chunk: np.ndarray, t0: int) -> np.ndarray:
        """Rows from the onset on in normalized units, or unnormalized with the sibling's stats."""
        out = chunk.copy()
        tail = slice(max(self.at - t0, 0), None)
        out[tail] = normalize(self.own, chunk[tail])
        if self.family == WRONG_UNNORMALIZER:
            out[tail] = unnormalize(self.sibling, out[tail])
        return out


def _check_sibling(own: Metadata, sibling: Metadata | None) -> None:
    """Refuse a missing sibling unnormalizer, or one of another mode or dimension."""
    if sibling is None:
        raise InputError(f"fault {WRONG_UNNORMALIZER} needs a sibling dataset's statistics "
                         f'(--sibling DEMOS.npz)')
    if (sibling.mode, sibling.dim) != (own.mode, own.dim):
        raise InputError(f'{sibling.source}: the sibling unnormalizer is {sibling.mode} over '
                         f"{sibling.dim} dimensions, the policy's {own.mode} over {own.dim}")
