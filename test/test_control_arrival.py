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
Execute on arrival plus a deadline (issue 15), in core: what the node does, without ROS.

A chunk whose first point is due executes at once; the control timer only fills the gaps.
Whatever the arrival times, no two commands are further apart than vmax allows over the time
between them (two commands in one controller cycle never step twice the distance), the
acceleration holds over elapsed time, and while input flows no gap exceeds 1.5 periods.
"""
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core.contract import audit, Contract
from vla_safety_filter.core.executive import Executive, FILL_AFTER_PERIODS, RUNNING

VMAX, AMAX = 2.0, 40.0


def _executive(dt: float, amax=None) -> Executive:
    """Return a started executive on two joints at rest at 0 (bounds +-1)."""
    contract = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [VMAX, VMAX], dt,
                        max_acceleration=None if amax is None else [amax, amax])
    ex = Executive(contract, command_timeout=0.1, state_timeout=0.5)
    ex.observe([0.0, 0.0], 0.0)
    ex.start(0.0)
    return ex


def _run(ex: Executive, arrivals, timer_lag, until: float):
    """
    Drive the executive as the node does; return (times, commands, arrival command times).

    arrivals: (time, targets [K, 2], offsets [K]) sorted by time; timer_lag: the timer's delay
    after each period boundary, as a fraction of dt (cycled).
    """
    dt = ex.contract.dt
    times, commands, on_arrival = [], [], []
    k, a = 0, 0
    while True:
        timer = k * dt + timer_lag[k % len(timer_lag)] * dt
        if a < len(arrivals) and arrivals[a][0] <= timer:
            now, targets, offsets = arrivals[a]
            a += 1
            ex.observe(commands[-1] if commands else [0.0, 0.0], now)   # a tracking arm
            ex.on_chunk(targets, offsets, now)
            tick = ex.on_arrival(now)
            if tick is not None and tick.command is not None:
                on_arrival.append(now)
        else:
            if timer > until:
                break
            now, k = timer, k + 1
            tick = ex.on_timer(now)
        if tick is not None and tick.command is not None:
            times.append(now)
            commands.append(tick.command.copy())
    return np.array(times), np.array(commands).reshape(-1, 2), on_arrival


chunk = st.tuples(
    st.floats(0.05, 3.0),                                            # gap to the previous, in dt
    st.lists(st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)), min_size=1, max_size=3),
    st.sampled_from([0.0, 0.5, 1.0, 4.0]))                          # first point due, in dt
schedule = {'dt': st.sampled_from([0.002, 0.01]),
            'chunks': st.lists(chunk, min_size=5, max_size=40),
            'timer_lag': st.lists(st.floats(0.0, 0.45), min_size=1, max_size=7)}


def _arrivals(dt, chunks):
    """Return (time, targets, offsets) of each chunk; its points dt apart."""
    out, now = [], 0.0
    for gap, points, first in chunks:
        now += gap * dt
        offsets = (first + np.arange(len(points))) * dt
        out.append((now, np.array(points), offsets))
    return out


@settings(max_examples=150, deadline=None)
@given(**schedule)
def test_no_two_commands_move_further_than_vmax_over_the_time_between_them(
        dt, chunks, timer_lag):
    ex = _executive(dt)
    arrivals = _arrivals(dt, chunks)
    times, commands, _ = _run(ex, arrivals, timer_lag, arrivals[-1][0] + 3 * dt)
    assert len(times) > 1
    span = times[None, :] - times[:, None]                      # every pair, not just neighbours
    moved = np.abs(commands[None, :, :] - commands[:, None, :]).max(axis=2)
    later = span >= 0
    assert np.all(moved[later] <= VMAX * span[later] + 1e-12)
    # a controller sampling the latest command once per period, at any phase, never sees a step
    # larger than vmax times the time between the commands it sampled
    for phase in (0.1, 0.5, 0.9):
        ticks = (np.arange(int(times[-1] / dt)) + phase) * dt
        index = np.searchsorted(times, ticks, side='right') - 1
        index = index[index >= 0]
        step = np.abs(np.diff(commands[index], axis=0)).max(axis=1)
        assert np.all(step <= VMAX * np.diff(times[index]) + 1e-12)


def _velocity_changes(times, commands):
    """
    Return (|change of velocity|, time between the steps' midpoints, rounding allowance).

    Commands at the same instant are one command (the guard moves nothing in zero time). The
    allowance is the position round-off (1e-15) over each step's duration.
    """
    keep = np.append(np.diff(times) > 0, True)
    times, commands = times[keep], commands[keep]
    h = np.diff(times)[:, None]
    v = np.diff(commands, axis=0) / h
    span = (h[1:] + h[:-1]) / 2
    return np.abs(np.diff(v, axis=0)), span, 1e-15 / h[1:] + 1e-15 / h[:-1]


@settings(max_examples=100, deadline=None)
@given(**schedule)
def test_acceleration_holds_over_elapsed_time_whatever_the_arrival_times(dt, chunks, timer_lag):
    ex = _executive(dt, amax=AMAX)
    arrivals = _arrivals(dt, chunks)
    times, commands, _ = _run(ex, arrivals, timer_lag, arrivals[-1][0] + 3 * dt)
    report = audit(ex.contract, commands[0], commands, times)
    assert report['outside_bounds'] == report['non_finite'] == 0
    change, span, allowance = _velocity_changes(times, commands)
    assert np.all(change <= AMAX * span * (1 + 1e-9) + allowance)


@settings(max_examples=100, deadline=None)
@given(**schedule)
def test_a_due_chunk_executes_on_arrival_and_the_timer_only_fills_the_gaps(
        dt, chunks, timer_lag):
    ex = _executive(dt)
    arrivals = _arrivals(dt, chunks)
    times, _, on_arrival = _run(ex, arrivals, timer_lag, arrivals[-1][0] + 3 * dt)
    due = [t for t, _, offsets in arrivals if offsets[0] <= dt]
    assert set(due) <= set(on_arrival)               # every due chunk went out at once
    assert not {t for t, _, offsets in arrivals if offsets[0] > dt} & set(on_arrival)
    # deadline: input keeps flowing (gaps <= 3 dt < command_timeout), so no cycle goes without
    # a command: the timer publishes unless an arrival did less than half a period before
    gaps = np.diff(times) / dt
    assert gaps.max() <= 1.0 + FILL_AFTER_PERIODS + max(timer_lag) + 1e-9


def test_a_tick_right_after_an_arrival_is_skipped_the_next_one_is_not():
    ex = _executive(0.01)
    ex.on_chunk([[0.5, 0.5]], [0.0], 0.0)
    first = ex.on_arrival(0.0)                        # resumes from /joint_states at once
    assert first.state == RUNNING and first.command == pytest.approx([VMAX * 0.01] * 2)
    assert ex.on_timer(0.001) is None                 # the arrival filled this period
    assert ex.on_timer(0.01).command == pytest.approx([VMAX * 0.02] * 2)
    ex.on_chunk([[0.5, 0.5]], [0.0], 0.0168)
    arrived = ex.on_arrival(0.0168)
    assert arrived.command == pytest.approx([VMAX * 0.0268] * 2)   # vmax x time since 0.01
    assert ex.on_timer(0.02) is None                  # 0.32 periods after the arrival: skipped
    after = ex.on_timer(0.03)
    assert after.command == pytest.approx(arrived.command + VMAX * 0.0132)


def test_a_chunk_due_later_waits_for_the_timer():
    ex = _executive(0.01)
    ex.on_chunk([[0.5, 0.5]], [0.0], 0.0)
    ex.on_arrival(0.0)
    ex.on_chunk([[0.5, 0.5]], [0.05], 0.003)          # first point due in 5 periods
    assert ex.on_arrival(0.003) is None
    assert ex.on_timer(0.01) is not None


def test_a_refused_chunk_is_never_executed_on_arrival():
    ex = _executive(0.01)
    ex.on_chunk([[0.1, 0.1]], [0.0], 0.0)
    ex.on_arrival(0.0)
    assert ex.on_chunk([[np.nan, 0.1]], [0.0], 0.004)[0].reason == 'nonfinite'
    assert ex.on_arrival(0.004) is None
