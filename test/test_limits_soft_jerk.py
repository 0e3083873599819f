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


"""Soft limits (k_position) and the jerk limit: invariants over elapsed time, hand checks."""
import copy
import os

from guard_streams import actions_for
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract, Guard
from vla_safety_filter.core.errors import InputError

TOL = 1e-9
EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400'))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _floats(draw, d, lo, hi):
    return np.array(draw(st.lists(st.floats(lo, hi), min_size=d, max_size=d)))


@st.composite
def soft_contracts(draw, accel=False, jerk=False):
    """Draw contracts with soft limits (some joints or sides without), maybe acceleration/jerk."""
    d = draw(st.integers(1, 5))
    lower = _floats(draw, d, -10, 10)
    upper = lower + _floats(draw, d, 0.1, 20)
    # soft bounds anywhere around the hard ones (tighter, looser, or none on a side)
    soft_lower = np.where(_floats(draw, d, 0, 1) < 0.2, -np.inf,
                          lower + _floats(draw, d, -0.2, 0.6) * (upper - lower))
    soft_upper = np.where(_floats(draw, d, 0, 1) < 0.2, np.inf,
                          np.maximum(soft_lower, upper - _floats(draw, d, -0.2, 0.6)
                                     * (upper - lower)))
    soft_upper = np.where(np.isneginf(soft_upper), np.inf, soft_upper)
    return Contract(tuple(f'j{i}' for i in range(d)), lower, upper, _floats(draw, d, 1e-2, 20),
                    dt=draw(st.sampled_from([0.001, 0.01, 0.02, 0.1])),
                    max_acceleration=_floats(draw, d, 0.1, 1e3) if accel else None,
                    soft_lower=soft_lower, soft_upper=soft_upper,
                    k_position=_floats(draw, d, 0.1, 200),
                    max_jerk=_floats(draw, d, 1.0, 1e5) if jerk else None)


def _period(c, elapsed):
    return c.dt if elapsed is None else min(elapsed, 2 * c.dt)


def _soft_box(c, prev, h):
    """Return the ros2_control soft limiter's position box for a step of h from `prev`."""
    vmax = c.max_velocity
    v_lo = np.clip(c.k_position * (c.soft_lower - prev), -vmax, vmax)
    v_hi = np.clip(c.k_position * (c.soft_upper - prev), -vmax, vmax)
    lo, hi = prev + v_lo * h, prev + v_hi * h
    lo = np.where(prev >= c.soft_lower, np.maximum(lo, c.soft_lower), np.minimum(lo, c.soft_lower))
    hi = np.where(prev <= c.soft_upper, np.minimum(hi, c.soft_upper), np.maximum(hi, c.soft_upper))
    return lo, hi


def _inside(c, x):
    return np.all(x >= c.lower - TOL) and np.all(x <= c.upper + TOL)


def _start(draw, c):
    """Draw a start inside the hard bounds."""
    return c.lower + _floats(draw, c.dim, 0, 1) * (c.upper - c.lower)


@SETTINGS
@given(soft_contracts(), st.data())
def test_soft_limits_bound_the_velocity_as_ros2_control_does_on_any_stream(c, data):
    """From inside the hard bounds every step is within -k (q - soft), +-vmax (hard wins)."""
    prev = _start(data.draw, c)
    guard = Guard(c)
    guard.reset(prev)
    stream = data.draw(st.lists(st.tuples(actions_for(c.dim),
                                          st.one_of(st.none(), st.floats(0, 5 * c.dt))),
                                min_size=1, max_size=30))
    for action, elapsed in stream:
        h = _period(c, elapsed)
        out, events = guard.step(action, elapsed)
        assert np.all(np.isfinite(out)) and _inside(c, out)
        assert np.all(np.abs(out - prev) <= c.max_velocity * h * (1 + 1e-12) + TOL)
        lo, hi = _soft_box(c, prev, h)
        hard_lo = np.maximum(c.lower, prev - c.max_velocity * h)
        hard_hi = np.minimum(c.upper, prev + c.max_velocity * h)
        assert np.all(out >= np.clip(lo, hard_lo, hard_hi) - 1e-9 * (1 + np.abs(out)))
        assert np.all(out <= np.clip(hi, hard_lo, hard_hi) + 1e-9 * (1 + np.abs(out)))
        inside_soft = (prev >= c.soft_lower) & (prev <= c.soft_upper)
        assert np.all(~inside_soft | (out >= c.soft_lower - TOL) & (out <= c.soft_upper + TOL))
        a = _vector(action, c.dim)
        if a is not None:
            changed = {c.joint_names[j] for j in np.flatnonzero(out != a)}
            assert changed <= {e.joint for e in events}
        prev = out


@SETTINGS
@given(soft_contracts(accel=True), st.data())
def test_from_rest_in_the_soft_range_braking_keeps_it_and_acceleration_never_gives_way(c, data):
    """
    Keep the soft range from rest: braking plans for it.

    Position, velocity and acceleration hold on any stream; the soft velocity rule may lag only
    by what the deceleration allows, and holds exactly when k vmax fits in the deceleration.
    """
    soft_lo, soft_hi = np.maximum(c.lower, c.soft_lower), np.minimum(c.upper, c.soft_upper)
    prev = soft_lo + _floats(data.draw, c.dim, 0, 1) * (soft_hi - soft_lo)
    guard = Guard(c)
    guard.reset(prev)
    velocity = np.zeros(c.dim)
    gentle = c.k_position * c.max_velocity <= c.max_acceleration
    for action in data.draw(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=c.dim,
                                              max_size=c.dim), min_size=1, max_size=40)):
        out, _ = guard.step(action)
        new = (out - prev) / c.dt
        assert np.all(out >= soft_lo - TOL) and np.all(out <= soft_hi + TOL)
        assert np.all(np.abs(new) <= c.max_velocity * (1 + 1e-9) + 1e-9)
        assert np.all(np.abs(new - velocity) <= c.max_acceleration * c.dt * (1 + 1e-9)
                      + 1e-6 / c.dt)
        lo, hi = _soft_box(c, prev, c.dt)
        slack = 1e-6 * (1 + np.abs(out))
        assert np.all(~gentle | (out >= lo - slack) & (out <= hi + slack))
        prev, velocity = out, new


def _vector(action, d):
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.shape == (d,) and np.all(np.isfinite(a)) else None


@st.composite
def jerk_contracts(draw, wide=False):
    d = draw(st.integers(1, 5))
    lower = _floats(draw, d, -10, 10)
    width = _floats(draw, d, 0.1, 20)
    if wide:
        lower, width = lower - 1e7, width + 2e7
    return Contract(tuple(f'j{i}' for i in range(d)), lower, lower + width,
                    _floats(draw, d, 1e-2, 20), dt=draw(st.sampled_from([0.001, 0.01, 0.02])),
                    max_acceleration=_floats(draw, d, 0.1, 1e3),
                    max_jerk=_floats(draw, d, 1.0, 1e5))


def _stream(data, c):
    """Draw requests (None: a hold) with elapsed times around the period."""
    request = st.one_of(st.none(), st.lists(st.floats(-1e3, 1e3), min_size=c.dim,
                                            max_size=c.dim))
    elapsed = st.one_of(st.none(), st.floats(0.5 * c.dt, 1.5 * c.dt))
    return data.draw(st.lists(st.tuples(request, elapsed), min_size=1, max_size=60))


@SETTINGS
@given(jerk_contracts(wide=True), st.data())
def test_jerk_limit_holds_over_elapsed_time_away_from_the_bounds(c, data):
    """
    Keep the jerk limit away from the bounds, from rest, holds included.

    The acceleration changes by at most jerk x the time between two accelerations (the previous
    step's duration); velocity and acceleration hold as well.
    """
    prev = (c.lower + c.upper) / 2
    guard = Guard(c)
    guard.reset(prev)
    velocity, accel, last_h = np.zeros(c.dim), np.zeros(c.dim), None
    for action, elapsed in _stream(data, c):
        h = _period(c, elapsed)
        out = guard.hold(elapsed) if action is None else guard.step(action, elapsed)[0]
        new = (out - prev) / h
        span = 0.5 * (h + (last_h or h))
        new_accel = (new - velocity) / span
        tol = 1e-6 / (h * span)
        assert np.all(np.abs(new) <= c.max_velocity * (1 + 1e-9) + 1e-9)
        assert np.all(np.abs(new_accel) <= c.max_acceleration * (1 + 1e-9) + tol)
        assert np.all(np.abs(new_accel - accel) <= c.max_jerk * (last_h or h) * (1 + 1e-9)
                      + tol)
        prev, velocity, accel, last_h = out, new, new_accel, h


@SETTINGS
@given(jerk_contracts(), st.data())
def test_with_jerk_from_rest_bounds_velocity_and_acceleration_still_hold(c, data):
    """Jerk gives way to braking: near the bounds the braking guarantee is kept."""
    prev = c.lower + _floats(data.draw, c.dim, 0, 1) * (c.upper - c.lower)
    guard = Guard(c)
    guard.reset(prev)
    velocity = np.zeros(c.dim)
    for action, _ in _stream(data, c):
        out = guard.hold() if action is None else guard.step(action)[0]
        new = (out - prev) / c.dt
        assert _inside(c, out)
        assert np.all(np.abs(new) <= c.max_velocity * (1 + 1e-9) + 1e-9)
        assert np.all(np.abs(new - velocity) <= c.max_acceleration * c.dt * (1 + 1e-9)
                      + 1e-6 / c.dt)
        prev, velocity = out, new


@SETTINGS
@given(st.one_of(soft_contracts(), soft_contracts(accel=True), soft_contracts(jerk=True),
                 jerk_contracts()), st.data())
def test_a_feasible_request_passes_bit_for_bit(c, data):
    """Whatever the guard would execute is feasible: asked for, it passes unchanged, no event."""
    guard = Guard(c)
    guard.reset(_start(data.draw, c))
    for action, elapsed in _stream(data, c)[:20]:
        probe = copy.deepcopy(guard)
        feasible = probe.hold(elapsed) if action is None else probe.step(action, elapsed)[0]
        out, events = guard.step(feasible.copy(), elapsed)
        assert events == () and np.array_equal(out, feasible)


def test_soft_limit_approach_is_exponential_and_stops_at_the_soft_bound():
    """
    Approach the soft bound at k times the distance left (ros2_control's rule).

    Bounds +-5, soft +-4, k 5, vmax 2, dt 0.05: full speed until k (4 - q) < 2, never past 4.
    """
    c = Contract(('a',), [-5.0], [5.0], [2.0], dt=0.05, soft_lower=[-4.0], soft_upper=[4.0],
                 k_position=[5.0])
    guard = Guard(c)
    guard.reset([3.0])
    path = [3.0] + [guard.step([4.9])[0][0] for _ in range(60)]
    speed = np.diff(path) / 0.05
    expected = np.minimum(2.0, 5.0 * (4.0 - np.array(path[:-1])))
    np.testing.assert_allclose(speed, expected, atol=1e-9)
    assert max(path) <= 4.0 and path[-1] == pytest.approx(4.0, abs=1e-3)
    assert guard.counts['soft_limit'] == 60 and guard.counts['velocity'] == 0


def test_outside_the_soft_range_the_joint_returns_at_k_times_the_excess():
    c = Contract(('a',), [-5.0], [5.0], [2.0], dt=0.05, soft_lower=[-4.0], soft_upper=[4.0],
                 k_position=[5.0])
    guard = Guard(c)
    guard.reset([4.5])                      # e.g. the arm rests beyond the soft bound
    path = [4.5] + [guard.hold()[0] for _ in range(3)]
    assert path[1:] == pytest.approx([4.4, 4.3, 4.225])     # -min(vmax, 5 (q - 4)) per second


def test_jerk_ramps_the_acceleration_and_levels_off_at_vmax():
    c = Contract(('a',), [-50.0], [50.0], [2.0], dt=0.01, max_acceleration=[10.0],
                 max_jerk=[100.0])
    guard = Guard(c)
    guard.reset([0.0])
    path = np.array([0.0] + [guard.step([40.0])[0][0] for _ in range(120)])
    v = np.diff(path) / 0.01
    a = np.diff(np.concatenate([[0.0], v])) / 0.01
    assert a[:3] == pytest.approx([1.0, 2.0, 3.0])          # jerk 100 x 0.01 per step
    assert np.max(np.abs(np.diff(np.concatenate([[0.0], a])))) <= 100 * 0.01 + 1e-9
    assert v.max() <= 2.0 + 1e-9 and v[-1] == pytest.approx(2.0)


def test_a_hold_with_jerk_comes_to_rest_without_a_deceleration_step():
    c = Contract(('a',), [-50.0], [50.0], [2.0], dt=0.01, max_acceleration=[10.0],
                 max_jerk=[100.0])
    guard = Guard(c)
    guard.reset([0.0], velocity=[2.0])
    path = np.array([0.0] + [guard.hold()[0] for _ in range(300)])
    v = np.diff(path) / 0.01
    a = np.diff(np.concatenate([[2.0], v])) / 0.01
    assert np.max(np.abs(np.diff(np.concatenate([[0.0], a])))) <= 100 * 0.01 + 1e-9
    assert np.all(np.abs(v[-50:]) < 1e-9)                   # at rest
    assert v.min() > -0.1                                   # a small overshoot at most


def test_jerk_events_name_the_jerk_limit():
    c = Contract(('a',), [-50.0], [50.0], [2.0], dt=0.01, max_acceleration=[10.0],
                 max_jerk=[100.0])
    guard = Guard(c)
    guard.reset([0.0])
    _, events = guard.step([0.0005])          # 5 units/s^2 in one step, jerk allows 1
    assert [e.reason for e in events] == ['jerk']


def test_soft_limit_fields_are_validated():
    base = {'joint_names': ('a',), 'lower': [-1.0], 'upper': [1.0], 'max_velocity': [1.0],
            'dt': 0.1}
    with pytest.raises(InputError, match='soft_lower, soft_upper and k_position'):
        Contract(**base, soft_lower=[-0.5], soft_upper=[0.5])
    with pytest.raises(InputError, match='soft_lower > soft_upper'):
        Contract(**base, soft_lower=[0.5], soft_upper=[-0.5], k_position=[1.0])
    with pytest.raises(InputError, match='k_position must be > 0'):
        Contract(**base, soft_lower=[-0.5], soft_upper=[0.5], k_position=[0.0])
    with pytest.raises(InputError, match='non-finite'):
        Contract(**base, soft_lower=[np.nan], soft_upper=[0.5], k_position=[1.0])
    with pytest.raises(InputError, match='max_jerk must be > 0'):
        Contract(**base, max_jerk=[-1.0])
    Contract(**base, soft_lower=[-np.inf], soft_upper=[np.inf], k_position=[1.0])


def test_speed_scale_scales_the_jerk_limit_too():
    c = Contract(('a',), [-50.0], [50.0], [2.0], dt=0.01, max_acceleration=[10.0],
                 max_jerk=[100.0])
    guard = Guard(c)
    guard.reset([0.0])
    guard.set_speed_scale(0.5)
    out, events = guard.step([1.0])
    assert out[0] == pytest.approx(0.5 * 100.0 * 0.01 ** 3)    # a = j/2 x dt, over one step
    assert [e.reason for e in events] == ['velocity']


def test_agrees_with_ros2_control_soft_limiter_position_cases():
    """
    Reproduce the position-command cases of ros2_control's JointSoftLimiter tests (dt 1 s).

    Hard bounds +-pi, vmax 1; the limiter uses the previous command, as the guard does.
    """
    def guard(k, start):
        c = Contract(('a',), [-np.pi], [np.pi], [1.0], dt=1.0, soft_lower=[-1.5],
                     soft_upper=[1.5], k_position=[k])
        g = Guard(c)
        g.reset([start])
        return g

    g = guard(1.0, 0.0)
    out, events = g.step([0.0])
    assert out[0] == 0.0 and events == ()                      # inside: not limited
    assert [g.step([2.0])[0][0] for _ in range(3)] == pytest.approx([1.0, 1.5, 1.5])
    g, prev = guard(0.5, 0.2), 0.2
    while prev < 1.5 - 1e-6:                                    # halfway to 1.5 every second
        out = g.step([2.0])[0][0]
        assert out == pytest.approx(prev + (1.5 - prev) * 0.5)
        prev = out
    assert g.step([2.0])[0][0] <= 1.5


@pytest.mark.parametrize('k', [2.0, 5.0, 20.0])
def test_jerk_gives_way_only_where_the_soft_cap_binds(k):
    """
    Pin the convention of doc/safety.md: the jerk limit does not anticipate the soft cap.

    Driven at a soft bound, the soft rule and the acceleration limit hold at every step; the
    jerk limit is exceeded only at steps whose intervention is 'soft_limit' (the cap binding).
    """
    c = Contract(('a',), [-10.0], [10.0], [2.0], dt=0.01, max_acceleration=[10.0],
                 max_jerk=[100.0], soft_lower=[-5.0], soft_upper=[5.0], k_position=[k])
    guard = Guard(c)
    guard.reset([0.0])
    steps = [guard.step([9.0]) for _ in range(800)]
    path = np.array([0.0] + [out[0] for out, _ in steps])
    v = np.diff(path) / c.dt
    a = np.diff(np.concatenate([[0.0], v])) / c.dt
    jerk = np.diff(np.concatenate([[0.0], a])) / c.dt
    assert np.all(v <= k * (5.0 - path[:-1]) + 1e-9)           # the soft rule, every step
    assert np.all(np.abs(a) <= 10.0 * (1 + 1e-9))
    over = np.flatnonzero(np.abs(jerk) > 100.0 * (1 + 1e-6))
    assert over.size > 0                                        # the known gap is still there
    assert all({e.reason for e in steps[i][1]} == {'soft_limit'} for i in over)
    assert path[-1] == pytest.approx(5.0, abs=1e-4)
