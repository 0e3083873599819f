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

"""The guard's invariants over arbitrary input streams, plus hand-checked cases."""
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


@st.composite
def contracts(draw, accel=None, scaling=None, mode='enforce'):
    d = draw(st.integers(1, 7))
    lower = np.array(draw(st.lists(st.floats(-10, 10), min_size=d, max_size=d)))
    width = np.array(draw(st.lists(st.floats(0, 20), min_size=d, max_size=d)))
    vmax = np.array(draw(st.lists(st.floats(1e-3, 100), min_size=d, max_size=d)))
    use_accel = draw(st.booleans()) if accel is None else accel
    amax = np.array(draw(st.lists(st.floats(1e-2, 1e4), min_size=d, max_size=d))) \
        if use_accel else None
    return Contract(tuple(f'j{i}' for i in range(d)), lower, lower + width, vmax,
                    dt=draw(st.sampled_from([0.001, 0.01, 0.02, 0.1])), max_acceleration=amax,
                    velocity_scaling=scaling or draw(st.sampled_from(['per_joint', 'uniform'])),
                    mode=mode)


@st.composite
def scenario(draw, **kw):
    c = draw(contracts(**kw))
    start_inside = draw(st.booleans())
    if start_inside:
        frac = np.array(draw(st.lists(st.floats(0, 1), min_size=c.dim, max_size=c.dim)))
        prev = c.lower + frac * (c.upper - c.lower)
    else:
        prev = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=c.dim, max_size=c.dim)))
    stream = draw(st.lists(actions_for(c.dim), min_size=1, max_size=30))
    elapsed = draw(st.lists(st.one_of(st.none(), st.floats(0, 5 * c.dt)),
                            min_size=len(stream), max_size=len(stream)))
    return c, prev, list(zip(stream, elapsed))


def _period(c, elapsed):
    return c.dt if elapsed is None else min(elapsed, 2 * c.dt)


def _inside(c, x):
    return np.all(x >= c.lower - TOL) and np.all(x <= c.upper + TOL)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_invariants_hold_on_any_stream(case):
    c, prev, stream = case
    guard = Guard(c)
    guard.reset(prev)
    for action, elapsed in stream:
        was_inside = _inside(c, prev)
        out, events = guard.step(action, elapsed)
        assert out.shape == (c.dim,) and np.all(np.isfinite(out))
        # never faster than vmax over the time since the last command (at most two periods)
        assert np.all(np.abs(out - prev) <= c.max_velocity * _period(c, elapsed) * (1 + 1e-12)
                      + TOL)
        if was_inside:
            assert _inside(c, out)
        a = _as_vector(action, c.dim)
        if a is None:
            assert events[0].reason in ('shape', 'nonfinite')
            if c.max_acceleration is None and np.all(prev >= c.lower) and np.all(prev <= c.upper):
                assert np.array_equal(out, prev)          # a hold, not a move
        else:
            changed = {c.joint_names[j] for j in np.flatnonzero(out != a)}
            assert changed <= {e.joint for e in events}, 'every intervention is recorded'
        prev = out


@settings(max_examples=EXAMPLES, deadline=None)
@given(contracts(accel=False), st.data())
def test_feasible_action_passes_unchanged(c, data):
    """... bit for bit, per joint and under uniform scaling (no round-off, no spurious event)."""
    frac = np.array(data.draw(st.lists(st.floats(0, 1), min_size=c.dim, max_size=c.dim)))
    prev = c.lower + frac * (c.upper - c.lower)
    guard = Guard(c)
    guard.reset(prev)
    step = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=c.dim, max_size=c.dim)))
    a = np.clip(prev + step * c.max_step(), c.lower, c.upper)
    out, events = guard.step(a)
    assert events == () and np.array_equal(out, a)


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenario(accel=True, scaling='per_joint'))
def test_acceleration_limit_holds_while_inside_the_velocity_box(case):
    c, prev, stream = case
    wide = Contract(c.joint_names, c.lower - 1e7, c.upper + 1e7, c.max_velocity, c.dt,
                    c.max_acceleration)
    guard = Guard(wide)
    guard.reset(prev)
    velocity, last_h = np.zeros(c.dim), None
    for action, elapsed in stream:
        h = _period(c, elapsed)
        out = guard.hold(elapsed) if action is None else guard.step(action, elapsed)[0]
        if h > 0:   # every step, holds and rejected inputs included, brakes within the box
            new = (out - prev) / h   # change of mean velocity over the time between midpoints
            span = 0.5 * (h + (last_h or h))
            assert np.all(np.abs(new - velocity) <= wide.max_acceleration * span * (1 + 1e-9)
                          + 1e-6 / h)
            velocity, last_h = new, h
        prev = out


@settings(max_examples=EXAMPLES, deadline=None)
@given(contracts(accel=False, scaling='uniform'), st.data())
def test_uniform_scaling_keeps_direction(c, data):
    frac = np.array(data.draw(st.lists(st.floats(0, 1), min_size=c.dim, max_size=c.dim)))
    prev = c.lower + frac * (c.upper - c.lower)
    target = c.lower + np.array(data.draw(
        st.lists(st.floats(0, 1), min_size=c.dim, max_size=c.dim))) * (c.upper - c.lower)
    guard = Guard(c)
    guard.reset(prev)
    out, _ = guard.step(target)
    want, got = target - prev, out - prev
    # got = f * want with one factor f in [0, 1] for every joint
    big = np.abs(want) > 1e-9
    if big.any():
        f = got[big] / want[big]
        assert np.all(f >= -1e-9) and np.all(f <= 1 + 1e-9)
        assert np.ptp(f) <= 1e-6 * max(1.0, np.max(np.abs(f)))


def _as_vector(action, d):
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.shape == (d,) and np.all(np.isfinite(a)) else None


def _two_joint(**kw):
    return Contract(('a', 'b'), [-1.0, 0.0], [1.0, 2.0], [1.0, 10.0], dt=0.1, **kw)


def test_hand_checked_projection_and_events():
    guard = Guard(_two_joint())
    guard.reset([0.0, 1.0])
    out, events = guard.step([0.5, 5.0])  # a: rate limit 0.1; b: bound 2.0 (rate limit 1.0)
    assert out == pytest.approx([0.1, 2.0])
    assert [(e.joint, e.reason) for e in events] == [('a', 'velocity'), ('b', 'position')]
    assert events[1].requested == 5.0 and events[1].executed == 2.0 and events[1].magnitude == 3.0
    assert guard.counts['velocity'] == 1 and guard.counts['position'] == 1


def test_rate_limit_wins_when_starting_outside_bounds():
    guard = Guard(_two_joint())
    guard.reset([3.0, 1.0])           # joint a rests 2 units above its upper bound
    trace = [guard.step([0.0, 1.0])[0][0] for _ in range(35)]
    assert trace[:3] == pytest.approx([2.9, 2.8, 2.7])  # never jumps, moves toward the bounds
    assert trace[-1] == pytest.approx(0.0)


@pytest.mark.parametrize('bad, reason', [([np.nan, 0.0], 'nonfinite'),
                                         ([0.0, np.inf], 'nonfinite'),
                                         ([0.0], 'shape'), ([0.0, 1.0, 2.0], 'shape'),
                                         ('junk', 'shape'), (None, 'shape')])
def test_bad_input_holds_the_last_executed_command(bad, reason):
    for mode in ('enforce', 'monitor_only'):
        guard = Guard(_two_joint(mode=mode))
        guard.reset([0.2, 1.0])
        out, events = guard.step(bad)
        assert list(out) == [0.2, 1.0]   # at rest inside the bounds: a hold is exactly a hold
        assert events[0].reason == reason and guard.counts[reason] == 1


def test_monitor_only_passes_actions_through_but_logs():
    guard = Guard(_two_joint(mode='monitor_only'))
    guard.reset([0.0, 1.0])
    out, events = guard.step([0.5, 5.0])
    assert list(out) == [0.5, 5.0] and len(events) == 2


def test_returned_command_is_not_the_guard_state():
    guard = Guard(_two_joint())
    guard.reset([0.0, 1.0])
    out, _ = guard.step([0.05, 1.0])
    out[:] = 99.0
    assert list(guard.prev) == [0.05, 1.0]


def test_contract_rejects_bad_fields():
    with pytest.raises(InputError, match='lower > upper'):
        Contract(('a',), [1.0], [0.0], [1.0], 0.1)
    with pytest.raises(InputError, match='max_velocity'):
        Contract(('a',), [0.0], [1.0], [0.0], 0.1)
    with pytest.raises(InputError, match='non-finite'):
        Contract(('a',), [np.nan], [1.0], [1.0], 0.1)
    with pytest.raises(InputError, match='expected 2'):
        Contract(('a', 'b'), [0.0], [1.0, 1.0], [1.0, 1.0], 0.1)
    with pytest.raises(InputError, match='unique'):
        Contract(('a', 'a'), [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], 0.1)
    with pytest.raises(InputError, match='seed'):
        Guard(_two_joint()).reset([np.nan, 0.0])


def test_real_aloha_stream_with_injected_faults_stays_in_contract(data_file):
    z = np.load(data_file('aloha_sim_lerobot_4ep.npz'), allow_pickle=False)
    actions = z['actions'].astype(np.float64)
    lo, hi = np.percentile(actions, 2, axis=0), np.percentile(actions, 98, axis=0)
    vmax = np.percentile(np.abs(np.diff(actions, axis=0)), 95, axis=0) * 50 + 1e-3
    c = Contract(tuple(f'j{i}' for i in range(14)), lo, hi, vmax, dt=0.02)
    faulty = actions.copy()
    faulty[300:320] *= 40.0             # a burst that skipped unnormalization
    faulty[500, 3] = np.nan
    faulty[700:760] += 0.5 * np.sin(np.arange(60) * 2.0)[:, None]  # oscillation
    guard = Guard(c)
    guard.reset(c.project_into_bounds(actions[0]))
    executed, events = guard.run(faulty)
    assert np.all(np.isfinite(executed))
    assert np.all(executed >= lo - TOL) and np.all(executed <= hi + TOL)
    assert np.all(np.abs(np.diff(executed, axis=0)) <= c.max_step() + TOL)
    assert guard.counts['nonfinite'] == 1 and guard.counts['position'] > 0
    assert executed[500, 3] == executed[499, 3]


def test_hold_brakes_within_the_acceleration_box_instead_of_stopping_dead():
    c = Contract(('a',), [-100.0], [100.0], [10.0], dt=0.01, max_acceleration=[10.0])
    guard = Guard(c)
    guard.reset([0.0], velocity=[5.0])              # moving at 5 units/s
    out, events = guard.step([np.nan])              # rejected: hold, but brake at <= 10 units/s^2
    assert events[0].reason == 'nonfinite'
    assert out[0] == pytest.approx(0.05 - 10.0 * 0.01 ** 2)
    assert guard.velocity[0] == pytest.approx(4.9)
    held = [guard.hold()[0] for _ in range(60)]
    speeds = np.abs(np.diff([out[0]] + held)) / 0.01
    assert np.all(np.abs(np.diff(speeds)) <= 10.0 * 0.01 + 1e-9)
    assert speeds[-1] < 1e-9                        # came to rest


def test_steps_are_limited_by_elapsed_time_not_per_call():
    c = Contract(('a',), [-10.0], [10.0], [1.0], dt=0.01)
    guard = Guard(c)
    guard.reset([0.0])
    late, _ = guard.step([1.0], elapsed=0.015)      # a late tick keeps the velocity ...
    early, _ = guard.step([1.0], elapsed=0.005)     # ... the on-time one that follows: half a step
    assert late[0] == pytest.approx(0.015) and early[0] == pytest.approx(0.02)
    stalled, _ = guard.step([1.0], elapsed=1.0)     # a stall is never caught up with a jump
    assert stalled[0] == pytest.approx(0.04)
    same, events = guard.step([1.0], elapsed=0.0)   # two commands at one instant: no motion
    assert same[0] == pytest.approx(0.04) and events[0].reason == 'velocity'


def test_audit_checks_velocity_and_acceleration_over_elapsed_time():
    from vla_safety_filter.core.contract import audit
    c = Contract(('a',), [-10.0], [10.0], [1.0], dt=0.01, max_acceleration=[10.0])
    times = np.arange(5) * 0.01
    fine = audit(c, [0.0], [[0.0], [0.0001], [0.0003], [0.0006], [0.001]], times)
    assert fine['over_speed'] == fine['over_acceleration'] == 0
    # each message within vmax*dt, but two commands per period: twice vmax over elapsed time
    doubled = audit(c, [0.0], np.arange(1, 11)[:, None] * 0.01, np.arange(10) * 0.005)
    assert doubled['over_rate_limit'] == 0 and doubled['over_speed'] == 9
    assert audit(c, [0.0], [[0.01], [0.035]], [0.0, 0.025])['over_rate_limit'] == 1
    assert doubled['max_speed_ratio'] == pytest.approx(2.0, rel=0.05)


def _velocity_change_ok(contract, v_old, v_new, span, tol=1e-6):
    """Speeding up within max_acceleration, slowing down within max_deceleration (or acc)."""
    acc = contract.max_acceleration if contract.max_acceleration is not None else np.inf
    dec = contract.max_deceleration if contract.max_deceleration is not None else acc
    faster = np.where(v_old >= 0, acc, dec)
    slower = np.where(v_old > 0, dec, acc)
    dv = v_new - v_old
    return np.all(dv <= faster * span * (1 + 1e-9) + tol) and \
        np.all(-dv <= slower * span * (1 + 1e-9) + tol)


def test_braking_look_ahead_stops_before_the_bound_within_the_deceleration():
    """
    Brake before the bound in the ros2_control limiter case.

    Bounds +-5, vmax 2, amax 5, dt 0.05, at 4.0 moving at 1.5 toward a request beyond the
    bound. Without look-ahead the bound stopped it at 35 rad/s^2.
    """
    c = Contract(('a',), [-5.0], [5.0], [2.0], dt=0.05, max_acceleration=[5.0])
    guard = Guard(c)
    guard.reset([4.0], velocity=[1.5])
    path = [4.0] + [guard.step([9.0])[0][0] for _ in range(60)]
    v = np.diff(path) / 0.05
    accel = np.diff(np.concatenate([[1.5], v])) / 0.05
    assert max(path) <= 5.0 and path[-1] == pytest.approx(5.0, abs=0.05)
    assert np.max(np.abs(accel)) <= 5.0 + 1e-6


@settings(max_examples=EXAMPLES, deadline=None)
@given(contracts(accel=True, scaling='per_joint'), st.data())
def test_from_rest_inside_the_bounds_no_limit_ever_gives_way(c, data):
    """
    Never let the bounds override the acceleration limits (braking look-ahead).

    Starting at rest inside the bounds, any request stream keeps position, velocity and
    acceleration.
    """
    decelerations = st.lists(st.floats(1e-2, 1e4), min_size=c.dim, max_size=c.dim)
    dec = data.draw(st.one_of(st.none(), decelerations))
    c = Contract(c.joint_names, c.lower, c.upper, c.max_velocity, c.dt, c.max_acceleration,
                 max_deceleration=dec)
    frac = np.array(data.draw(st.lists(st.floats(0, 1), min_size=c.dim, max_size=c.dim)))
    prev = c.lower + frac * (c.upper - c.lower)
    guard = Guard(c)
    guard.reset(prev)
    velocity = np.zeros(c.dim)
    for action in data.draw(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=c.dim,
                                              max_size=c.dim), min_size=1, max_size=40)):
        out, _ = guard.step(action)
        new = (out - prev) / c.dt
        assert _inside(c, out)
        assert np.all(np.abs(new) <= c.max_velocity * (1 + 1e-9) + 1e-9)
        assert _velocity_change_ok(c, velocity, new, c.dt, tol=1e-6 / c.dt)
        prev, velocity = out, new


def test_max_deceleration_is_asymmetric():
    c = Contract(('a',), [-100.0], [100.0], [10.0], dt=0.1, max_acceleration=[1.0],
                 max_deceleration=[4.0])
    guard = Guard(c)
    guard.reset([0.0], velocity=[5.0])
    faster, _ = guard.step([100.0])                 # speeding up: +1 units/s per second
    assert (faster[0] - 0.0) / 0.1 == pytest.approx(5.0 + 1.0 * 0.1)
    guard.reset([0.0], velocity=[5.0])
    slower, _ = guard.step([0.0])                   # braking: -4 units/s per second
    assert (slower[0] - 0.0) / 0.1 == pytest.approx(5.0 - 4.0 * 0.1)


def test_speed_scale_only_scales_down_and_is_validated():
    c = Contract(('a',), [-10.0], [10.0], [1.0], dt=0.1)
    guard = Guard(c)
    guard.reset([0.0])
    guard.set_speed_scale(0.25)
    assert guard.step([5.0])[0][0] == pytest.approx(0.025)
    for bad in (0.0, -0.5, 1.5, float('nan')):
        with pytest.raises(InputError, match='speed_scale'):
            guard.set_speed_scale(bad)


def test_uniform_scaling_brakes_all_joints_together():
    c = Contract(('a', 'b'), [-10.0, -10.0], [1.0, 10.0], [10.0, 10.0], dt=0.1,
                 max_acceleration=[100.0, 100.0], velocity_scaling='uniform')
    guard = Guard(c)
    guard.reset([0.5, 0.0])                        # a is 0.5 from its bound
    out, _ = guard.step([1.0, 0.5])                # direction (1, 1); a may only take ~0.41
    step = out - [0.5, 0.0]
    assert step[0] == pytest.approx(step[1]) and step[0] < 0.45


def test_max_deceleration_is_read_from_ros2_control_joint_limits(tmp_path):
    from vla_safety_filter.core.limits import read_hardware_limits
    path = tmp_path / 'limits.yaml'
    path.write_text('joint_limits:\n'
                    '  a: {has_acceleration_limits: true, max_acceleration: 2.0,\n'
                    '      has_deceleration_limits: true, max_deceleration: 6.0}\n'
                    '  b: {has_deceleration_limits: false, max_deceleration: 1.0}\n')
    limits = read_hardware_limits(str(path), ['a', 'b'])
    assert limits.max_deceleration[0] == 6.0 and np.isnan(limits.max_deceleration[1])


def test_max_deceleration_round_trips_through_the_filter_parameters():
    from vla_safety_filter.core.params import contract_from_params, contract_to_params
    c = Contract(('a',), [-1.0], [1.0], [1.0], dt=0.01, max_acceleration=[2.0],
                 max_deceleration=[5.0])
    back = contract_from_params(contract_to_params(c))
    assert list(back.max_deceleration) == [5.0] and list(back.max_acceleration) == [2.0]
