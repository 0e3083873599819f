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


"""The Cartesian workspace box: forward kinematics, cuts along the step, end-effector deltas."""
import dataclasses
import os

from hypothesis import assume, given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract, Guard
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.kinematics import UrdfKinematics
from vla_safety_filter.core.limits import with_optional_limits
from vla_safety_filter.core.workspace import delta_events, DeltaTarget, distance, Workspace

pytest.importorskip('pinocchio')
PLANAR = os.path.join(os.path.dirname(__file__), 'data', 'planar3.urdf')
JOINTS = ('j1', 'j2', 'j3')
LOWER, UPPER = np.array([0.2, -0.6, 0.0]), np.array([1.0, 0.6, 0.2])
EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400'))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
angles = st.lists(st.floats(-2.5, 2.5), min_size=3, max_size=3)


def planar(q):
    """Return the planar arm's tool position, by hand."""
    c = np.cumsum(q)
    return np.array([0.5 * np.cos(c[0]) + 0.4 * np.cos(c[1]) + 0.3 * np.cos(c[2]),
                     0.5 * np.sin(c[0]) + 0.4 * np.sin(c[1]) + 0.3 * np.sin(c[2]), 0.1])


FK = UrdfKinematics(PLANAR, 'tool', JOINTS)


def _contract(**kw):
    return Contract(JOINTS, [-2.5] * 3, [2.5] * 3, [2.0] * 3, dt=0.02,
                    workspace=Workspace(LOWER, UPPER, FK), **kw)


@SETTINGS
@given(angles)
def test_forward_kinematics_matches_the_planar_arm_by_hand(q):
    np.testing.assert_allclose(FK(q), planar(q), atol=1e-12)


def _inside(p, tol=0.0):
    return np.all(p >= LOWER - tol) and np.all(p <= UPPER + tol)


@SETTINGS
@given(angles, st.data())
def test_commands_keep_the_end_effector_in_the_box_cut_along_the_step(start, data):
    """
    Keep the tool inside over elapsed time, from inside the box.

    Every cut is a 'workspace' event, and a cut command lies on the joint-limited step (fraction
    in [0, 1]).
    """
    assume(_inside(planar(start)))
    c = _contract()
    free = Guard(dataclasses.replace(c, workspace=None))
    guard = Guard(c)
    prev = np.array(start)
    guard.reset(prev)
    for _ in range(data.draw(st.integers(1, 30))):
        action = data.draw(st.lists(st.floats(-3, 3), min_size=3, max_size=3))
        elapsed = data.draw(st.one_of(st.none(), st.floats(0, 0.05)))
        free.reset(prev)
        limited, _ = free.step(action, elapsed)
        out, events = guard.step(action, elapsed)
        assert _inside(planar(out))
        step = limited - prev
        moving = np.abs(step) > 1e-12
        if moving.any():
            fraction = (out - prev)[moving] / step[moving]
            assert np.ptp(fraction) < 1e-9 and -1e-12 <= fraction[0] <= 1 + 1e-12
        cut = {e.joint for e in events if e.reason == 'workspace'}
        assert cut == {JOINTS[j] for j in np.flatnonzero(out != limited)}
        prev = out


@SETTINGS
@given(angles, st.lists(angles, min_size=1, max_size=20))
def test_from_outside_the_box_the_tool_never_moves_further_out(start, stream):
    assume(not _inside(planar(start)))
    guard = Guard(_contract())
    guard.reset(start)
    gap = distance(planar(start), LOWER, UPPER)
    for action in stream:
        out, _ = guard.step(action)
        now = distance(planar(out), LOWER, UPPER)
        assert now <= gap + 1e-12
        gap = now


def test_straightening_the_elbow_stops_where_the_tool_reaches_the_face():
    """Tool at x = 0.5 + 0.7 cos(q2): pushing toward q2 = 0 (x = 1.2) stops at x = 1.0."""
    guard = Guard(_contract())
    guard.reset([0.0, 0.8, 0.0])                  # x = 0.988, inside
    for _ in range(100):
        out, events = guard.step([0.0, 0.0, 0.0])
    assert planar(out)[0] <= 1.0 and planar(out)[0] == pytest.approx(1.0, abs=1e-3)
    assert out[1] == pytest.approx(np.arccos(0.5 / 0.7), abs=1e-2)
    assert [(e.joint, e.reason) for e in events] == [('j2', 'velocity'), ('j2', 'workspace')]
    assert guard.counts['workspace'] >= 90


@SETTINGS
@given(st.lists(st.floats(-2, 2), min_size=3, max_size=3),
       st.lists(st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3), max_size=30))
def test_delta_target_stays_in_the_box_and_never_jumps(start, deltas):
    target = DeltaTarget(LOWER, UPPER, start)
    for k, delta in enumerate(deltas):
        before = target.target.copy()
        allowed, cut = target.step(delta)
        assert np.all(np.abs(allowed) <= np.abs(delta) + 1e-12)       # never a jump
        assert np.array_equal(cut, allowed != np.asarray(delta))
        events = delta_events(k, delta, allowed)
        assert [e.joint for e in events] == [a for a, c in zip('xyz', cut) if c]
        assert all(e.reason == 'workspace' and e.step == k for e in events)
        assert distance(target.target, LOWER, UPPER) <= distance(before, LOWER, UPPER) + 1e-12
        if _inside(before):
            assert _inside(target.target)


@pytest.mark.parametrize('name, scale', [('bridge_octo_debug_50ep.npz', 1.0),
                                         ('libero_smolvla_rollouts_7ep.npz', 0.01)])
def test_real_end_effector_delta_streams_stay_in_a_box(name, scale, data_file):
    """
    Keep real integrated targets in a 10 cm box, cutting only the deltas that would leave it.

    Bridge (metres) and LIBERO (normalized deltas, ~1 cm per unit), from the box centre.
    """
    with np.load(data_file(name), allow_pickle=False) as z:
        actions, episodes = z['actions'].astype(np.float64), z['episode_index']
    lower, upper = np.full(3, -0.05), np.full(3, 0.05)
    cuts = steps = 0
    for e in np.unique(episodes):
        target = DeltaTarget(lower, upper, np.zeros(3))
        for delta in actions[episodes == e, :3] * scale:
            allowed, cut = target.step(delta)
            assert np.all(target.target >= lower) and np.all(target.target <= upper)
            assert np.array_equal(allowed[~cut], delta[~cut])      # uncut axes pass unchanged
            cuts += bool(cut.any())
            steps += 1
    assert 0 < cuts < steps


def test_workspace_parameters_build_the_box_or_say_what_is_wrong():
    c = Contract(JOINTS, [-2.5] * 3, [2.5] * 3, [2.0] * 3, dt=0.02)
    params = {'workspace_urdf': PLANAR, 'workspace_frame': 'tool',
              'workspace_lower': LOWER.tolist(), 'workspace_upper': UPPER.tolist()}
    with_box = with_optional_limits(c, params)
    assert with_box.workspace.contains([0.0, 0.8, 0.0])
    assert not with_box.workspace.contains([0.0, 0.0, 0.0])
    for change, match in [({'workspace_frame': ''}, 'workspace_frame is empty'),
                          ({'workspace_frame': 'nope'}, "no frame 'nope'"),
                          ({'workspace_lower': [0.0, 0.0]}, 'three finite'),
                          ({'workspace_lower': [2.0, 0.0, 0.0]}, 'above upper'),
                          ({'workspace_urdf': '/nonexistent.urdf'}, 'cannot build')]:
        with pytest.raises(InputError, match=match):
            with_optional_limits(c, {**params, **change})
    two = Contract(JOINTS[:2], [-2.5] * 2, [2.5] * 2, [2.0] * 2, dt=0.02)
    with pytest.raises(InputError, match=r"\['j3'\] move frame 'tool'"):
        with_optional_limits(two, params)
