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

"""The filter's per-tick logic: plans, receding horizon, watchdog, latch, resume, refusals."""
import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.executive import (Executive, HOLDING, IDLE, LATCHED, RUNNING,
                                              STOPPED)
from vla_safety_filter.core.joints import JointMap
from vla_safety_filter.names import SAFETY_STOP


def _exec(timeout=0.1, **contract):
    c = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [10.0, 10.0], dt=0.01, **contract)
    ex = Executive(c, command_timeout=timeout, state_timeout=0.5)
    ex.observe([0.0, 0.0], now=0.0)
    ex.start(now=0.0)
    return ex


def _measure(ex, now, positions=(0.0, 0.0)):
    ex.observe(list(positions), now)


def test_nothing_is_published_before_the_first_input():
    assert _exec().tick(0.01) == (None, STOPPED, ())


def test_chunk_points_are_approached_along_the_plan_and_rate_limited():
    ex = _exec()
    _measure(ex, 1.0)
    events = ex.on_chunk([[0.05, 0.0], [0.5, 0.0]], [0.01, 0.02], now=1.0)
    assert [(e.reason, e.joint) for e in events] == [('chunk_speed', 'a')]   # reported only
    assert events[0].magnitude == pytest.approx(4.5)                          # 45 units/s vs 10
    t1 = ex.tick(1.0)                     # each command is the plan one period ahead
    assert t1.state == RUNNING and t1.command == pytest.approx([0.05, 0.0])
    t2 = ex.tick(1.01)                    # second point is next: 0.1 per tick at most
    assert t2.command == pytest.approx([0.15, 0.0]) and t2.events[0].reason == 'velocity'


def test_a_far_waypoint_is_approached_at_the_planned_speed_not_at_vmax():
    ex = _exec(timeout=0.1)
    _measure(ex, 1.0)
    ex.on_chunk([[0.5, 0.0]], [5.0], now=1.0)           # 0.5 in 5 s: 0.1 units/s, vmax is 10
    path = [ex.tick(1.0 + 0.01 * k).command[0] for k in range(101)]
    assert path[-1] == pytest.approx(0.101) and np.allclose(np.diff(path), 0.001)


def test_stale_and_future_stamped_chunks_are_refused():
    ex = _exec(timeout=0.1)
    _measure(ex, 1.0)
    assert ex.on_chunk([[0.5, 0.0]], [0.01], now=1.0, age=0.5)[0].reason == 'stale'
    assert ex.on_chunk([[0.5, 0.0]], [0.01], now=1.0, age=-0.5)[0].reason == 'bad_timing'
    assert ex.tick(1.0) == (None, STOPPED, ())             # nothing fresh to execute
    assert ex.on_chunk([[0.05, 0.0]], [0.03], now=1.0, age=0.02) == ()   # due 0.01 s from now
    assert ex.tick(1.0).command == pytest.approx([0.05, 0.0])


def test_new_chunk_replaces_the_queue():
    ex = _exec()
    _measure(ex, 1.0)
    ex.on_chunk([[0.5, 0.5]], [0.0], now=1.0)
    ex.on_chunk([[-0.05, 0.0]], [0.0], now=1.005)
    assert ex.tick(1.01).command == pytest.approx([-0.05, 0.0])


def test_watchdog_holds_then_stops_then_resumes_from_the_measured_position():
    ex = _exec(timeout=0.1)
    _measure(ex, 1.0)
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.tick(1.0)
    hold = ex.tick(1.15)
    assert hold.state == HOLDING and hold.command == pytest.approx([0.05, 0.05])
    assert hold.events[0].reason == 'hold' and ex.tick(1.16).events == ()   # reported once
    assert ex.tick(1.25) == (None, STOPPED, ())
    _measure(ex, 1.9, [0.5, -0.3])                     # the arm was moved by hand meanwhile
    ex.on_chunk([[0.06, 0.05]], [0.0], now=2.0)
    first = ex.tick(2.0).command                       # no jump back toward 0.05
    assert np.all(np.abs(first - [0.5, -0.3]) <= 0.1 + 1e-12)


def test_no_resume_without_a_fresh_measured_position():
    ex = _exec(timeout=0.1)
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)        # last /joint_states is 1 s old
    tick = ex.tick(1.0)
    assert tick == (None, STOPPED, ()) and 'joint_states' in ex.waiting
    _measure(ex, 1.005)
    assert ex.tick(1.01).state == RUNNING


def test_holds_and_resumes_respect_the_acceleration_limit():
    ex = _exec(timeout=0.1, max_acceleration=[10.0, 10.0])
    _measure(ex, 1.0)
    times = 1.0 + 0.01 * np.arange(40)
    commands = []
    for k, t in enumerate(times):
        if k < 15:
            ex.on_chunk([[1.0, 1.0]], [0.01], now=t)  # accelerate toward 1.0
        elif k == 15:
            ex.on_chunk([[np.nan, 1.0]], [0.01], now=t)   # refused: hold by braking
        commands.append(ex.tick(t).command)
    q = np.array([c[0] for c in commands if c is not None])
    v = np.diff(q) / 0.01
    assert np.all(np.abs(np.diff(v)) <= 10.0 * 0.01 + 1e-9)
    assert v[14] > 0 and v[14] < v[13]                       # the hold decelerates, no stop dead


def test_end_of_episode_holds_quietly_until_the_next_input():
    ex = _exec(timeout=0.1)
    _measure(ex, 1.0)
    ex.on_chunk([[0.05, 0.05]], [0.01], now=1.0)
    ex.tick(1.0), ex.tick(1.01)
    ex.end_episode()
    idle = [ex.tick(1.02 + 0.01 * k) for k in range(60)]     # long past 2 x timeout
    assert all(t.state == IDLE and t.command == pytest.approx([0.05, 0.05]) for t in idle)
    _measure(ex, 1.7, [0.05, 0.05])
    ex.on_chunk([[0.1, 0.05]], [0.01], now=1.7)
    assert ex.tick(1.7).state == RUNNING


def test_the_next_episode_starts_from_where_the_arm_is_not_from_the_last_command():
    ex = _exec(timeout=0.1)
    _measure(ex, 1.0)
    ex.on_chunk([[0.05, 0.05]], [0.01], now=1.0)
    ex.tick(1.0), ex.tick(1.01)
    ex.end_episode()
    for k in range(60):
        ex.tick(1.02 + 0.01 * k)
    ex.on_chunk([[0.5, -0.5]], [0.5], now=1.7)   # no fresh /joint_states: no resume
    assert ex.tick(1.7) == (None, STOPPED, ())
    _measure(ex, 1.75, [0.6, -0.4])                # the scene reset moved the arm
    ex.on_chunk([[0.5, -0.5]], [0.5], now=1.75)
    first = ex.tick(1.75)
    assert first.state == RUNNING
    assert np.abs(first.command - [0.6, -0.4]).max() <= 10.0 * 0.01 + 1e-12


@pytest.mark.parametrize('targets, times, reason', [
    ([[np.nan, 0.0]], [0.0], 'nonfinite'), ([[0.0, 0.0, 0.0]], [0.0], 'shape'),
    ([[0.0, 0.0], [0.1, 0.0]], [0.1, 0.1], 'bad_timing'), ([], [], 'shape'),
    ([[0.0, 0.0]], [-1.0], 'bad_timing')])
def test_malformed_chunk_is_refused_whole_and_holds(targets, times, reason):
    ex = _exec()
    _measure(ex, 1.0)
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.tick(1.0)
    events = ex.on_chunk(targets, times, now=1.01)
    assert events[0].reason == reason and ex.guard.counts[reason] == 1
    assert ex.tick(1.02).command == pytest.approx([0.05, 0.05])   # hold, not the old target
    assert ex.tick(1.15).state == HOLDING                        # refused input is not fresh


def test_latched_stop_until_reset():
    ex = _exec()
    _measure(ex, 1.0)
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.latch('alarm: reversal_rate')
    assert ex.tick(1.0) == (None, LATCHED, ()) and ex.latched_reason == 'alarm: reversal_rate'
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.01)
    assert ex.tick(1.01).state == LATCHED
    assert ex.reset_latch(1.02)[0] and ex.tick(1.02).state == STOPPED
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.03)
    assert ex.tick(1.03).state == RUNNING


def test_reset_is_refused_while_the_stop_is_asserted_or_without_a_fresh_position():
    ex = _exec()
    ex.set_stop(True, SAFETY_STOP)
    assert ex.tick(0.1).state == LATCHED
    ok, why = ex.reset_latch(0.1)
    assert not ok and 'asserted' in why
    ex.set_stop(False)
    ok, why = ex.reset_latch(2.0)                       # last /joint_states at t = 0
    assert not ok and 'joint_states' in why
    _measure(ex, 2.0)
    assert ex.reset_latch(2.0) == (True, 'latched stop cleared; resumes from /joint_states on '
                                         'fresh input')


@pytest.mark.parametrize('kw', [{'command_timeout': float('nan')}, {'command_timeout': 0.0},
                                {'state_timeout': float('inf')}, {'state_timeout': -1.0},
                                {'command_timeout': 3600.0}])
def test_timeouts_must_be_finite_positive_and_bounded(kw):
    c = Contract(('a',), [-1.0], [1.0], [1.0], dt=0.01)
    with pytest.raises(InputError, match='timeout'):
        Executive(c, **kw)


def test_joint_map_cache_keeps_unknown_joints_refused():
    jm = JointMap(('a', 'b'))
    jm.indices(['a', 'b', 'x'], allow_extra=True)           # /joint_states may carry more joints
    with pytest.raises(InputError, match='unknown'):
        jm.indices(['a', 'b', 'x'])                         # ... an action may not


def test_joint_map_reorders_by_name_and_rejects_unknown():
    jm = JointMap(('a', 'b'))
    assert list(jm.reorder(['b', 'a'], [2.0, 1.0])) == [1.0, 2.0]
    assert list(jm.reorder(['x', 'b', 'a'], [0.0, 2.0, 1.0], allow_extra=True)) == [1.0, 2.0]
    with pytest.raises(InputError, match='unknown'):
        jm.reorder(['b', 'a', 'x'], [2.0, 1.0, 0.0])
    with pytest.raises(InputError, match='missing'):
        jm.reorder(['b'], [2.0])
    with pytest.raises(InputError, match='duplicate'):
        jm.reorder(['a', 'a'], [2.0, 1.0])


def test_a_chunk_starting_far_from_the_arm_is_reported_as_a_seam_jump():
    ex = _exec()
    _measure(ex, 1.0, [0.0, 0.0])
    events = ex.on_chunk([[0.0, 0.5], [0.0, 0.51]], [0.01, 0.02], now=1.0)
    assert [(e.reason, e.joint) for e in events] == [('chunk_jump', 'b')]
    assert events[0].magnitude == pytest.approx(5.0)                 # 0.5 in 0.01 s vs vmax 10
    assert ex.on_chunk([[0.0, 0.05], [0.0, 0.06]], [0.01, 0.02], now=1.0) == ()


def test_following_error_latches_after_consecutive_ticks():
    c = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [10.0, 10.0], dt=0.01)
    ex = Executive(c, 0.1, 0.5, following_error=[0.05, 0.05], following_error_ticks=3)
    ex.observe([0.0, 0.0], 0.0)
    ex.start(0.0)
    states = []
    for k in range(12):                     # the arm is stuck at 0 while commands move on
        t = 0.01 * k
        ex.observe([0.0, 0.0], t)
        ex.on_chunk([[0.5, 0.0]], [0.05], now=t)
        tick = ex.tick(t)
        states.append(tick.state)
        if tick.state == LATCHED:
            assert tick.events[-1].reason == 'following_error' and tick.events[-1].joint == 'a'
            break
    assert states[-1] == LATCHED and 'following_error' in ex.latched_reason
    assert states == [RUNNING, RUNNING, LATCHED]   # 0.1 off from the first tick: 3 in a row


def test_following_error_is_quiet_while_the_arm_tracks():
    c = Contract(('a',), [-1.0], [1.0], [10.0], dt=0.01)
    # a tracking arm is one command behind: the tolerance must exceed vmax * dt (0.1) and lag
    ex = Executive(c, 0.1, 0.5, following_error=[0.15], following_error_ticks=2)
    ex.observe([0.0], 0.0)
    ex.start(0.0)
    for k in range(50):
        t = 0.01 * k
        ex.on_chunk([[0.9]], [0.05], now=t)
        tick = ex.tick(t)
        assert tick.state == RUNNING
        ex.observe(tick.command, t + 0.001)       # a perfectly tracking arm


def test_escalation_slows_then_holds_then_stops_and_reset_waits_for_the_cause():
    from vla_safety_filter.core.escalation import Escalation
    c = Contract(('a',), [-1.0], [1.0], [1.0], dt=0.01)
    esc = Escalation(rates=(20.0, 60.0, 90.0), slow_scale=0.5, cooldown=0.5, window=0.5)
    ex = Executive(c, 0.1, 0.5, escalation=esc)
    ex.observe([0.0], 0.0)
    ex.start(0.0)
    seen, t = [], 0.0
    for k in range(200):                          # a policy asking for 1 unit every tick
        t = 0.01 * k
        ex.observe(ex.guard.prev, t)
        ex.on_chunk([[(-1) ** k * 0.9]], [0.01], now=t)
        tick = ex.tick(t)
        seen.append(ex.escalation_level)
        if tick.state == LATCHED:
            assert tick.events[-1].reason == 'escalation'
            break
    order = [lv for i, lv in enumerate(seen) if i == 0 or lv != seen[i - 1]]
    assert order == ['normal', 'slow', 'hold', 'stop']
    assert 'escalation' in ex.latched_reason
    ex.observe([0.0], t)
    ok, why = ex.reset_latch(t + 0.1)                       # still hot, and within the cooldown
    assert not ok and ('persists' in why or 'cooldown' in why)
    ex.observe([0.0], t + 5.0)
    assert ex.reset_latch(t + 5.0)[0]                       # calm and cooled down
    assert ex.escalation_level == 'normal' and ex.guard.speed_scale == 1.0


def test_slowing_scales_the_operators_speed_scale():
    from vla_safety_filter.core.escalation import Escalation
    c = Contract(('a',), [-1.0], [1.0], [1.0], dt=0.01)
    ex = Executive(c, 0.1, 0.5, escalation=Escalation(rates=(1.0, 1e3, 1e4), window=0.1))
    ex.set_speed_scale(0.5)
    ex.observe([0.0], 0.0)
    ex.start(0.0)
    ex.on_chunk([[0.9]], [0.01], now=0.0)
    ex.tick(0.0)                                            # one velocity intervention: slow
    assert ex.escalation_level == 'slow' and ex.guard.speed_scale == pytest.approx(0.25)


@pytest.mark.parametrize('kw', [{'rates': (3.0, 2.0, 5.0)}, {'rates': (1.0, 2.0)},
                                {'slow_scale': 1.0}, {'cooldown': 0.0},
                                {'window': float('nan')}])
def test_escalation_settings_are_validated(kw):
    from vla_safety_filter.core.escalation import Escalation
    with pytest.raises(InputError, match='escalation'):
        Escalation(**kw)


def test_a_controlled_stop_brakes_within_the_acceleration_limit_then_goes_silent():
    c = Contract(('a',), [-100.0], [100.0], [2.0], dt=0.01, max_acceleration=[5.0])
    ex = Executive(c, 0.1, 0.5)
    ex.observe([0.0], 0.0)
    ex.start(0.0)
    for k in range(100):                                   # accelerate to vmax
        ex.on_chunk([[50.0]], [0.01], now=0.01 * k)
        ex.tick(0.01 * k)
    assert ex.guard.velocity[0] == pytest.approx(2.0)
    path = ex.brake_path()
    v = np.diff(path[:, 0]) / 0.01
    assert len(path) == pytest.approx(2.0 / 5.0 / 0.01, abs=2)   # v / a = 0.4 s
    assert np.all(np.abs(np.diff(v)) <= 5.0 * 0.01 + 1e-9) and abs(v[-1]) < 1e-6
    assert ex.tick(2.0) == (None, STOPPED, ())
    assert Executive(c, 0.1, 0.5).brake_path().size == 0          # nothing commanded: nothing
