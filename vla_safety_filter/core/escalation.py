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
Graded escalation: a policy the filter keeps correcting is slowed, then held, then stopped.

The pressure is the rate of interventions (events per second of the guard and the executive),
smoothed exponentially with time constant `window`. Crossing `rates[0]` slows the arm (the
speed scale drops to `slow_scale`), `rates[1]` holds it, `rates[2]` latches a stop. Slow and hold
relax one level at a time once the pressure has stayed below the level's threshold for
`cooldown` seconds; a stop stays latched, and its reset is refused during the cooldown and while
the pressure is still above the slow threshold (the cause persists).
"""
from __future__ import annotations

from dataclasses import dataclass
import math

from .errors import InputError

NORMAL, SLOW, HOLD, STOP = 'normal', 'slow', 'hold', 'stop'
LEVELS = (NORMAL, SLOW, HOLD, STOP)


@dataclass
class Escalation:
    """Intervention-rate escalation for one filter (time in seconds, any monotonic clock)."""

    rates: tuple = (5.0, 20.0, 50.0)     # interventions per second for slow, hold, stop
    slow_scale: float = 0.5
    cooldown: float = 2.0
    window: float = 1.0

    def __post_init__(self):
        rates = tuple(float(r) for r in self.rates)
        if len(rates) != 3 or not all(math.isfinite(r) and r > 0 for r in rates) \
                or not rates[0] < rates[1] < rates[2]:
            raise InputError('escalation rates must be three increasing positive numbers '
                             f'(slow, hold, stop per second), got {list(self.rates)}')
        for name in ('cooldown', 'window'):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise InputError(f'escalation {name} must be a positive number of seconds')
            setattr(self, name, value)
        if not 0.0 < float(self.slow_scale) < 1.0:
            raise InputError(f'escalation slow_scale must be in (0, 1), got {self.slow_scale!r}')
        self.rates, self.slow_scale = rates, float(self.slow_scale)
        self.level = NORMAL
        self.reason = ''
        self.pressure = 0.0
        self._last = None
        self._calm_since = None
        self._stopped_at = -math.inf

    def update(self, interventions: int, now: float) -> str:
        """Account this tick's interventions; returns the level now in force."""
        if self._last is not None:
            self.pressure *= math.exp(-max(now - self._last, 0.0) / self.window)
        self.pressure += interventions / self.window
        self._last = now
        reached = sum(self.pressure >= r for r in self.rates)
        index = LEVELS.index(self.level)
        if reached > index:
            self.level, self._calm_since = LEVELS[reached], None
            if self.level == STOP:
                self._stopped_at = now
            self.reason = (f'{self.pressure:.1f} interventions/s over the {self.level} '
                           f'threshold {self.rates[reached - 1]:g}')
        elif self.level in (SLOW, HOLD) and self.pressure < self.rates[index - 1]:
            self._calm_since = now if self._calm_since is None else self._calm_since
            if now - self._calm_since >= self.cooldown:
                self.level, self._calm_since = LEVELS[index - 1], None
                self.reason = '' if self.level == NORMAL else self.reason
        else:
            self._calm_since = None
        return self.level

    def may_reset(self, now: float) -> tuple[bool, str]:
        """Whether a stop may be reset: after the cooldown and once the cause has gone."""
        if self.level != STOP:
            return True, ''
        self.update(0, now)
        if self.pressure >= self.rates[0]:
            return False, (f'escalation cause persists ({self.pressure:.1f} interventions/s, '
                           f'slow threshold {self.rates[0]:g})')
        if now - self._stopped_at < self.cooldown:
            return False, f'escalation cooldown: {self.cooldown:g} s after the stop'
        self.level, self.reason, self.pressure, self._calm_since = NORMAL, '', 0.0, None
        return True, ''
