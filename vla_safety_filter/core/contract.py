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
The action contract and its per-step guard (doc/safety.md).

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
REASONS = ('shape', 'nonfinite', 'position', 'velocity', 'acceleration', 'soft_limit', 'jerk',
           'workspace')
#: A late command may move for at most this many control periods (a stall is never caught up).
MAX_STEP_PERIODS = 2.0
_FLOAT64 = np.dtype(np.float64)     # requests of this type (and shape) are copied as they are
_STALE = np.inf                     # the box's step duration when it must be built again
#: Why the executive refuses a whole input, holds, reports a chunk or latches (core.executive).
REFUSALS = ('unknown_joint', 'bad_timing', 'stale', 'hold', 'chunk_jump', 'chunk_speed',
            'following_error')


def _vector(name: str, value, size: int | None = None, infinite: bool = False) -> np.ndarray:
    """Return a read-only float vector of `size` values (finite, or with `infinite` not NaN)."""
    arr = np.array(value, dtype=np.float64).reshape(-1)
    if size is not None and arr.size != size:
        raise InputError(f'contract field {name!r} has {arr.size} values, expected {size}')
    if np.any(np.isnan(arr)) if infinite else not np.all(np.isfinite(arr)):
        raise InputError(f'contract field {name!r} contains a non-finite value')
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Contract:
    """
    Per-joint position bounds, velocity and optional limits at control period dt.

    With `max_deceleration` (or `max_acceleration` alone, which then also bounds braking) the guard
    looks ahead: toward a bound, a joint's speed is capped so that it can still stop before the
    bound at that deceleration (`|v| <= sqrt(2 a_dec d)`, discretised conservatively).
    Soft limits (ros2_control / URDF `<safety_controller>`): `soft_lower`, `soft_upper` (+-inf:
    none on that side) and `k_position` bound the velocity to `[-k (q - soft_lower), -k (q -
    soft_upper)]` within +-max_velocity, q the last command. `max_jerk` bounds the change of the
    acceleration between steps. `workspace` (core.workspace.Workspace) is an optional Cartesian
    box for the end effector.
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
    soft_lower: np.ndarray | None = None
    soft_upper: np.ndarray | None = None
    k_position: np.ndarray | None = None
    max_jerk: np.ndarray | None = None
    workspace: object = None

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
        for key in ('max_acceleration', 'max_deceleration', 'k_position', 'max_jerk'):
            if getattr(self, key) is not None:
                limit = _vector(key, getattr(self, key), d)
                if np.any(limit <= 0):
                    raise InputError(f'contract {key} must be > 0 for every joint')
                object.__setattr__(self, key, limit)
        self._check_soft_limits(d)
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

    def _check_soft_limits(self, d: int) -> None:
        """Validate soft limits: all three fields or none, soft_lower <= soft_upper."""
        given = [self.soft_lower is not None, self.soft_upper is not None,
                 self.k_position is not None]
        if not any(given):
            return
        if not all(given):
            raise InputError('contract soft limits need soft_lower, soft_upper and k_position')
        for key in ('soft_lower', 'soft_upper'):
            object.__setattr__(self, key, _vector(key, getattr(self, key), d, infinite=True))
        bad = np.flatnonzero(self.soft_lower > self.soft_upper)
        if bad.size:
            raise InputError(f'contract soft_lower > soft_upper for joint '
                             f'{self.joint_names[bad[0]]!r}')

    @property
    def dim(self) -> int:
        """Return the number of joints."""
        return len(self.joint_names)

    @property
    def has_soft_limits(self) -> bool:
        """Whether soft limits (k_position) shape the velocity near the soft bounds."""
        return self.k_position is not None

    @property
    def limits_acceleration(self) -> bool:
        """Whether speeding up or braking is limited (the guard then tracks velocity)."""
        return self.max_acceleration is not None or self.max_deceleration is not None or \
            self.max_jerk is not None

    def braking(self) -> np.ndarray | None:
        """Deceleration the look-ahead toward the bounds plans with (None: no look-ahead)."""
        return self.max_deceleration if self.max_deceleration is not None else \
            self.max_acceleration

    def max_step(self) -> np.ndarray:
        """Largest change per joint allowed in one control period."""
        return self.max_velocity * self.dt

    def project_into_bounds(self, action) -> np.ndarray:
        """Return the nearest point of [lower, upper] (seeds a guard with no executed command)."""
        return np.minimum(np.maximum(np.asarray(action, dtype=np.float64), self.lower), self.upper)


class Event(NamedTuple):
    """
    One intervention: which step and joint, why, what was asked, what was executed.

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
    """
    Stateful per-step guard of one contract; state is the last executed command and velocity.

    Each step may be given the time `elapsed` since the previous command (monotonic seconds): the
    reachable box is then `vmax * h` (and the acceleration box `amax * h^2`) around the last
    command with `h = min(elapsed, MAX_STEP_PERIODS * dt)`, so two commands close together never
    add up to more than `vmax` over the time between them, a tick that is a little late keeps the
    velocity (and so the acceleration) continuous, and after a stall the arm never catches up with
    a jump. Without `elapsed` a step is one control period `dt`.
    The feasible box is kept in preallocated buffers and updated in place. With position and
    velocity limits only, a request is stacked as `[a | -a | a | -a]` and compared at once with
    `[lower | -upper | prev - vmax h | -prev - vmax h]` (a feasible request is recognised by one
    comparison; the reachable half of the next box costs one vector operation), and a caller
    that computes its request anyway can write it stacked where the guard reads it
    (`request_buffer`, `step_request`): the common case is a handful of numpy calls.
    The contract's optional `workspace` (core.workspace.Workspace) cuts back steps whose end
    effector would leave its Cartesian box.
    """

    contract: Contract
    step_index: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(REASONS + REFUSALS, 0))

    def __post_init__(self):
        c = self.contract
        self._shape = (c.dim,)
        self._prev: np.ndarray | None = None
        self._velocity = np.zeros(c.dim)
        self._accel = np.zeros(c.dim)       # acceleration of the last step (tracked with jerk)
        self._last_h: float | None = None   # duration of the last executed step
        self._box_h = self._dt = c.dt
        self._max_h = MAX_STEP_PERIODS * c.dt
        self._half_dt = 0.5 * c.dt
        self._lohi2, self._hi = np.empty(2 * c.dim), np.empty(c.dim)     # [lo | -hi], hi
        self._work = (np.empty(c.dim), np.empty(c.dim))
        self._simple_box = False
        self._plain = not c.limits_acceleration and not c.has_soft_limits and \
            c.workspace is None
        # [prev | -prev | ...] and the request's [a | -a | a | -a] (alternating buffers, with
        # views of their parts); with only position and velocity limits the box lives in
        # [lower | -upper | prev - vs | -prev - vs] and [a | -a | a | -a] >= box everywhere is
        # the whole feasibility test
        self._p2, self._a2 = _quad(c.dim), _quad(c.dim)
        self._p2_ok, self._inside, self._lohi_ok = False, False, False
        self._bounds2 = np.concatenate([c.lower, -c.upper])
        self._box4 = np.concatenate([self._bounds2, np.empty(2 * c.dim)])
        self._off2, self._h = np.empty(2 * c.dim), np.zeros(())
        self._mask4 = np.empty(4 * c.dim, dtype=bool)
        self._all_true = np.ones(4 * c.dim, dtype=bool).tobytes()   # the mask when all hold
        self._box_views()
        self._uniform_scaling = c.velocity_scaling == 'uniform'
        self._soft_box = self._pre_jerk = None   # boxes before those limits (event reasons)
        self._workspace = c.workspace
        # braking plans toward the soft bounds as well as the hard ones
        soft = c.has_soft_limits
        brake_lower = np.maximum(c.lower, c.soft_lower) if soft else c.lower
        brake_upper = np.minimum(c.upper, c.soft_upper) if soft else c.upper
        self._brake_bounds2 = np.concatenate([brake_upper, -brake_lower])
        self._travel2 = np.empty(2 * c.dim)
        self.set_speed_scale(1.0)

    def __setstate__(self, state: dict) -> None:
        """Restore a copied or unpickled guard: its buffer views view its own buffers."""
        self.__dict__.update(state)
        self._p2, self._a2 = _quad_of(self._p2[0]), _quad_of(self._a2[0])
        self._box_views()
        self._fast = (self._box4, self._mask4, self._all_true, self._reach2, self._neg_vstep2)

    def _box_views(self) -> None:
        """Make the views of the box: its reachable half, its parts, the bounds check's mask."""
        d = self.contract.dim
        self._reach2 = self._box4[2 * d:]
        self._mask2 = self._mask4[:2 * d]
        self._lo, self._neg_hi = self._lohi2[:d], self._lohi2[d:]

    @property
    def speed_scale(self) -> float:
        """Return the speed scale in force."""
        return self._scale

    def set_speed_scale(self, scale: float) -> None:
        """
        Scale the velocity, acceleration, deceleration and jerk limits by `scale` in (0, 1].

        For first runs on hardware; takes effect from the next step.
        """
        scale = speed_scale_value(scale)
        c = self.contract
        self._scale = scale
        self._vmax = c.max_velocity * scale
        self._neg_vmax = -self._vmax
        self._vstep = self._vmax * c.dt
        self._neg_vmax2 = np.concatenate([self._neg_vmax, self._neg_vmax])
        self._neg_vstep2 = np.concatenate([-self._vstep, -self._vstep])
        self._neg_half_step2 = self._neg_vmax2 * self._half_dt
        # lower, upper and vmax as Python floats, for naming an event's reason
        self._limit_floats = (c.lower.tolist(), c.upper.tolist(), self._vmax.tolist())
        # what the fast path of `step` reads, in one attribute
        self._fast = (self._box4, self._mask4, self._all_true, self._reach2, self._neg_vstep2)
        inf = np.full(c.dim, np.inf)
        self._amax = inf if c.max_acceleration is None else c.max_acceleration * scale
        self._adec = self._amax if c.max_deceleration is None else c.max_deceleration * scale
        brake = c.braking()
        self._abrake = None if brake is None else brake * scale
        self._jmax = None if c.max_jerk is None else c.max_jerk * scale
        self._brake_cache = self._change_cache = None
        if self._prev is not None and self._box_h != _STALE:
            self._set_box(self._box_h)

    @property
    def prev(self) -> np.ndarray | None:
        """Return the last executed command (None before `reset`)."""
        return None if self._prev is None else self._prev.copy()

    @property
    def velocity(self) -> np.ndarray:
        """
        Return the velocity of the last executed step (units/s).

        Kept up to date with an acceleration or jerk limit, the only things that use it; zero
        after a reset at rest.
        """
        return self._velocity.copy()

    def reset(self, executed, velocity=None) -> None:
        """
        Seed the guard with the command the arm is executing now (e.g. from /joint_states).

        Without `velocity` the arm is taken to be at rest, as after every hold, stop and resume;
        the acceleration is taken to be zero.
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
        self._set_prev(prev)
        self._velocity = vel
        self._accel = np.zeros(self.contract.dim)
        self._last_h = None
        self._set_box(self.contract.dt)

    def _period(self, elapsed) -> float:
        """Return the time one step may use: `elapsed`, at most MAX_STEP_PERIODS periods."""
        if elapsed is None:
            return self._dt
        return min(max(float(elapsed), 0.0), self._max_h)

    def _set_prev(self, prev: np.ndarray) -> None:
        """Make `prev` (owned by the guard) the last executed command."""
        self._prev = prev
        self._p2_ok = False

    def _sync_p2(self) -> None:
        """Write [prev | -prev] and note whether prev is inside the bounds."""
        _, pair, head, tail, _ = self._p2
        head[:] = self._prev
        np.negative(self._prev, out=tail)
        self._inside = np.greater_equal(pair, self._bounds2, out=self._mask2).tobytes() == \
            self._all_true[:pair.size]
        self._p2_ok = True

    def _ensure_lohi(self) -> None:
        """Make self._lo and self._hi the box when it is kept stacked (see `step`)."""
        if not self._lohi_ok:   # [lo | -hi] = max([lower | -upper], [prev - vs | -prev - vs])
            np.maximum(self._bounds2, self._reach2, out=self._lohi2)
            np.negative(self._neg_hi, self._hi)
            self._lohi_ok = True

    def _set_box(self, h: float) -> None:
        """
        Compute the feasible box around self._prev for a step of h seconds.

        By priority: position and velocity (outside the bounds the rate limit wins), braking
        toward the bounds (hard and soft), acceleration / deceleration, soft limits (k_position),
        jerk; each gives way to the ones before when they conflict.
        """
        if not self._p2_ok:
            self._sync_p2()
        self._box_h = h
        c, inside = self.contract, self._inside
        # With prev inside the bounds and no limit beyond position and velocity, a feasible
        # action keeps it inside.
        self._simple_box = inside and self._plain
        if self._simple_box:
            # the reachable half [prev - vs | -prev - vs]; lo = max(lower, prev - vs), -hi =
            # max(-upper, -prev - vs) when the general path needs them
            if h == c.dt:
                off = self._neg_vstep2
            else:   # h as a 0-d array and the outputs positional: each call costs less
                self._h[()] = h
                off = np.multiply(self._neg_vmax2, self._h, self._off2)
            np.add(self._p2[1], off, self._reach2)
            self._lohi_ok = False
            return
        self._lohi_ok = True
        prev, lo, hi = self._prev, self._lo, self._hi
        vs = self._vstep if h == c.dt else self._vmax * h
        np.maximum(c.lower, np.subtract(prev, vs, out=lo), out=lo)
        np.minimum(c.upper, np.add(prev, vs, out=hi), out=hi)
        if not inside:
            np.minimum(lo, prev + vs, out=lo)
            np.maximum(hi, prev - vs, out=hi)
        if c.limits_acceleration:
            if self._abrake is not None and h > 0:
                self._brake(h)
            self._accelerate(h)
        if c.has_soft_limits:
            self._soft(h)
        if self._jmax is not None:
            self._jerk(h)

    def _accelerate(self, h: float) -> None:
        """
        Bound the change of velocity: speeding up by amax, slowing down by adec, over the span.

        Velocities are averages over their steps: their change is spread over the time between
        the two steps' midpoints, (h + h_last) / 2. Gives way to position and velocity.
        """
        prev, lo, hi, v = self._prev, self._lo, self._hi, self._velocity
        span = 0.5 * (h + (self._last_h or h))
        if self._adec is self._amax:
            slower = faster = self._change(span)
        else:
            faster = np.where(v >= 0, self._amax, self._adec) * span    # change toward +
            slower = np.where(v > 0, self._adec, self._amax) * span     # change toward -
        t, u = self._work
        np.subtract(v, slower, out=t)
        np.multiply(t, h, out=t)
        np.add(prev, t, out=t)
        np.maximum(t, lo, out=t)
        np.minimum(t, hi, out=t)            # the new lo, from the old hi
        np.add(v, faster, out=u)
        np.multiply(u, h, out=u)
        np.add(prev, u, out=u)
        np.maximum(u, lo, out=u)
        np.minimum(u, hi, out=hi)
        lo[:] = t

    def _change(self, span: float) -> np.ndarray:
        """Return amax x span, the most velocity change over span s (cached per span)."""
        if self._change_cache is None or self._change_cache[0] != span:
            self._change_cache = (span, self._amax * span)
        return self._change_cache[1]

    def _brake_terms(self, h: float) -> tuple:
        """Return (a L)^2, -a L and 2 a, each twice over (both bounds), for steps of h."""
        if self._brake_cache is None or self._brake_cache[0] != h:
            a = self._abrake
            lag = h if self._jmax is None else h + a / self._jmax
            self._brake_cache = (h, *(np.concatenate([x, x]) for x in
                                      ((a * lag) ** 2, -a * lag, 2.0 * a)))
        return self._brake_cache[1:]

    def _brake(self, h: float) -> None:
        """
        Cap the speed toward each bound so the joint can still stop before it.

        After this step (v over h) braking at a needs v^2 / 2a <= d - v L, i.e. v <= -a L +
        sqrt(a^2 L^2 + 2 a d), d the distance left and L = h (plus a / jerk, the time to build up
        the deceleration, with a jerk limit). Never forces motion; gives way to position and
        velocity.
        """
        prev, lo, hi, d = self._prev, self._lo, self._hi, self.contract.dim
        square, neg, two_a = self._brake_terms(h)
        # [upper - prev | prev - lower] = [upper | -lower] - [prev | -prev], then each
        # distance becomes the most travel toward that bound in h s
        travel = np.subtract(self._brake_bounds2, self._p2[1], out=self._travel2)
        np.maximum(travel, 0.0, out=travel)
        np.multiply(two_a, travel, out=travel)
        np.add(square, travel, out=travel)
        np.sqrt(travel, out=travel)
        np.add(neg, travel, out=travel)
        np.multiply(travel, h, out=travel)
        up, down = travel[:d], travel[d:]
        np.maximum(np.minimum(hi, np.add(prev, up, out=up), out=up), lo, out=hi)
        np.minimum(np.maximum(lo, np.subtract(prev, down, out=down), out=down), hi, out=lo)

    def _soft(self, h: float) -> None:
        """
        Bound the velocity to [-k (q - soft_lower), -k (q - soft_upper)] within +-vmax.

        The ros2_control soft limiter's rule, q the last command: the joint approaches a soft
        bound exponentially, returns from outside, and never steps across a soft bound. Gives
        way to the limits before it (see _set_box).
        """
        c, prev, lo, hi = self.contract, self._prev, self._lo, self._hi
        v_lo = _clip(c.k_position * (c.soft_lower - prev), self._neg_vmax, self._vmax)
        v_hi = _clip(c.k_position * (c.soft_upper - prev), self._neg_vmax, self._vmax)
        s_lo, s_hi = prev + v_lo * h, prev + v_hi * h
        # a step never crosses a soft bound (k h > 1 would overshoot it)
        s_lo = np.where(prev >= c.soft_lower, np.maximum(s_lo, c.soft_lower),
                        np.minimum(s_lo, c.soft_lower))
        s_hi = np.where(prev <= c.soft_upper, np.minimum(s_hi, c.soft_upper),
                        np.maximum(s_hi, c.soft_upper))
        self._soft_box = (s_lo, s_hi)
        lo[:], hi[:] = _clip(s_lo, lo, hi), _clip(s_hi, lo, hi)

    def _jerk(self, h: float) -> None:
        """
        Let the acceleration change by at most jerk x the time since the last one.

        The accelerations are taken at the last two commands, so that time is the last step's
        duration. The acceleration is also capped so the velocity can level off at +-vmax with
        that jerk (a^2 / 2j of velocity is still gained while it ramps down). Gives way to every
        other limit (braking included).
        """
        prev, lo, hi, j, v = self._prev, self._lo, self._hi, self._jmax, self._velocity
        self._pre_jerk = (lo.copy(), hi.copy())
        span = 0.5 * (h + (self._last_h or h))
        change = j * (self._last_h or h)
        a_lo, a_hi = self._accel - change, self._accel + change
        up = -j * span + np.sqrt((j * span) ** 2 + 2.0 * j * np.maximum(self._vmax - v, 0.0))
        down = j * span - np.sqrt((j * span) ** 2 + 2.0 * j * np.maximum(self._vmax + v, 0.0))
        a_hi = _clip(up, a_lo, a_hi)
        a_lo = _clip(down, a_lo, a_hi)
        base = prev + h * v
        j_lo = _clip(base + h * span * a_lo, lo, hi)
        j_hi = _clip(base + h * span * a_hi, lo, hi)
        lo[:], hi[:] = j_lo, j_hi

    def _rest(self, h: float) -> np.ndarray:
        """
        Return where a hold aims: the last command, or with a jerk limit, the next point of a stop.

        With a jerk limit the deceleration follows |a| = sqrt(2 j |v|), which reaches zero
        velocity and zero acceleration together instead of overshooting.
        """
        if self._jmax is None:
            return self._prev
        v = self._velocity
        span = 0.5 * (h + (self._last_h or h))
        slower = v - np.sign(v) * np.sqrt(2.0 * self._jmax * np.abs(v)) * span
        return self._prev + h * np.where(slower * v > 0, slower, 0.0)

    def _advance(self, out: np.ndarray, h: float, inside: bool = False) -> None:
        """
        Make `out` the last executed command, reached in h seconds.

        `inside`: out is known to lie within the bounds (cut to a simple box): it is written
        as [out | -out] where the next box reads it, with no bounds check of its own.
        """
        if h > 0:
            velocity = np.subtract(out, self._prev)
            np.divide(velocity, h, velocity)
            if self._jmax is not None:
                self._accel = (velocity - self._velocity) / (0.5 * (h + (self._last_h or h)))
            self._velocity = velocity
            self._last_h = h
        if inside:
            _, _, head, tail, _ = self._p2
            head[:] = out
            np.negative(out, tail)
            self._prev, self._inside, self._p2_ok = head, True, True
        else:
            self._set_prev(out.copy())
        self._box_h = _STALE    # the next step builds the box once, for its own h

    def _contain(self, out: np.ndarray) -> np.ndarray:
        """Cut `out` back along the step to the workspace box (if any); count each joint cut."""
        if self._workspace is None:
            return out
        contained, cut = self._workspace.cut(self._prev, out)
        if cut:
            self.counts['workspace'] += int(np.count_nonzero(contained != out))
        return contained

    def step(self, action, elapsed: float | None = None) -> tuple[np.ndarray, tuple[Event, ...]]:
        """
        Guard one requested action `elapsed` s after the last command (default: dt).

        Returns (command to execute, interventions).
        """
        if self._prev is None:
            raise RuntimeError('Guard.step called before reset(): seed it with the executed '
                               'command')
        k = self.step_index
        self.step_index = k + 1
        h = self._dt if elapsed is None else float(elapsed)
        if not 0.0 <= h <= self._max_h:     # (NaN stays NaN, as in _period)
            h = self._period(h)
        if h != self._box_h and not (h > self._box_h and self._simple_box):
            self._set_box(h)        # (a simple box held for a shorter step is an inner box)
        if type(action) is np.ndarray and action.dtype is _FLOAT64 and action.shape == self._shape:
            a = action.copy()       # a float64 vector as it is: a copy costs less than np.array
        else:
            try:
                a = np.array(action, np.float64)
            except (TypeError, ValueError):
                return self._reject(k, 'shape', np.nan, h)
            if a.shape != self._shape:
                return self._reject(k, 'shape', float(a.size), h)
        if self._simple_box:
            buf, pair, head, tail, again = self._a2
            head[:] = a
            np.negative(a, tail)            # outputs positional: each call costs less
            again[:] = pair
            box, mask, all_true, reach, step_off = self._fast
            if np.greater_equal(buf, box, mask).tobytes() == all_true or self._holds_exactly(h):
                # the request becomes [prev | -prev]; the next box, if it comes on time
                self._p2, self._a2 = self._a2, self._p2
                self._prev, self._lohi_ok, self._box_h = head, False, self._dt
                np.add(pair, step_off, reach)
                return a, ()
        return self._general(k, a, h)

    def request_buffer(self) -> np.ndarray:
        """
        Return where `step_request` reads its request (D values, valid until the next step).

        For a caller that computes its request anyway (the executive's interpolation): written
        in place, it spares the guard a copy.
        """
        return self._a2[2]

    def step_request(self, elapsed: float | None = None) -> tuple[np.ndarray, tuple[Event, ...]]:
        """
        Guard the request written in `request_buffer()` as `step` guards an action.

        Built for a caller whose steps come at their own times (the executive's ticks): the
        next box is built for half a period, an inner box for any later step, so a request
        within it needs no box of its own.
        """
        if self._prev is None:
            raise RuntimeError('Guard.step called before reset(): seed it with the executed '
                               'command')
        k = self.step_index
        self.step_index = k + 1
        h = self._dt if elapsed is None else float(elapsed)
        if not 0.0 <= h <= self._max_h:     # (NaN stays NaN, as in _period)
            h = self._period(h)
        if h != self._box_h and not (h > self._box_h and self._simple_box):
            self._set_box(h)
        # (the opening above is step's, kept inline: a shared method measured 0.17 us, 5 % of
        # the step, in bench/guard_bench.py)
        buf, pair, head, tail, again = self._a2
        if self._simple_box:
            np.negative(head, tail)
            again[:] = pair
            box, mask, all_true, reach, _ = self._fast
            if np.greater_equal(buf, box, mask).tobytes() == all_true or self._holds_exactly(h):
                self._p2, self._a2 = self._a2, self._p2
                self._prev, self._lohi_ok, self._box_h = head, False, self._half_dt
                np.add(pair, self._neg_half_step2, reach)
                return head.copy(), ()
        return self._general(k, head.copy(), h)

    def _holds_exactly(self, h: float) -> bool:
        """
        Tell whether the stacked request passes the box built for exactly h seconds.

        The box held may be one for a shorter step (inside the one for h: `prev -/+ vmax h`
        grows with h, and rounding keeps that order), which passes fewer requests; only a
        request it refused is compared again, with the box built for h.
        """
        if self._box_h == h:
            return False
        self._set_box(h)
        box, mask, all_true, _, _ = self._fast
        return np.greater_equal(self._a2[0], box, mask).tobytes() == all_true

    def _general(self, k: int, a: np.ndarray, h: float) -> tuple[np.ndarray, tuple[Event, ...]]:
        """Guard `a` through the whole box: projected, rejected if not finite, events named."""
        simple = self._simple_box       # prev inside the bounds, and the box inside them
        self._ensure_lohi()
        if self._uniform_scaling:
            out = self._uniform(a)
        else:
            out = np.maximum(a, self._lo)
            np.minimum(out, self._hi, out=out)
        finite = np.isfinite(a)
        if finite.tobytes() != self._all_true[:finite.size]:
            bad = int(np.flatnonzero(~finite)[0])
            return self._reject(k, 'nonfinite', float(a[bad]), h, bad)
        events = self._events(k, a, out, h)
        if self._workspace is not None:
            events += self._workspace_events(k, a, out)
        if self.contract.mode == 'monitor_only':
            out, simple = a.copy(), False
        self._advance(out, h, simple)
        return out, events

    def _workspace_events(self, k: int, a: np.ndarray, out: np.ndarray) -> tuple[Event, ...]:
        """Cut `out` (in place) to the workspace box; one 'workspace' event per joint cut."""
        contained = self._contain(out)
        events = tuple(Event(k, self.contract.joint_names[j], 'workspace', float(a[j]),
                             float(contained[j]), abs(float(a[j]) - float(contained[j])))
                       for j in np.flatnonzero(contained != out))
        out[:] = contained
        return events

    def feasible(self, action, elapsed: float | None = None) -> bool:
        """Whether `action` would pass the joint limits unchanged `elapsed` s after the last."""
        h = self._period(elapsed)
        if h != self._box_h:
            self._set_box(h)
        self._ensure_lohi()
        a = np.asarray(action, dtype=np.float64)
        return bool(np.all(a >= self._lo) and np.all(a <= self._hi))

    def hold(self, elapsed: float | None = None) -> np.ndarray:
        """
        Hold the last executed command.

        Brakes within the acceleration box (if any) and moves back toward the bounds if outside
        them; no event (the caller reports why it holds).
        """
        if self._prev is None:
            raise RuntimeError('Guard.hold called before reset(): seed it with the executed '
                               'command')
        self.step_index += 1
        h = self._period(elapsed)
        if h != self._box_h:
            self._set_box(h)
        self._ensure_lohi()
        out = self._contain(np.minimum(np.maximum(self._rest(h), self._lo), self._hi))
        self._advance(out, h)
        return out

    def _uniform(self, a: np.ndarray) -> np.ndarray:
        """
        Scale the whole step by one factor so the direction of motion is kept.

        A request inside the feasible box passes unchanged (bit for bit).
        """
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
        """Return one event per joint the limits changed, with the reason that changed it."""
        changed = (out != a).nonzero()[0].tolist()
        if not changed:
            return ()
        names, counts = self.contract.joint_names, self.counts
        # Python floats: cheaper per joint
        requested, executed, previous = a.tolist(), out.tolist(), self._prev.tolist()
        events = []
        for j in changed:
            value, done = requested[j], executed[j]
            reason = self._reason(j, value, h, previous[j])
            counts[reason] += 1
            events.append(Event(k, names[j], reason, value, done, abs(value - done)))
        return tuple(events)

    def _reason(self, j: int, value: float, h: float, prev: float) -> str:
        """Name the first limit (by priority) that a requested joint value breaks."""
        lower, upper, vmax = self._limit_floats
        if value < lower[j] or value > upper[j]:
            return 'position'
        c = self.contract
        soft = c.has_soft_limits
        if soft and not c.soft_lower[j] <= value <= c.soft_upper[j]:
            return 'soft_limit'
        # the velocity box exactly as it is built (prev -/+ vmax h), not |value - prev|: the two
        # round differently by one ulp at the box's edge
        reach = vmax[j] * h
        if value < prev - reach or value > prev + reach or self._uniform_scaling:
            return 'velocity'
        if soft and not self._soft_box[0][j] <= value <= self._soft_box[1][j]:
            return 'soft_limit'
        if self._pre_jerk is not None and self._pre_jerk[0][j] <= value <= self._pre_jerk[1][j]:
            return 'jerk'
        return 'acceleration'

    def _reject(self, k: int, reason: str, requested: float, h: float, joint: int | None = None):
        """Hold (braking within the box); the rejected input is reported, never executed."""
        self.counts[reason] += 1
        if h != self._box_h:        # (the step may have begun with an inner box)
            self._set_box(h)
        self._ensure_lohi()
        hold = self._contain(np.minimum(np.maximum(self._rest(h), self._lo), self._hi))
        self._advance(hold, h)
        if joint is None:
            name, held = '*', float('nan')
        else:
            name, held = self.contract.joint_names[joint], float(hold[joint])
        return hold, (Event(k, name, reason, requested, held, float('inf')),)

    def run(self, actions: Sequence) -> tuple[np.ndarray, list[Event]]:
        """Guard a chunk (or a whole episode) in order; return executed [T, D] and all events."""
        executed = np.empty((len(actions), self.contract.dim))
        events: list[Event] = []
        for t, action in enumerate(actions):
            executed[t], ev = self.step(action)
            events.extend(ev)
        return executed, events


def _clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Return min(max(x, lo), hi), as np.clip without its Python-level overhead."""
    out = np.maximum(x, lo)
    return np.minimum(out, hi, out=out)


def _quad(d: int) -> tuple[np.ndarray, ...]:
    """Return a buffer of 4 d values for [x | -x | x | -x] and views of its parts."""
    return _quad_of(np.empty(4 * d))


def _quad_of(buf: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return `buf`, its first half [x | -x], x, -x and its second half."""
    d = buf.size // 4
    return buf, buf[:2 * d], buf[:d], buf[d:2 * d], buf[2 * d:]


def speed_scale_value(scale) -> float:
    """Return a valid speed scale: a number in (0, 1] (InputError otherwise)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InputError(f'speed_scale must be a number in (0, 1], got {scale!r}') from None
    if not 0.0 < value <= 1.0:
        raise InputError(f'speed_scale must be in (0, 1], got {scale!r}')
    return value


def audit(contract: Contract, seed, commands, times=None, window: float = 0.0,
          time_slack: float = 1e-4, tol: float = 1e-9) -> dict:
    """
    Check an executed command stream [N, D] against the contract, starting from `seed`.

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
              'max_step_ratio': float((steps / contract.max_step()).max()) if len(commands)
              else 0.0}
    if times is not None and len(commands) > 1:
        report.update(_audit_over_time(contract, commands, np.asarray(times, float), window,
                                       time_slack))
    return report


def _audit_over_time(contract: Contract, commands: np.ndarray, times: np.ndarray, window: float,
                     slack: float) -> dict:
    """Velocity and acceleration over elapsed time (see `audit`)."""
    if times.shape != (len(commands),) or np.any(np.diff(times) < 0):
        raise InputError('audit times must be one non-decreasing time per command')
    later = np.searchsorted(times, times + max(window, 0.0),
                            side='left' if window > 0 else 'right')
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
