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
An optional Cartesian workspace box for the end effector (the seed toolkit's `workspace_bounds`).

Joint-space actions: the guard's command is checked through forward kinematics; a command whose
end effector would leave the box is cut back along the step from the last executed command to
the last fraction inside it (bisection), or held where the arm already is outside and the step
would take it further out. End-effector-delta actions (OpenVLA, LIBERO, Bridge): `DeltaTarget`
keeps the integrated target inside the box. Positions are in metres in the URDF's root frame.
"""
from __future__ import annotations

import numpy as np

from .contract import Event
from .errors import InputError
from .kinematics import UrdfKinematics

#: safety_filter parameters of the workspace box ('' / empty: no box).
PARAMETERS = ('workspace_urdf', 'workspace_frame', 'workspace_lower', 'workspace_upper')
#: Bisection steps of a cut: the fraction kept is within 2**-12 of the box's edge along the step.
CUT_ITERATIONS = 12


def box(lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """Return a validated box: three finite lower <= upper values each (metres)."""
    lo = np.array(lower, dtype=np.float64).reshape(-1)
    hi = np.array(upper, dtype=np.float64).reshape(-1)
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) \
            or not np.all(np.isfinite(hi)):
        raise InputError('a workspace box needs three finite lower and three finite upper values')
    if np.any(lo > hi):
        raise InputError(f'workspace lower {lo.tolist()} is above upper {hi.tolist()}')
    return lo, hi


def distance(point: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Return how far `point` is outside the box (0 inside)."""
    return float(np.linalg.norm(point - np.clip(point, lower, upper)))


class Workspace:
    """The end effector of joint-space commands, kept in a box through forward kinematics."""

    def __init__(self, lower, upper, fk, iterations: int = CUT_ITERATIONS):
        self.lower, self.upper = box(lower, upper)
        self.fk = fk
        self.iterations = int(iterations)

    def contains(self, q) -> bool:
        """Whether the end effector at joint positions `q` is inside the box."""
        p = self.fk(q)
        return bool(np.all(p >= self.lower) and np.all(p <= self.upper))

    def cut(self, prev: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, bool]:
        """
        Return the command to execute instead of `out` from `prev`, and whether it was cut.

        Inside the box: `out` itself, or the last in-box point of the step found by bisection.
        Already outside: `out` if it brings the end effector closer to the box, else `prev`.
        """
        if self.contains(out):
            return out, False
        if not self.contains(prev):
            before = distance(self.fk(prev), self.lower, self.upper)
            after = distance(self.fk(out), self.lower, self.upper)
            return (out, False) if after < before else (prev.copy(), True)
        step = out - prev
        inside, outside = 0.0, 1.0
        for _ in range(self.iterations):
            middle = 0.5 * (inside + outside)
            if self.contains(prev + middle * step):
                inside = middle
            else:
                outside = middle
        return prev + inside * step, True


class DeltaTarget:
    """
    The integrated end-effector target of delta actions, kept inside a box.

    Each delta moves the target; a delta that would take it out of the box is cut per axis to the
    box's face. From outside, an axis may move toward the box but never further out (no jump).
    """

    def __init__(self, lower, upper, position):
        self.lower, self.upper = box(lower, upper)
        self.reset(position)

    def reset(self, position) -> None:
        """Start integrating from the measured end-effector `position`."""
        target = np.array(position, dtype=np.float64).reshape(-1)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise InputError('an end-effector position needs three finite values')
        self.target = target

    def step(self, delta) -> tuple[np.ndarray, np.ndarray]:
        """Return the delta to execute (xyz) and, per axis, whether it was cut."""
        delta = np.asarray(delta, dtype=np.float64).reshape(-1)[:3]
        lo = np.minimum(self.lower, self.target)
        hi = np.maximum(self.upper, self.target)
        target = np.clip(self.target + delta, lo, hi)
        allowed = target - self.target
        self.target = target
        return allowed, allowed != delta


def delta_events(step: int, delta, allowed, axes=('x', 'y', 'z')) -> tuple[Event, ...]:
    """Return one 'workspace' event per axis whose end-effector delta DeltaTarget cut."""
    delta = np.asarray(delta, dtype=np.float64).reshape(-1)[:3]
    return tuple(Event(step, axes[i], 'workspace', float(delta[i]), float(allowed[i]),
                       abs(float(delta[i]) - float(allowed[i])))
                 for i in np.flatnonzero(allowed != delta))


def workspace_from_params(params: dict, joint_names, source: str = 'parameters'):
    """Return the Workspace the safety_filter parameters describe, or None without a URDF."""
    path = params.get('workspace_urdf') or ''
    if not path:
        return None
    frame = params.get('workspace_frame') or ''
    if not frame:
        raise InputError(f'{source}: workspace_urdf is set but workspace_frame is empty')
    try:
        lower, upper = box(params.get('workspace_lower'), params.get('workspace_upper'))
    except (TypeError, ValueError) as exc:
        raise InputError(f'{source}: workspace_lower/workspace_upper: {exc}') from None
    except InputError as exc:
        raise InputError(f'{source}: {exc}') from None
    return Workspace(lower, upper, UrdfKinematics(path, frame, joint_names))
