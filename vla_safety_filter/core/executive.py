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
What the safety_filter node does each control tick: plan, guard, watchdog, latch, resume.

Time is passed in (seconds of one monotonic clock) so the logic is tested without ROS.
- A chunk is a plan: points due at the chunk's stamp + time_from_start. A new chunk replaces the
  plan (receding horizon); each tick the target is the plan interpolated at that time, starting
  from the last executed command, so a point due in 5 s is approached at the planned speed, not
  chased at vmax. The command published at a tick is the plan one control period ahead: the
  position the controller should reach by the next tick. A chunk older than `command_timeout`
  when it arrives is refused as stale.
- Execute on arrival plus a deadline: a chunk whose first point is due by the next tick is
  executed at once (`on_arrival`); the control timer only fills the gaps (`on_timer` skips a tick
  when a command went out less than half a period ago), so an arriving action never waits for
  the timer's phase and the command rate stays one per period.
- The guard limits every step by the time elapsed since the last command (core.contract.Guard).
- Watchdog: no fresh input for `command_timeout` after the plan's last point -> hold (braking
  within the acceleration box); past twice that -> stop publishing. After the end of an episode
  (`end_episode`) the filter holds quietly: idle, not an error.
- A latched stop publishes nothing until `reset_latch`, which is refused while the stop is still
  asserted or without a fresh measured position.
- Every resume (after a stop, a latch or activation) re-seeds the guard at rest from a measured
  position no older than `state_timeout`; without one the filter stays stopped.
- Optional graded escalation (core.escalation): a rising intervention rate slows the arm, then
  holds it, then latches a stop whose reset waits for a cooldown and for the cause to go.
- Optional following error: measured positions further than a per-joint tolerance from the
  commands for `following_error_ticks` ticks in a row latch a stop (collision, stall, a driver
  that is not tracking). Chunks are pre-checked: a first point further from the executed command
  than vmax allows by its due time (`chunk_jump`) or a segment faster than vmax (`chunk_speed`)
  is reported.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
import math
from typing import NamedTuple

import numpy as np

from .contract import Contract, Event, Guard, speed_scale_value
from .errors import InputError
from .escalation import Escalation, HOLD, NORMAL, SLOW, STOP

RUNNING, HOLDING, STOPPED, LATCHED, IDLE = 'running', 'holding', 'stopped', 'latched', 'idle'
#: Fastest control rate the executive accepts (Hz): above it one tick's work cannot be promised.
MAX_CONTROL_RATE_HZ = 2000.0
#: Longest timeout accepted (s): a watchdog slower than this is no watchdog.
MAX_TIMEOUT = 10.0
#: The timer skips its tick when a command went out less than this many periods ago (an
#: arrival executed it already): one command per period on average, none more than 1.5 apart.
FILL_AFTER_PERIODS = 0.5
_FLOAT64 = np.dtype(np.float64)     # measured positions of this type are taken as they are
_ONE = np.ones(())                  # compared with as an array: cheaper than a Python float


class Tick(NamedTuple):
    """Result of one control tick: the command to publish (None = publish nothing) and why."""

    command: np.ndarray | None
    state: str
    events: tuple[Event, ...]


_TICK = tuple.__new__    # builds a Tick from its three fields without NamedTuple's own __new__


def _finite(values: np.ndarray) -> bool:
    """
    Tell whether every value is finite: x - x is +0 exactly then, NaN for an inf or a NaN.

    Two cheap calls instead of isfinite and a reduction (which costs more on small arrays).
    """
    return np.subtract(values, values).tobytes() == bytes(values.nbytes)


def _valid_offsets(offsets: list) -> bool:
    """
    Tell whether times from a chunk's start are finite, >= 0 and strictly increasing.

    From 0 up and increasing (NaN compares false) they are finite if the last one is.
    """
    return offsets[0] >= 0 and all(map(float.__lt__, offsets, offsets[1:])) and \
        offsets[-1] < math.inf


def _timeout(name: str, value) -> float:
    """Return a timeout parameter checked finite, > 0 and at most MAX_TIMEOUT seconds."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f'{name} must be a number of seconds, got {value!r}') from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise InputError(f'{name} must be > 0 and <= {MAX_TIMEOUT:g} s, got {value!r}')
    return value


@dataclass
class Executive:
    """Plan + guard + watchdog + latch + resume for one contract."""

    contract: Contract
    command_timeout: float = 0.1
    state_timeout: float = 0.5
    following_error: object = None      # per-joint tolerance (units), None = not checked
    following_error_ticks: int = 5
    escalation: Escalation | None = None

    def __post_init__(self):
        self.command_timeout = _timeout('command_timeout', self.command_timeout)
        self.state_timeout = _timeout('joint_states_timeout', self.state_timeout)
        if self.following_error is not None:
            tol = np.array(self.following_error, dtype=np.float64).reshape(-1)
            if tol.size != self.contract.dim or not np.all(np.isfinite(tol)) or np.any(tol <= 0):
                raise InputError(f'following_error needs {self.contract.dim} finite tolerances '
                                 '> 0 (one per joint)')
            self.following_error = tol
        if not (isinstance(self.following_error_ticks, int) and self.following_error_ticks >= 1):
            raise InputError('following_error_ticks must be an integer >= 1, got '
                             f'{self.following_error_ticks!r}')
        self._lagging = 0
        self._refused = 0                   # refusals since the last tick (for the escalation)
        self._speed_scale = 1.0
        if self.contract.dt < 1.0 / MAX_CONTROL_RATE_HZ:
            raise InputError(f'control rate {1 / self.contract.dt:g} Hz is above the supported '
                             f'{MAX_CONTROL_RATE_HZ:g} Hz')
        self.guard = Guard(self.contract)
        self._shape = (self.contract.dim,)
        self._vmax_rows = np.empty(0)
        self._scratch = np.empty(self.contract.dim)     # x - x of a measured position
        self._zeros = bytes(self._scratch.nbytes)
        self._weight = np.zeros(())         # the interpolation weight, as a 0-d array
        self._measured: tuple[float, np.ndarray] | None = None
        self._latched: str | None = None
        self._stop_asserted = False
        self._clear_plan()
        self._last_command = None
        self._arrival_command: float | None = None
        self._needs_seed = True
        self.waiting = ''
        self.state = STOPPED

    # ---- inputs ------------------------------------------------------------------------------
    @property
    def latched_reason(self) -> str | None:
        return self._latched

    @property
    def stop_asserted(self) -> bool:
        """Tell whether the last stop request is still unreleased."""
        return self._stop_asserted

    @property
    def silence_explained(self) -> bool:
        """Tell whether silence is expected: idle after an episode, or no input since (re)start."""
        return self.state == IDLE or (self.state == STOPPED and self._fresh_until == -np.inf)

    def set_speed_scale(self, scale: float) -> None:
        """Set the operator's speed scale in (0, 1]; a slowing escalation scales it further."""
        self.guard.set_speed_scale(scale)
        self._speed_scale = self.guard.speed_scale
        self._apply_escalation()

    def lower_speed_scale(self, scale: float) -> None:
        """
        Lower the speed scale (while configured it may only go down).

        Raising it is a deliberate reconfigure, never a live change.
        """
        if speed_scale_value(scale) > self._speed_scale:
            raise InputError('speed_scale may only be lowered while configured; cleanup and '
                             'configure to raise it')
        self.set_speed_scale(scale)

    @property
    def speed_scale(self) -> float:
        """Return the operator's speed scale (before any slowing escalation)."""
        return self._speed_scale

    @property
    def escalation_level(self) -> str:
        return NORMAL if self.escalation is None else self.escalation.level

    def _apply_escalation(self) -> None:
        slow = self.escalation is not None and self.escalation.level == SLOW
        scale = self._speed_scale * (self.escalation.slow_scale if slow else 1.0)
        if scale != self.guard.speed_scale:
            self.guard.set_speed_scale(scale)

    def observe(self, positions, now: float) -> None:
        """Take a measured joint position in contract order (e.g. from /joint_states)."""
        if type(positions) is np.ndarray and positions.dtype is _FLOAT64 \
                and positions.shape == self._shape:
            pos = positions.copy()
            finite = np.subtract(pos, pos, self._scratch).tobytes() == self._zeros
        else:
            pos = np.array(positions, dtype=np.float64).reshape(-1)
            finite = _finite(pos)
        if pos.size != self._shape[0] or not finite:
            raise InputError(f'a measured position needs {self.contract.dim} finite values')
        self._measured = (now, pos)

    def _fresh_measurement(self, now: float) -> np.ndarray | None:
        if self._measured is None or now - self._measured[0] > self.state_timeout:
            return None
        return self._measured[1]

    def start(self, now: float) -> None:
        """Activation: needs a fresh measured position; nothing moves until input arrives."""
        measured = self._fresh_measurement(now)
        if measured is None:
            raise InputError(f'no /joint_states younger than {self.state_timeout:g} s')
        self.guard.reset(measured)
        self._clear_plan()
        self._last_command = None
        self._needs_seed = True
        self._idle = False
        self.state = STOPPED

    def on_chunk(self, targets, offsets, now: float, age: float = 0.0) -> tuple[Event, ...]:
        """
        Make a chunk the plan: targets [K, D] due at (now - age) + offsets [K] (seconds).

        `age` is how old the chunk's stamp is on arrival (0 for an unstamped chunk: it starts
        now). A malformed chunk (wrong shape, non-finite value, times not strictly increasing), a
        stale one (age > command_timeout) or one stamped in the future beyond that is refused
        as a whole: the filter holds the last executed command and reports one event.
        """
        try:
            targets = np.asarray(targets, dtype=np.float64)
            offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
            age = float(age)
        except (TypeError, ValueError):
            return (self.reject('shape', now),)
        if targets.ndim != 2 or targets.shape[1] != self.contract.dim or targets.shape[0] == 0 \
                or targets.shape[0] != offsets.size:
            return (self.reject('shape', now),)
        if not _finite(targets):
            return (self.reject('nonfinite', now),)
        times = offsets.tolist()
        if not _valid_offsets(times) or not math.isfinite(age) or age < -self.command_timeout:
            return (self.reject('bad_timing', now),)
        if age > self.command_timeout:
            return (self.reject('stale', now),)
        if self._idle and not np.any(np.abs(self.guard.velocity) > 1e-9):
            # a new episode after an idle arm at rest resumes like every resume: from a fresh
            # measured position (a scene reset may have moved the arm meanwhile)
            self._needs_seed = True
        start = now - age
        self._plan_t0, self._plan_q0 = now, self.guard.prev
        # due times as a list (bisected each tick), and each point's step from the one before
        # (the first: from the executed command) for the pre-check and the ticks' interpolation
        self._due, self._goals = [start + offset for offset in times], targets
        self._steps = np.empty(targets.shape)
        np.subtract(targets[0], self._plan_q0, self._steps[0])     # (outputs positional:
        np.subtract(targets[1:], targets[:-1], self._steps[1:])    # cheaper calls)
        self._fresh_until = max(now, self._due[-1])
        self._hold_plan = False
        self._idle = False
        self._arrived = True
        return self._precheck(now)

    def on_arrival(self, now: float) -> Tick | None:
        """
        Execute a chunk just accepted by `on_chunk` at once if its first point is due.

        Due means by the next tick; None: nothing to do now, the timer executes it. The guard
        limits the step by the time since the last command, so a command right after a tick
        moves no further than the time between them allows.
        """
        arrived, self._arrived = self._arrived, False
        if not arrived or self._due[0] > now + self.contract.dt:
            return None
        tick = self.tick(now)
        if tick.command is not None:
            self._arrival_command = now
        return tick

    def on_timer(self, now: float) -> Tick | None:
        """
        Run the control timer's tick, unless an arrival just did (the timer fills the gaps).

        None when an arrival executed less than FILL_AFTER_PERIODS control periods ago.
        """
        if self._arrival_command is not None and self._arrival_command == self._last_command \
                and now - self._arrival_command < FILL_AFTER_PERIODS * self.contract.dt:
            return None
        return self.tick(now)

    def _precheck(self, now: float) -> tuple[Event, ...]:
        """
        Report (never refuse: the guard limits every step) seam jumps and too fast segments.

        A seam jump is a first point further from the executed trajectory than vmax allows by
        its due time; a fast segment asks for more than vmax. Against the last executed command,
        not the measured position, which lags it by the controller's tracking.
        """
        # each point's step over its span (the first point's: until it is due, at least one
        # period; the others': since the point before) over vmax, all points in one flat pass
        k, d = self._steps.shape
        due = self._due
        span = np.array([max(due[0] - now, self.contract.dt),
                         *map(float.__sub__, due[1:], due[:-1])])
        ratio = np.abs(self._steps.reshape(-1))
        np.divide(ratio, span.repeat(d), ratio)
        np.divide(ratio, self._tiled_vmax(k), ratio)
        if b'\x01' not in np.greater(ratio, _ONE).tobytes():
            return ()
        events = []
        for reason, part in (('chunk_jump', ratio[:d]), ('chunk_speed', ratio[d:])):
            if not part.size:
                continue
            worst = int(part.argmax())     # the first largest, row by row: joint worst % d
            if part[worst] > 1.0:
                self.guard.counts[reason] = self.guard.counts.get(reason, 0) + 1
                events.append(Event(self.guard.step_index, self.contract.joint_names[worst % d],
                                    reason, float('nan'), float('nan'), float(part[worst])))
        return tuple(events)

    def _tiled_vmax(self, rows: int) -> np.ndarray:
        """Return the contract's vmax repeated for `rows` points, flat (kept for the longest)."""
        size = rows * self._shape[0]
        if self._vmax_rows.size < size:
            self._vmax_rows = np.tile(self.contract.max_velocity, rows)
        return self._vmax_rows[:size]

    def reject(self, reason: str, now: float) -> Event:
        """Refuse an input: hold the last executed command (input age is not refreshed)."""
        counts = self.guard.counts
        counts[reason] = counts.get(reason, 0) + 1
        self._hold_plan = True
        self._refused += 1
        self._arrived = False
        return Event(self.guard.step_index, '*', reason, float('nan'), float('nan'), float('inf'))

    def end_episode(self) -> None:
        """
        End the policy's episode: hold quietly (idle) until the next input.

        The next chunk, once the hold has brought the arm to rest, starts from a fresh
        /joint_states position (no fresh one: stopped), as every resume does.
        """
        self._idle = True

    def set_stop(self, asserted: bool, reason: str = '') -> None:
        """Assert a stop (True latches) or release it (False allows a reset)."""
        self._stop_asserted = bool(asserted)
        if asserted and self._latched is None:
            self._latched = reason or 'safety stop'

    def latch(self, reason: str) -> None:
        """Stop until `reset_latch`; the controller keeps (holds) the last command it received."""
        if self._latched is None:
            self._latched = reason or 'safety stop'

    def reset_latch(self, now: float) -> tuple[bool, str]:
        """
        Clear a latched stop, unless the stop is asserted or no fresh measured position exists.

        Input must be fresh again before commands flow, and they start from it.
        """
        if self._latched is None:
            return True, 'no latched stop'
        if self._stop_asserted:
            return False, f'stop still asserted ({self._latched}): release it first'
        if self._fresh_measurement(now) is None:
            return False, f'no /joint_states younger than {self.state_timeout:g} s to resume from'
        if self.escalation is not None:
            ok, why = self.escalation.may_reset(now)
            if not ok:
                return False, why
            self._apply_escalation()
        self._latched = None
        self._clear_plan()
        self._needs_seed = True
        return True, 'latched stop cleared; resumes from /joint_states on fresh input'

    def brake_path(self, max_time: float = 2.0) -> np.ndarray:
        """
        Plan a controlled stop: holds, one per period, bringing a moving arm to rest.

        Within the acceleration limits (at most `max_time`), then silence. Empty when nothing
        is being commanded or no acceleration limit makes an instant hold unsafe.
        """
        commanding = self.state in (RUNNING, HOLDING, IDLE) and not self._needs_seed
        path = []
        if commanding and self.contract.limits_acceleration:
            for _ in range(int(max_time / self.contract.dt)):
                if not np.any(np.abs(self.guard.velocity) > 1e-9):
                    break
                path.append(self.guard.hold())
        self._silent(STOPPED)
        return np.array(path).reshape(-1, self.contract.dim)

    # ---- the tick ----------------------------------------------------------------------------
    def tick(self, now: float) -> Tick:
        """One control period: the guarded command, a hold, or nothing (stopped/latched)."""
        elapsed = None if self._last_command is None else now - self._last_command
        events: tuple[Event, ...] = ()
        self.waiting = ''
        if self._latched is not None:
            return self._silent(LATCHED)
        guard = self.guard
        if self._idle:
            if self._needs_seed:
                return self._silent(IDLE)
            state, command = IDLE, guard.hold(elapsed)
        else:
            age = now - self._fresh_until
            if age > 2.0 * self.command_timeout:
                return self._silent(STOPPED)
            if self._needs_seed:
                if not self._reseed(now):
                    return self._silent(STOPPED)
                elapsed = None
            held = self.escalation is not None and self.escalation.level == HOLD
            if held:
                # held by the escalation: a policy still asking for the infeasible keeps it hot
                if not self._hold_plan and \
                        not guard.feasible(self._target(now + self.contract.dt), elapsed):
                    self._refused += 1
            if age > self.command_timeout or held:
                if self.state != HOLDING:
                    guard.counts['hold'] += 1
                    events = (Event(guard.step_index, '*', 'hold', float('nan'),
                                    float('nan'), 0.0),)
                state, command = HOLDING, guard.hold(elapsed)
            elif self._hold_plan:
                state, command = RUNNING, guard.hold(elapsed)
            else:
                # the command is the position to reach one control period from now
                self._target(now + self.contract.dt)
                command, events = guard.step_request(elapsed)
                state = RUNNING
        self._last_command = now
        self.state = state
        if self.escalation is not None:
            stop = self._escalate(events, now)
            if stop is not None:
                return self._silent(LATCHED)._replace(events=events + (stop,))
        if self.following_error is not None:
            lag = self._following(command, now)
            if lag is not None:
                self.latch(lag.reason + f' on {lag.joint} ({lag.magnitude:.3g} x the tolerance)')
                return self._silent(LATCHED)._replace(events=events + (lag,))
        return _TICK(Tick, (command, state, events))

    def _escalate(self, events: tuple, now: float) -> Event | None:
        """Feed this tick's interventions to the escalation; a stop latches (returns its event)."""
        count = self._refused + sum(e.reason in ('position', 'velocity', 'acceleration')
                                    for e in events)
        self._refused = 0
        before = self.escalation.level
        level = self.escalation.update(count, now)
        self._apply_escalation()
        if level == before or level != STOP:
            return None
        self.latch(f'escalation: {self.escalation.reason}')
        self.guard.counts['escalation'] = self.guard.counts.get('escalation', 0) + 1
        return Event(self.guard.step_index, '*', 'escalation', float('nan'), float('nan'),
                     self.escalation.pressure)

    def _following(self, command: np.ndarray, now: float) -> Event | None:
        """
        Return an event when the arm lags the commands beyond the tolerance.

        For `following_error_ticks` ticks in a row (collision, stall, a driver not tracking).
        """
        measured = self._fresh_measurement(now)
        if measured is None:
            return None
        error = np.abs(measured - command) / self.following_error
        if error.max() <= 1.0:
            self._lagging = 0
            return None
        self._lagging += 1
        if self._lagging < self.following_error_ticks:
            return None
        self._lagging = 0
        j = int(np.argmax(error))
        self.guard.counts['following_error'] = self.guard.counts.get('following_error', 0) + 1
        return Event(self.guard.step_index, self.contract.joint_names[j], 'following_error',
                     float(command[j]), float(measured[j]), float(error[j]))

    def _silent(self, state: str) -> Tick:
        """Publish nothing; the next command is a resume from a fresh measured position."""
        self._needs_seed = True
        self._last_command = None
        self.state = state
        return Tick(None, state, ())

    def _reseed(self, now: float) -> bool:
        """Resume at rest from a fresh measured position (the arm may have moved meanwhile)."""
        measured = self._fresh_measurement(now)
        if measured is None:
            self.waiting = f'no /joint_states younger than {self.state_timeout:g} s to resume from'
            return False
        self.guard.reset(measured)
        self._plan_t0, self._plan_q0 = now, measured
        self._needs_seed = False
        self._lagging = 0
        return True

    def _target(self, now: float) -> np.ndarray:
        """
        Write the plan at `now` where the guard reads its next request; return that buffer.

        Linear through the points still ahead, from the start (the last executed command when
        the chunk came); the last point once it is due.
        """
        due, goals, out = self._due, self._goals, self.guard.request_buffer()
        if now >= due[-1]:
            out[:] = goals[-1]
            return out
        k = bisect_right(due, now)
        first = k == 0 or due[k - 1] <= self._plan_t0
        t_prev = self._plan_t0 if first else due[k - 1]
        if due[k] <= t_prev:
            out[:] = goals[k]
            return out
        w = self._weight
        w[()] = (now - t_prev) / (due[k] - t_prev)
        # the output passed positionally and the weight as a 0-d array: each call costs less
        if first:
            q_prev = self._plan_q0
            np.subtract(goals[k], q_prev, out)
            np.multiply(out, w, out)
        else:       # the same (goals[k] - q_prev) x w: the step is kept per chunk
            q_prev = goals[k - 1]
            np.multiply(self._steps[k], w, out)
        return np.add(out, q_prev, out)

    def _clear_plan(self) -> None:
        self._plan_t0, self._plan_q0 = -np.inf, None
        self._due = []
        self._goals = self._steps = np.empty((0, self.contract.dim))
        self._fresh_until = -np.inf
        self._hold_plan = False
        self._idle = False
        self._arrived = False
