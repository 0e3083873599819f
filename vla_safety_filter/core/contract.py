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

"""The action contract and its per-step guard (DESIGN §3).

The guard projects each requested action onto the box of commands that are reachable from the last
*executed* command within one control period and lie inside the calibrated bounds. Anything that
is not a finite vector of the right length is rejected into a hold of the last executed command.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from .errors import InputError

MODES = ('enforce', 'monitor_only')
VELOCITY_SCALINGS = ('per_joint', 'uniform')
REASONS = ('shape', 'nonfinite', 'position', 'velocity', 'acceleration')
#: A late command may move for at most this many control periods (a stall is never caught up).
MAX_STEP_PERIODS = 2.0
#: Why the executive refuses a whole input, holds, reports a chunk or latches (core.executive).
REFUSALS = ('unknown_joint', 'bad_timing', 'stale', 'hold', 'chunk_jump', 'chunk_speed',
            'following_error')


def _vector(name: str, value, size: int | None = None) -> np.ndarray:
    arr = np.array(value, dtype=np.float64).reshape(-1)
    if size is not None and arr.size != size:
        raise InputError(f'contract field {name!r} has {arr.size} values, expected {size}')
    if not np.all(np.isfinite(arr)):
        raise InputError(f'contract field {name!r} contains a non-finite value')
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Contract:
    """Per-joint position bounds, velocity and optional acceleration / deceleration limits at
    control period dt.

    With `max_deceleration` (or `max_acceleration` alone, which then also bounds braking) the guard
    looks ahead: toward a bound, a joint's speed is capped so that it can still stop before the
    bound at that deceleration (`|v| <= sqrt(2 a_dec d)`, discretised conservatively).
    """

    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    dt: float
    max_acceleration: np.ndarray | None = None
    velocity_scaling: str = 'per_joint'
    mode: str = 'enforce'
    max_deceleration: np.ndarray | None = None

    def __post_init__(self):
        names = tuple(str(n) for n in self.joint_names)
        d = len(names)
        if d == 0:
            raise InputError('contract has no joints')
        if len(set(names)) != d:
            raise InputError(f'contract joint names are not unique: {list(names)}')
        object.__setattr__(self, 'joint_names', names)
        for key in ('lower', 'upper', 'max_velocity'):
            object.__setattr__(self, key, _vector(key, getattr(self, key), d))
        for key in ('max_acceleration', 'max_deceleration'):
            if getattr(self, key) is not None:
                limit = _vector(key, getattr(self, key), d)
                if np.any(limit <= 0):
                    raise InputError(f'contract {key} must be > 0 for every joint')
                object.__setattr__(self, key, limit)
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise InputError(f'contract dt must be a positive number, got {self.dt!r}')
        object.__setattr__(self, 'dt', float(self.dt))
        bad = np.flatnonzero(self.lower > self.upper)
        if bad.size:
            raise InputError(f'contract lower > upper for joint {names[bad[0]]!r}')
        bad = np.flatnonzero(self.max_velocity <= 0)
        if bad.size:
            raise InputError(f'contract max_velocity must be > 0, joint {names[bad[0]]!r} has '
                             f'{self.max_velocity[bad[0]]}')
        if self.velocity_scaling not in VELOCITY_SCALINGS:
            raise InputError(f'velocity_scaling must be one of {VELOCITY_SCALINGS}, '
                             f'got {self.velocity_scaling!r}')
        if self.mode not in MODES:
            raise InputError(f'mode must be one of {MODES}, got {self.mode!r}')

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    @property
    def limits_acceleration(self) -> bool:
        """True when speeding up or braking is limited (the guard then tracks velocity)."""
        return self.max_acceleration is not None or self.max_deceleration is not None

    def braking(self) -> np.ndarray | None:
        """Deceleration the look-ahead toward the bounds plans with (None: no look-ahead)."""
        return self.max_deceleration if self.max_deceleration is not None else \
            self.max_acceleration

    def max_step(self) -> np.ndarray:
        """Largest change per joint allowed in one control period."""
        return self.max_velocity * self.dt

    def project_into_bounds(self, action) -> np.ndarray:
        """Nearest point of [lower, upper] (used to seed a guard when no executed command exists)."""
        return np.minimum(np.maximum(np.asarray(action, dtype=np.float64), self.lower), self.upper)


class Event(NamedTuple):
    """One intervention: which step and joint, why, what was asked, what was executed.

    A rejected input ('shape', 'nonfinite') has magnitude inf and, for 'shape', joint '*'.
    """

    step: int
    joint: str
    reason: str
    requested: float
    executed: float
    magnitude: float


@dataclass
class Guard:
    """Stateful per-step guard of one contract; state is the last executed command and velocity.

    Each step may be given the time `elapsed` since the previous command (monotonic seconds): the
    reachable box is then `vmax * h` (and the acceleration box `amax * h^2`) around the last
    command with `h = min(elapsed, MAX_STEP_PERIODS * dt)`, so two commands close together never
    add up to more than `vmax` over the time between them, a tick that is a little late keeps the
    velocity (and so the acceleration) continuous, and after a stall the arm never catches up with
    a jump. Without `elapsed` a step is one control period `dt`.
    The feasible box is kept in preallocated buffers and updated in place, so the common case (a
    feasible action one period after the last) costs a handful of vector operations.
    """

    contract: Contract
    step_index: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(REASONS + REFUSALS, 0))

    def __post_init__(self):
        c = self.contract
        self._shape = (c.dim,)
        self._prev: np.ndarray | None = None
        self._velocity = np.zeros(c.dim)
        self._last_h: float | None = None   # duration of the last executed step
        self._box_h = c.dt
        self._lo, self._hi, self._diff = np.empty(c.dim), np.empty(c.dim), np.empty(c.dim)
        self._simple_box = False
        self._uniform_scaling = c.velocity_scaling == 'uniform'
        self.set_speed_scale(1.0)

    @property
    def speed_scale(self) -> float:
        return self._scale

    def set_speed_scale(self, scale: float) -> None:
        """Scale the velocity, acceleration and deceleration limits by `scale` in (0, 1] (first
        runs on hardware); takes effect from the next step."""
        scale = speed_scale_value(scale)
        c = self.contract
        self._scale = scale
        self._vmax = c.max_velocity * scale
        self._vstep = self._vmax * c.dt
        inf = np.full(c.dim, np.inf)
        self._amax = inf if c.max_acceleration is None else c.max_acceleration * scale
        self._adec = self._amax if c.max_deceleration is None else c.max_deceleration * scale
        brake = c.braking()
        self._abrake = None if brake is None else brake * scale
        if self._prev is not None:
            self._set_box(self._box_h)

    @property
    def prev(self) -> np.ndarray | None:
        """The last executed command (None before `reset`)."""
        return None if self._prev is None else self._prev.copy()

    @property
    def velocity(self) -> np.ndarray:
        """Velocity of the last executed step (units/s; kept up to date with an acceleration
        limit, the only thing that uses it); zero after a reset at rest."""
        return self._velocity.copy()

    def reset(self, executed, velocity=None) -> None:
        """Seed the guard with the command the arm is executing now (e.g. from /joint_states).

        Without `velocity` the arm is taken to be at rest, as after every hold, stop and resume.
        """
        prev = np.array(executed, dtype=np.float64).reshape(-1)
        if prev.size != self.contract.dim or not np.all(np.isfinite(prev)):
            raise InputError(f'cannot seed the guard with {prev.size} values '
                             f'(need {self.contract.dim} finite values)')
        vel = np.zeros(self.contract.dim)
        if velocity is not None:
            given = np.array(velocity, dtype=np.float64).reshape(-1)
            if given.size == vel.size and np.all(np.isfinite(given)):
                vel = np.clip(given, -self._vmax, self._vmax)
        self._prev = prev
        self._velocity = vel
        self._last_h = None
        self._set_box(self.contract.dt)

    def _period(self, elapsed) -> float:
        """The time one step may use: `elapsed`, at most MAX_STEP_PERIODS control periods."""
        if elapsed is None:
            return self.contract.dt
        return min(max(float(elapsed), 0.0), MAX_STEP_PERIODS * self.contract.dt)

    def _set_box(self, h: float) -> None:
        """Feasible box around self._prev for a step of h seconds, by priority: position and
        velocity (outside the bounds the rate limit wins), then braking toward the bounds, then
        acceleration / deceleration, each giving way to the ones before when they conflict."""
        c, prev, lo, hi = self.contract, self._prev, self._lo, self._hi
        vs = self._vstep if h == c.dt else self._vmax * h
        np.maximum(c.lower, np.subtract(prev, vs, out=lo), out=lo)
        np.minimum(c.upper, np.add(prev, vs, out=hi), out=hi)
        inside = bool(np.all(prev >= c.lower) and np.all(prev <= c.upper))
        if not inside:
            np.minimum(lo, prev + vs, out=lo)
            np.maximum(hi, prev - vs, out=hi)
        if c.limits_acceleration:
            if self._abrake is not None and h > 0:
                self._brake(h)
            # velocities are averages over their steps: their change is spread over the time
            # between the two steps' midpoints, (h + h_last) / 2
            v, span = self._velocity, 0.5 * (h + (self._last_h or h))
            faster = np.where(v >= 0, self._amax, self._adec)    # change toward +
            slower = np.where(v > 0, self._adec, self._amax)     # change toward -
            a_lo = np.minimum(np.maximum(prev + (v - slower * span) * h, lo), hi)
            a_hi = np.minimum(np.maximum(prev + (v + faster * span) * h, lo), hi)
            lo[:], hi[:] = a_lo, a_hi
        self._box_h = h
        # With prev inside the bounds and no acceleration limit, a feasible action keeps it inside.
        self._simple_box = inside and not c.limits_acceleration and h == c.dt

    def _brake(self, h: float) -> None:
        """Cap the speed toward each bound so the joint can still stop before it: after this
        step (v over h) braking at a needs v^2 / 2a <= d - v h, i.e. v <= -a h + sqrt(a^2 h^2 +
        2 a d), d the distance left. Never forces motion; gives way to position and velocity."""
        c, prev, lo, hi, a = self.contract, self._prev, self._lo, self._hi, self._abrake
        room_up = np.maximum(c.upper - prev, 0.0)
        room_down = np.maximum(prev - c.lower, 0.0)
        up = -a * h + np.sqrt((a * h) ** 2 + 2.0 * a * room_up)
        down = -a * h + np.sqrt((a * h) ** 2 + 2.0 * a * room_down)
        np.maximum(np.minimum(hi, prev + up * h), lo, out=hi)
        np.minimum(np.maximum(lo, prev - down * h), hi, out=lo)

    def _advance(self, out: np.ndarray, h: float) -> None:
        """Make `out` the last executed command, reached in h seconds."""
        if h > 0:
            self._velocity = (out - self._prev) / h
            self._last_h = h
        self._prev = out.copy()
        self._set_box(self.contract.dt)

    def step(self, action, elapsed: float | None = None) -> tuple[np.ndarray, tuple[Event, ...]]:
        """Guard one requested action `elapsed` s after the last command (default: dt).

        Returns (command to execute, interventions).
        """
        if self._prev is None:
            raise RuntimeError('Guard.step called before reset(): seed it with the executed command')
        k = self.step_index
        self.step_index = k + 1
        h = self._period(elapsed)
        if h != self._box_h:
            self._set_box(h)
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            return self._reject(k, 'shape', np.nan, h)
        if a.shape != self._shape:
            return self._reject(k, 'shape', float(a.size), h)
        lo, hi = self._lo, self._hi
        if self._uniform_scaling:
            out = self._uniform(a)
        else:
            out = np.maximum(a, lo)
            np.minimum(out, hi, out=out)
        # out - a is exactly zero everywhere iff a was feasible and finite (NaN/Inf leave a non-zero).
        if self._simple_box and not np.count_nonzero(np.subtract(out, a, out=self._diff)):
            vs, c = self._vstep, self.contract   # no acceleration limit: velocity is not needed
            self._prev[:] = out
            np.maximum(c.lower, np.subtract(out, vs, out=lo), out=lo)
            np.minimum(c.upper, np.add(out, vs, out=hi), out=hi)
            return out, ()
        if not np.all(np.isfinite(a)):
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            return self._reject(k, 'nonfinite', float(a[bad]), h, bad)
        events = self._events(k, a, out, h)
        if self.contract.mode == 'monitor_only':
            out = a.copy()
        self._advance(out, h)
        return out, events

    def feasible(self, action, elapsed: float | None = None) -> bool:
        """Whether `action` would pass unchanged `elapsed` s after the last command (no step)."""
        h = self._period(elapsed)
        if h != self._box_h:
            self._set_box(h)
        a = np.asarray(action, dtype=np.float64)
        return bool(np.all(a >= self._lo) and np.all(a <= self._hi))

    def hold(self, elapsed: float | None = None) -> np.ndarray:
        """Hold the last executed command: brake within the acceleration box (if any) and move
        back toward the bounds if outside them; no event (the caller reports why it holds)."""
        if self._prev is None:
            raise RuntimeError('Guard.hold called before reset(): seed it with the executed command')
        self.step_index += 1
        h = self._period(elapsed)
        if h != self._box_h:
            self._set_box(h)
        out = np.minimum(np.maximum(self._prev, self._lo), self._hi)
        self._advance(out, h)
        return out

    def _uniform(self, a: np.ndarray) -> np.ndarray:
        """Scale the whole step by one factor so the direction of motion is kept; a request
        inside the feasible box passes unchanged (bit for bit)."""
        lo, hi = self._lo, self._hi
        if np.all(a >= lo) and np.all(a <= hi):
            return a.copy()
        prev = self._prev
        delta = np.minimum(np.maximum(a, self.contract.lower), self.contract.upper) - prev
        # the largest factor in [0, 1] keeping every joint inside the box (one factor for all:
        # the direction of motion is kept, and all joints brake together)
        room = np.where(delta > 0, hi - prev, lo - prev)
        moving = delta != 0
        ratio = np.ones_like(delta)
        with np.errstate(over='ignore'):
            np.divide(room, delta, out=ratio, where=moving)
        factor = float(np.clip(ratio[moving].min(), 0.0, 1.0)) if moving.any() else 1.0
        out = prev + delta * factor
        return np.minimum(np.maximum(out, lo), hi)

    def _events(self, k: int, a: np.ndarray, out: np.ndarray, h: float) -> tuple[Event, ...]:
        c = self.contract
        reach = self._vmax * h
        reach_lo, reach_hi = self._prev - reach, self._prev + reach
        events = []
        for j in np.flatnonzero(out != a):
            if a[j] < c.lower[j] or a[j] > c.upper[j]:
                reason = 'position'
            elif a[j] < reach_lo[j] or a[j] > reach_hi[j] or c.velocity_scaling == 'uniform':
                reason = 'velocity'
            else:
                reason = 'acceleration'
            self.counts[reason] += 1
            events.append(Event(k, c.joint_names[j], reason, float(a[j]), float(out[j]),
                                abs(float(a[j]) - float(out[j]))))
        return tuple(events)

    def _reject(self, k: int, reason: str, requested: float, h: float, joint: int | None = None):
        """Hold (braking within the box); the rejected input is reported, never executed."""
        self.counts[reason] += 1
        hold = np.minimum(np.maximum(self._prev, self._lo), self._hi)
        self._advance(hold, h)
        if joint is None:
            name, held = '*', float('nan')
        else:
            name, held = self.contract.joint_names[joint], float(hold[joint])
        return hold, (Event(k, name, reason, requested, held, float('inf')),)

    def run(self, actions: Sequence) -> tuple[np.ndarray, list[Event]]:
        """Guard a chunk (or a whole episode) sequentially; returns executed [T, D] and all events."""
        executed = np.empty((len(actions), self.contract.dim))
        events: list[Event] = []
        for t, action in enumerate(actions):
            executed[t], ev = self.step(action)
            events.extend(ev)
        return executed, events


def speed_scale_value(scale) -> float:
    """A valid speed scale: a number in (0, 1] (InputError otherwise)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InputError(f'speed_scale must be a number in (0, 1], got {scale!r}') from None
    if not 0.0 < value <= 1.0:
        raise InputError(f'speed_scale must be in (0, 1], got {scale!r}')
    return value


def audit(contract: Contract, seed, commands, times=None, window: float = 0.0,
          time_slack: float = 1e-4, tol: float = 1e-9) -> dict:
    """Check an executed command stream [N, D] against the contract, starting from `seed`.

    Counts commands with any joint outside [lower, upper] and consecutive commands (the first one
    against the seed) that moved a joint more than vmax*dt (with `times`: vmax * MAX_STEP_PERIODS
    * dt, the most a late command may move): what a reviewer asks of a recording.
    With the commands' `times` (seconds, N values) it also checks velocity over elapsed time,
    |q_j - q_i| <= vmax * (t_j - t_i + time_slack) for each command i and the first j at least
    `window` s later (0: the next one), and with an acceleration limit the change between
    consecutive such velocities against amax times their elapsed time. Use a window of a few
    periods for arrival times (delivery jitter), 0 for publish stamps.
    """
    commands = np.asarray(commands, dtype=np.float64).reshape(-1, contract.dim)
    previous = np.vstack([np.asarray(seed, dtype=np.float64).reshape(1, contract.dim), commands])
    steps = np.abs(np.diff(previous, axis=0))
    finite = np.isfinite(commands).all(axis=1)
    outside = ((commands < contract.lower - tol) | (commands > contract.upper + tol)).any(axis=1)
    most = contract.max_step() * (1.0 if times is None else MAX_STEP_PERIODS)
    too_fast = (steps > most + tol).any(axis=1)
    report = {'commands': int(len(commands)), 'non_finite': int((~finite).sum()),
              'outside_bounds': int(outside.sum()), 'over_rate_limit': int(too_fast.sum()),
              'max_step_ratio': float((steps / contract.max_step()).max()) if len(commands) else 0.0}
    if times is not None and len(commands) > 1:
        report.update(_audit_over_time(contract, commands, np.asarray(times, float), window,
                                       time_slack))
    return report


def _audit_over_time(contract: Contract, commands: np.ndarray, times: np.ndarray, window: float,
                     slack: float) -> dict:
    """Velocity and acceleration over elapsed time (see `audit`)."""
    if times.shape != (len(commands),) or np.any(np.diff(times) < 0):
        raise InputError('audit times must be one non-decreasing time per command')
    later = np.searchsorted(times, times + max(window, 0.0), side='left' if window > 0 else 'right')
    start = np.flatnonzero(later < len(times))
    end = later[start]
    span = (times[end] - times[start])[:, None] + slack
    velocity = (commands[end] - commands[start]) / span
    speed_ratio = np.abs(velocity) / contract.max_velocity
    report = {'max_speed_ratio': float(speed_ratio.max()) if len(start) else 0.0,
              'over_speed': int((speed_ratio > 1.0 + 1e-9).any(axis=1).sum())}
    if contract.max_acceleration is not None:
        chained = np.flatnonzero(np.isin(end, start))      # velocity i followed by one from end
        nxt = np.searchsorted(start, end[chained])
        elapsed = (times[end[nxt]] - times[start[chained]])[:, None] / 2 + slack
        accel = np.abs(velocity[nxt] - velocity[chained]) / elapsed / contract.max_acceleration
        report.update(max_accel_ratio=float(accel.max()) if len(chained) else 0.0,
                      over_acceleration=int((accel > 1.0 + 1e-9).any(axis=1).sum()))
    return report
