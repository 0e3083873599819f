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
Achieved control timing, streamed: what a user measures before trusting a control rate.

Per published command the filter records when its tick started and when the command went out;
per raw action, when it arrived. From these, O(1) per tick into fixed-size rings: the control
period (time between consecutive commands) with its mean and p99 over the recent window and its
max since activation, missed ticks (controller cycles without a fresh command), the tick's work
time, and the command latency (command publish time minus the raw action's arrival). GcPauses
measures the cyclic garbage collector's pauses while the loop runs (the largest stall Python
adds to a tick).
"""
from __future__ import annotations

import gc
import math
import time

import numpy as np

#: Seconds of control periods kept for the windowed statistics (mean, p99, achieved rate): a
#: WARN clears this long after the rate recovers.
WINDOW_SECONDS = 2.0
#: Fewest samples a window keeps (slow loops).
MIN_WINDOW = 128
#: A gap between commands longer than this many periods lost round(gap / dt) - 1 ticks.
MISSED_AFTER_PERIODS = 1.5
#: The achieved rate may fall this far (relative) below the configured one before a WARN.
RATE_TOLERANCE = 0.05
#: Periods needed in the window before the achieved rate is judged.
MIN_PERIODS = 50


class Ring:
    """Fixed-size ring of the last `size` samples: O(1) to add, quantiles on demand."""

    def __init__(self, size: int = MIN_WINDOW):
        self._values = np.zeros(size)
        self._next = 0
        self.count = 0
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Add one sample (the oldest is overwritten once the ring is full)."""
        self._values[self._next] = value
        self._next = (self._next + 1) % self._values.size
        self.count = min(self.count + 1, self._values.size)
        if value > self.max:
            self.max = value

    def window(self) -> np.ndarray:
        """Return the samples held (a view, unordered)."""
        return self._values[:self.count]

    def mean(self) -> float:
        """Return the mean of the window (NaN when empty)."""
        return float(self.window().mean()) if self.count else math.nan

    def quantile(self, q: float) -> float:
        """Return the quantile at level q in [0, 1] of the window (NaN when empty)."""
        return float(np.quantile(self.window(), q)) if self.count else math.nan


class ControlTiming:
    """Streaming timing of one control loop of period `dt` (seconds)."""

    def __init__(self, dt: float, window: int | None = None):
        self.dt = float(dt)
        window = window or max(MIN_WINDOW, int(WINDOW_SECONDS / self.dt))
        self.period, self.work = Ring(window), Ring(window)
        self.latency = Ring(window)
        self.missed_ticks = 0
        self.commands = 0
        self._last_start: float | None = None
        self._arrival: float | None = None

    def arrival(self, received: float) -> None:
        """Note a raw action's arrival time (the clock `command` is given as `published`)."""
        self._arrival = received

    def command(self, start: float, end: float, published: float | None = None) -> None:
        """
        Record a published command: its tick started at `start` and it went out at `end`.

        Monotonic seconds; `published` is the publish time on the clock of `arrival` (for the
        latency of the first command after a raw action).
        """
        self.commands += 1
        self.work.add(end - start)
        if self._last_start is not None:
            gap = start - self._last_start
            self.period.add(gap)
            if gap > MISSED_AFTER_PERIODS * self.dt:
                self.missed_ticks += round(gap / self.dt) - 1
        self._last_start = start
        if self._arrival is not None and published is not None:
            self.latency.add(published - self._arrival)
            self._arrival = None

    def silence(self) -> None:
        """Note a tick that published nothing on purpose (stopped, latched): no period spans it."""
        self._last_start = None

    def achieved_rate(self) -> float:
        """Return commands per second over the window (NaN before two commands)."""
        mean = self.period.mean()
        return 1.0 / mean if mean > 0 else math.nan

    def rate_ok(self) -> bool:
        """Tell whether the achieved rate keeps up with the configured one (True until judged)."""
        if self.period.count < MIN_PERIODS:
            return True
        return self.achieved_rate() >= (1.0 - RATE_TOLERANCE) / self.dt

    def summary(self) -> dict:
        """Return the figures /diagnostics shows (milliseconds, Hz, counts)."""
        ms = 1e3
        return {
            'configured_rate_hz': 1.0 / self.dt,
            'achieved_rate_hz': self.achieved_rate(),
            'period_mean_ms': self.period.mean() * ms,
            'period_p99_ms': self.period.quantile(0.99) * ms,
            'period_max_ms': self.period.max * ms if self.period.count else math.nan,
            'missed_ticks': self.missed_ticks,
            'commands': self.commands,
            'work_mean_ms': self.work.mean() * ms,
            'work_p99_ms': self.work.quantile(0.99) * ms,
            'work_max_ms': self.work.max * ms if self.work.count else math.nan,
            'latency_p50_ms': self.latency.quantile(0.5) * ms,
            'latency_p99_ms': self.latency.quantile(0.99) * ms,
            'latency_max_ms': self.latency.max * ms if self.latency.count else math.nan,
        }


class GcPauses:
    """Count the garbage collector's runs and pauses while installed (gc.callbacks)."""

    def __init__(self):
        self.collections = 0
        self.total = 0.0
        self.max = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        """Time one collection (called by the interpreter at its start and stop)."""
        if phase == 'start':
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.collections += 1
        self.total += pause
        self.max = max(self.max, pause)

    def install(self) -> None:
        """Start measuring (idempotent)."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        """Stop measuring (idempotent)."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def summary(self) -> dict:
        """Return the figures /diagnostics shows (count, milliseconds)."""
        return {'gc_collections': self.collections, 'gc_pause_max_ms': self.max * 1e3,
                'gc_pause_total_ms': self.total * 1e3}
