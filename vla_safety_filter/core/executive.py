"""What the safety_filter node does each control tick: pick the due target, guard it, run the watchdog.

Time is passed in (seconds, any monotonic clock) so the logic is tested without ROS. A new chunk
replaces the queue (receding horizon); each point is a target to reach at its time_from_start, and
the guard rate-limits every tick toward the point that is due. No fresh input for
`command_timeout` -> hold the last executed command; past twice that -> stop publishing. A latched
stop (e.g. from the monitor) stops publishing until `reset_latch()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .contract import Contract, Event, Guard
from .errors import InputError

RUNNING, HOLDING, STOPPED, LATCHED = 'running', 'holding', 'stopped', 'latched'


class Tick(NamedTuple):
    """Result of one control tick: the command to publish (None = publish nothing) and why."""

    command: np.ndarray | None
    state: str
    events: tuple[Event, ...]


@dataclass
class Executive:
    """Chunk queue + guard + watchdog + latch for one contract."""

    contract: Contract
    command_timeout: float = 0.1

    def __post_init__(self):
        if not self.command_timeout > 0:
            raise InputError(f'command_timeout must be > 0, got {self.command_timeout!r}')
        self.guard = Guard(self.contract)
        self._targets = np.empty((0, self.contract.dim))
        self._due = np.empty(0)
        self._last_input = -np.inf
        self._latched: str | None = None
        self.state = STOPPED

    @property
    def latched_reason(self) -> str | None:
        return self._latched

    def start(self, executed, now: float, velocity=None) -> None:
        """Seed from the measured joint positions at activation; nothing is due until input arrives."""
        self.guard.reset(executed, velocity)
        self._targets = np.empty((0, self.contract.dim))
        self._due = np.empty(0)
        self._last_input = -np.inf
        self.state = STOPPED

    def on_chunk(self, targets, offsets, now: float) -> tuple[Event, ...]:
        """Replace the queue with a chunk: targets [K, D] due at now + offsets [K] (seconds).

        A malformed chunk (wrong shape, non-finite value, times not strictly increasing) is refused
        as a whole: the filter holds the last executed command and reports one event.
        """
        try:
            targets = np.asarray(targets, dtype=np.float64)
            offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return (self.reject('shape', now),)
        if targets.ndim != 2 or targets.shape[1] != self.contract.dim or targets.shape[0] == 0 \
                or targets.shape[0] != offsets.size:
            return (self.reject('shape', now),)
        if not np.all(np.isfinite(targets)):
            return (self.reject('nonfinite', now),)
        if not np.all(np.isfinite(offsets)) or np.any(offsets < 0) or np.any(np.diff(offsets) <= 0):
            return (self.reject('bad_timing', now),)
        self._targets, self._due = targets, now + offsets
        self._last_input = now
        return ()

    def reject(self, reason: str, now: float) -> Event:
        """Refuse an input: hold the last executed command (input age is not refreshed)."""
        counts = self.guard.counts
        counts[reason] = counts.get(reason, 0) + 1
        hold = self.guard.prev
        if hold is not None:
            self._targets, self._due = hold[None, :], np.array([now])
        return Event(self.guard.step_index, '*', reason, float('nan'), float('nan'), float('inf'))

    def latch(self, reason: str) -> None:
        """Stop until reset_latch(); the controller keeps (holds) the last command it received."""
        if self._latched is None:
            self._latched = reason or 'safety stop'

    def reset_latch(self) -> bool:
        """Clear a latched stop; input must be fresh again before commands flow."""
        was = self._latched is not None
        self._latched = None
        self._targets = np.empty((0, self.contract.dim))
        self._last_input = -np.inf
        return was

    def tick(self, now: float) -> Tick:
        """One control period: the guarded command, a hold, or nothing (stopped/latched)."""
        if self._latched is not None:
            self.state = LATCHED
            return Tick(None, LATCHED, ())
        age = now - self._last_input
        if age > 2.0 * self.command_timeout or len(self._targets) == 0:
            self.state = STOPPED
            return Tick(None, STOPPED, ())
        if age > self.command_timeout:
            self.state = HOLDING
            return Tick(self.guard.prev, HOLDING, ())
        k = min(int(np.searchsorted(self._due, now, side='left')), len(self._due) - 1)
        command, events = self.guard.step(self._targets[k])
        self.state = RUNNING
        return Tick(command, RUNNING, events)
