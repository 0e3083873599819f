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

"""Streaming control timing (core.timing): windowed quantiles, missed ticks, rate, latency."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core.timing import ControlTiming, MIN_PERIODS, Ring, WINDOW_SECONDS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300), st.integers(1, 64))
def test_ring_statistics_are_those_of_the_last_samples(values, size):
    ring = Ring(size)
    for v in values:
        ring.add(v)
    last = np.array(values[-size:])
    assert ring.count == len(last)
    assert ring.quantile(0.99) == pytest.approx(np.quantile(last, 0.99))
    assert ring.mean() == pytest.approx(last.mean())
    assert ring.max == max(values)                       # since the start, not the window


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0.0, 0.45)), min_size=2, max_size=200))
def test_missed_ticks_count_the_periods_without_a_command(schedule):
    dt = 0.002
    timing = ControlTiming(dt)
    tick, lost = 0, 0
    for k, (dropped, lag) in enumerate(schedule):
        tick += dropped + 1
        lost += dropped if k else 0
        start = tick * dt + lag * dt * 0.5              # late by under a quarter period
        timing.command(start, start + 1e-5)
    assert timing.missed_ticks == lost


def test_silence_is_not_a_missed_tick_and_latency_is_per_arrival():
    timing = ControlTiming(0.01)
    timing.arrival(100.0)
    timing.command(1.0, 1.0001, published=100.003)
    timing.command(1.01, 1.0101, published=100.013)     # no new arrival: no latency sample
    timing.silence()                                    # stopped for a second
    timing.command(2.0, 2.0001)
    assert timing.missed_ticks == 0 and timing.period.count == 1
    assert timing.latency.count == 1 and timing.latency.max == pytest.approx(0.003)
    summary = timing.summary()
    assert summary['work_max_ms'] == pytest.approx(0.1)
    assert summary['period_mean_ms'] == pytest.approx(10.0)


def test_rate_is_judged_once_enough_periods_were_seen():
    dt = 0.01
    slow = ControlTiming(dt)
    for k in range(MIN_PERIODS):
        slow.command(k * 0.011, k * 0.011)              # 91 Hz against 100
    assert slow.rate_ok()                               # not judged yet
    slow.command(MIN_PERIODS * 0.011, MIN_PERIODS * 0.011)
    assert not slow.rate_ok() and slow.achieved_rate() == pytest.approx(1 / 0.011)
    steady = ControlTiming(dt)
    for k in range(200):
        steady.command(k * dt + 0.003 * (k % 2), k * dt + 0.004)   # jitter, no loss
    assert steady.rate_ok() and steady.missed_ticks == 0


def test_an_empty_summary_is_nan_not_an_error():
    summary = ControlTiming(0.01).summary()
    assert math.isnan(summary['period_p99_ms']) and summary['missed_ticks'] == 0
    assert summary['configured_rate_hz'] == pytest.approx(100.0)


def test_a_slow_spell_clears_once_the_window_holds_on_time_periods():
    dt = 0.01
    timing = ControlTiming(dt)
    t = 0.0
    for _ in range(100):                                # 50 Hz against 100: judged slow
        t += 2 * dt
        timing.command(t, t)
    assert not timing.rate_ok() and timing.missed_ticks == 99   # every other tick lost
    for _ in range(int(WINDOW_SECONDS / dt)):           # the window's span of on-time ticks
        t += dt
        timing.command(t, t)
    assert timing.rate_ok()
    assert timing.period.max == pytest.approx(2 * dt)   # the max is kept since activation
