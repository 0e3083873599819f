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
The guard's fast path (position and velocity limits only) against its general path.

Soft limits with infinite soft bounds never bind, but they send every step through the general
box construction: the two guards must answer alike on any stream, bit for bit.
"""
import copy
import dataclasses
import os

from guard_streams import actions_for
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract, Guard

EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400'))


@st.composite
def plain_contracts(draw):
    d = draw(st.integers(1, 8))
    floats = st.lists(st.floats(-10, 10), min_size=d, max_size=d)
    lower = np.array(draw(floats))
    width = np.abs(np.array(draw(floats)))
    vmax = np.array(draw(st.lists(st.floats(1e-3, 100), min_size=d, max_size=d)))
    return Contract(tuple(f'j{i}' for i in range(d)), lower, lower + width, vmax,
                    dt=draw(st.sampled_from([0.001, 0.01, 0.02, 0.1])),
                    velocity_scaling=draw(st.sampled_from(['per_joint', 'uniform'])))


def _general(c: Contract) -> Contract:
    """Return `c` with soft limits that never bind (the general path, same box)."""
    return dataclasses.replace(c, soft_lower=np.full(c.dim, -np.inf),
                               soft_upper=np.full(c.dim, np.inf),
                               k_position=np.ones(c.dim))


def _answer(guard: Guard, call, elapsed):
    """Return what one call answered: the command, and the events with NaN made comparable."""
    if call is None:
        return guard.hold(elapsed), ()
    out, events = guard.step(call, elapsed)
    return out, tuple(tuple(np.nan_to_num(np.array(e[3:]), nan=7.0)) + e[:3] for e in events)


def _request(c: Contract, guard: Guard, kind, elapsed):
    """Return a request: drawn (kind a list or junk) or, for a number u, prev + u vmax h."""
    if not isinstance(kind, float):
        return kind
    h = c.dt if elapsed is None else min(elapsed, 2 * c.dt)
    return np.clip(guard.prev + kind * c.max_velocity * h, c.lower, c.upper)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_contracts(), st.data())
def test_fast_path_answers_as_the_general_path_on_any_stream(c, data):
    """
    Answer alike with and without the fast path: commands, events, counts, feasibility.

    Requests are mostly reachable ones (the fast path; box edges included), else anything
    (NaN, junk, wrong lengths) and holds; a returned command is scribbled over, which must not
    reach the guard's state; the guards are deep-copied now and then.
    """
    start = np.array(data.draw(st.lists(st.floats(-30, 30), min_size=c.dim, max_size=c.dim)))
    reachable = st.one_of(st.floats(-1, 1), st.sampled_from([-1.0, 1.0, 0.0]))
    calls = data.draw(st.lists(st.tuples(
        st.one_of(reachable, reachable, reachable, st.none(), actions_for(c.dim)),
        st.one_of(st.none(), st.none(), st.floats(0, 3 * c.dt))), min_size=1, max_size=40))
    fast, general = Guard(c), Guard(_general(c))
    fast.reset(start)
    general.reset(start)
    for k, (kind, elapsed) in enumerate(calls):
        if k % 11 == 10:
            fast.set_speed_scale(0.5)
            general.set_speed_scale(0.5)
        if k % 5 == 4:      # a copy carries on exactly as the original would
            fast, general = copy.deepcopy(fast), copy.deepcopy(general)
        call = _request(c, fast, kind, elapsed)
        assert fast.feasible(start, elapsed) == general.feasible(start, elapsed)
        out_fast, events_fast = _answer(fast, call, elapsed)
        out_general, events_general = _answer(general, call, elapsed)
        np.testing.assert_array_equal(out_fast, out_general)
        assert events_fast == events_general
        out_fast[:] = 1e9
    assert fast.counts == general.counts
    np.testing.assert_array_equal(fast.prev, general.prev)


def test_a_late_step_may_reach_further_than_the_inner_box_it_began_with():
    """
    After an on-time step the guard holds the box for dt, an inner box for a later step.

    A late step (1.5 dt) asking for 1.4 vmax dt is outside that box but reachable: executed
    unchanged; asking for 1.6 vmax dt it is clipped to the late step's own reach, as the
    general path clips it; an early step (0.5 dt) is held to its own, smaller reach.
    """
    c = Contract(('a',), [-10.0], [10.0], [1.0], dt=0.1)
    for fraction, elapsed, expected in ((1.4, 0.15, 0.14), (1.6, 0.15, 0.15),
                                        (0.8, 0.05, 0.05)):
        fast, general = Guard(c), Guard(_general(c))
        for guard in (fast, general):
            guard.reset([0.0])
            guard.step([0.0])                 # on time: the box held is the one for dt
        out, events = fast.step([fraction * 0.1], elapsed)
        np.testing.assert_array_equal(out, general.step([fraction * 0.1], elapsed)[0])
        assert out[0] == pytest.approx(expected)
        assert [e.reason for e in events] == ([] if fraction * 0.1 <= expected else
                                              ['velocity'])
