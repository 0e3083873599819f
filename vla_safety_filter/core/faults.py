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
Fault injection into real action episodes, to measure what the monitor detects and how fast.

Magnitudes are relative to each joint's action range, taken as 4 sigma of the calibration data
(a Gaussian's q01..q99 width is 4.65 sigma), so one setting means the same on every robot.
Families:
  spike        one step jumps by `amplitude` * range on one random joint
  drift        a ramp of `rate` * range per second on every joint (random sign) from the fault step
  oscillation  a sine of `frequency` Hz and `amplitude` * range added to every joint
  freeze       the policy repeats the action of the fault step
  stall        motion shrinks to `speed` of its normal size (the arm creeps)
  noise        Gaussian noise of `amplitude` * range for `duration` seconds
  scale        a' = mu + factor * (a - mu)  (a wrong unnormalizer range)
  offset       a' = a + amplitude * range, random sign per joint (a wrong unnormalizer centre)
  nan          `duration_steps` steps of NaN on every joint
  unnormalized the policy's normalized output reaches the robot: a' = (a - centre) / (range / 2),
               i.e. the quantile normalization [q01, q99] -> [-1, 1] with q01, q99 = mu -+ 2 sigma
               (evaluate only: EVALUATE_FAMILIES; drills replay the real normalized outputs)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

DEFAULTS = {
    'spike': {'amplitude': 0.3},
    'drift': {'rate': 0.15},
    'oscillation': {'frequency': 3.0, 'amplitude': 0.05},
    'freeze': {},
    'stall': {'speed': 0.02},
    'noise': {'amplitude': 0.03, 'duration': 1.0},
    'scale': {'factor': 1.2},
    'offset': {'amplitude': 0.2},
    'nan': {'duration_steps': 3},
}
FAULT_FAMILIES = tuple(DEFAULTS)
#: the policy's normalized output reaches the robot, unnormalizer skipped
UNNORMALIZED = 'unnormalized'
#: what `vla-safety evaluate --inject all` injects
EVALUATE_FAMILIES = (*FAULT_FAMILIES, UNNORMALIZED)
RANGE_IN_SIGMAS = 4.0


def action_range(sigma) -> np.ndarray:
    """Per-joint action range the fault magnitudes refer to: 4 calibration standard deviations."""
    return RANGE_IN_SIGMAS * np.asarray(sigma, dtype=np.float64)


@dataclass(frozen=True)
class Fault:
    """One injected fault: family, first faulty step, seed and the parameters used."""

    family: str
    at: int
    seed: int
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {'family': self.family, 'at': self.at, 'seed': self.seed,
                'params': dict(self.params)}


def parse_families(text: str) -> list[str]:
    """Parse 'all' or a comma-separated list of family names (EVALUATE_FAMILIES)."""
    names = list(EVALUATE_FAMILIES) if text.strip() == 'all' else \
        [n.strip() for n in text.split(',')]
    bad = [n for n in names if n not in EVALUATE_FAMILIES]
    if bad or not names:
        raise InputError(f'unknown fault family {bad or text!r}; choose from '
                         f'{list(EVALUATE_FAMILIES)} or all')
    return names


def inject(actions: np.ndarray, family: str, at: int, seed: int, action_range: np.ndarray,
           centre: np.ndarray, dt: float, **overrides) -> tuple[np.ndarray, Fault]:
    """Return a copy of actions [T, D] with the fault applied from step `at` on, and the record."""
    if family not in DEFAULTS and family != UNNORMALIZED:
        raise InputError(f'unknown fault family {family!r}; choose from {list(EVALUATE_FAMILIES)}')
    out = np.array(actions, dtype=np.float64)
    t_len, dim = out.shape
    if not 0 <= at < t_len:
        raise InputError(f'fault step {at} is outside the episode (0..{t_len - 1})')
    unknown = sorted(set(overrides) - set(DEFAULTS.get(family, {})))
    if unknown:
        raise InputError(f'fault {family!r} has no parameter(s) {unknown}')
    params = {**DEFAULTS.get(family, {}), **overrides}
    rng = np.random.default_rng(seed)
    span = np.asarray(action_range, dtype=np.float64)
    tail = out[at:]
    elapsed = np.arange(t_len - at)[:, None] * dt
    signs = rng.choice([-1.0, 1.0], size=dim)
    if family == 'spike':
        joint = rng.integers(dim)
        tail[0, joint] += signs[joint] * params['amplitude'] * span[joint]
    elif family == 'drift':
        tail += elapsed * params['rate'] * span * signs
    elif family == 'oscillation':
        phase = rng.uniform(0, 2 * np.pi, size=dim)
        wave = np.sin(2 * np.pi * params['frequency'] * elapsed + phase)
        tail += params['amplitude'] * span * wave
    elif family == 'freeze':
        tail[:] = tail[0]
    elif family == 'stall':
        tail[:] = tail[0] + params['speed'] * (tail - tail[0])
    elif family == 'noise':
        steps = max(1, round(params['duration'] / dt))
        burst = tail[:steps]
        burst += rng.normal(size=burst.shape) * params['amplitude'] * span
    elif family == 'scale':
        tail[:] = centre + params['factor'] * (tail - centre)
    elif family == 'offset':
        tail += params['amplitude'] * span * signs
    elif family == 'nan':
        tail[:int(params['duration_steps'])] = np.nan
    elif family == UNNORMALIZED:
        tail[:] = (tail - centre) / (0.5 * span)
    return out, Fault(family, int(at), int(seed), params)


# ---------------------------------------------------------------------------------------------
# drills: time-limited faults on a replayed stream (policy_bridge `faults`, `vla-safety demo`)

DRILL_DURATION_S = {UNNORMALIZED: 0.2, 'spike': 0.0}
DEFAULT_DRILL_DURATION_S = 1.0


@dataclass(frozen=True)
class DrillFault:
    """One drill fault: family and the half-open step window [start, stop) it corrupts."""

    family: str
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {'family': self.family, 'start': self.start, 'stop': self.stop}


def parse_drill(specs, dt: float, n_steps: int) -> list[DrillFault]:
    """Parse `family@start_s[+duration_s]` into step windows inside an episode of n_steps."""
    faults = []
    for spec in specs:
        family, _, timing = str(spec).partition('@')
        start_text, _, length_text = timing.partition('+')
        if family not in DEFAULTS and family != UNNORMALIZED:
            raise InputError(f'fault {spec!r}: unknown family {family!r}; choose from '
                             f'{[UNNORMALIZED, *FAULT_FAMILIES]}')
        try:
            start_s = float(start_text)
            length_s = float(length_text) if length_text else \
                DRILL_DURATION_S.get(family, DEFAULT_DRILL_DURATION_S)
        except ValueError:
            raise InputError(f'fault {spec!r}: expected family@start_s[+duration_s]') from None
        start = int(round(start_s / dt))
        if not (np.isfinite(start_s) and np.isfinite(length_s)) or length_s < 0 \
                or not 0 <= start < n_steps:
            raise InputError(f'fault {spec!r}: start must lie in the episode '
                             f'(0..{(n_steps - 1) * dt:.3g} s) '
                             'and the duration be >= 0')
        if family == 'nan':
            length = int(DEFAULTS['nan']['duration_steps'])
        else:
            length = max(1, int(round(length_s / dt)))
        faults.append(DrillFault(family, start, min(n_steps, start + length)))
    return faults


def apply_drill(actions: np.ndarray, normalized: np.ndarray | None, faults: list[DrillFault],
                dt: float, seed: int = 0) -> np.ndarray:
    """
    Copy of an episode [T, D] with each drill fault applied inside its window only.

    Magnitudes refer to the episode's own per-joint spread (action_range of its std); the
    `unnormalized` family needs the episode in normalized units.
    """
    out = np.array(actions, dtype=np.float64)
    spread = action_range(np.maximum(out.std(axis=0), 1e-6))
    centre = out.mean(axis=0)
    for k, fault in enumerate(faults):
        window = slice(fault.start, fault.stop)
        if fault.family == UNNORMALIZED:
            if normalized is None:
                raise InputError('fault unnormalized needs normalized policy outputs '
                                 '(policy_bridge normalized_input: true)')
            out[window] = normalized[window]
            continue
        faulty, _ = inject(actions, fault.family, fault.start, seed + k, spread, centre, dt)
        out[window] = faulty[window]
    return out
