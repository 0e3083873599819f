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
The executive's tick path answers exactly as the straightforward one of commit 41fc0ad.

The reference (executive, guard, escalation of that commit) is read with `git show` into a
temporary package. Both are driven alike — chunks (NaN points, bad or stale times, single
points), measured positions, ticks with jittered elapsed times, arrivals, timer ticks, holds,
episode ends, stops, latch resets, speed scales — and must agree bit for bit: every command,
state, event, refusal, count and the final brake path.
"""
import importlib
import os
import subprocess
import sys

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vla_safety_filter.core import contract as current_contract
from vla_safety_filter.core import escalation as current_escalation
from vla_safety_filter.core import executive as current_executive

REFERENCE = '41fc0ad'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ('contract', 'errors', 'escalation', 'executive')
EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '300'))
PUSHT = 'pusht_cchi_v7_replay.npz'
ALOHA = 'aloha_sim_lerobot_4ep.npz'


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """Return the reference's (contract, escalation, executive) modules, read from git."""
    package = tmp_path_factory.mktemp('reference') / 'executive_41fc0ad'
    package.mkdir()
    (package / '__init__.py').write_text('')
    for name in MODULES:
        try:
            text = subprocess.run(
                ['git', '-C', REPO, 'show', f'{REFERENCE}:vla_safety_filter/core/{name}.py'],
                check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f'reference commit {REFERENCE} not readable with git: {exc}')
        (package / f'{name}.py').write_text(text)
    sys.path.insert(0, str(package.parent))
    try:
        return tuple(importlib.import_module(f'executive_41fc0ad.{name}')
                     for name in ('contract', 'escalation', 'executive'))
    finally:
        sys.path.remove(str(package.parent))


def _same(value):
    """Return `value` comparable across the two implementations, bit for bit."""
    if isinstance(value, np.ndarray):
        return ('array', value.shape, value.tobytes())
    if isinstance(value, float):
        return ('float', repr(value))
    if isinstance(value, tuple):      # Tick, Event and tuples of them compare field by field
        return tuple(_same(v) for v in value)
    return value


def _call(method, *args):
    """Call; return the answer, or the exception's name and message (both must agree)."""
    try:
        return _same(method(*args))
    except Exception as exc:        # InputError of either package: compared by name and text
        return ('raised', type(exc).__name__, str(exc))


class Pair:
    """The current executive and the reference, built from the same arguments."""

    def __init__(self, reference, d: int, options: dict, escalation: dict | None = None,
                 following: list | None = None):
        names = tuple(f'j{i}' for i in range(d))
        self.sides = []
        for contract_mod, escalation_mod, executive_mod in (
                (current_contract, current_escalation, current_executive), reference):
            contract = contract_mod.Contract(names, **options)
            esc = None if escalation is None else escalation_mod.Escalation(**escalation)
            self.sides.append(executive_mod.Executive(
                contract, command_timeout=0.1, state_timeout=0.5, following_error=following,
                following_error_ticks=2, escalation=esc))
        self.d = d

    def both(self, name: str, *args):
        """Call method `name` on both; assert they answered alike; return the answer."""
        ours, theirs = (_call(getattr(side, name), *args) for side in self.sides)
        assert ours == theirs, (name, args)
        return ours

    def check_state(self):
        """Assert both are in the same state, with the same counts and guard state."""
        ours, theirs = self.sides
        assert (ours.state, ours.waiting, ours.latched_reason, ours.escalation_level) == \
            (theirs.state, theirs.waiting, theirs.latched_reason, theirs.escalation_level)
        assert ours.guard.counts == theirs.guard.counts
        assert _same(ours.guard.prev) == _same(theirs.guard.prev)
        assert _same(ours.guard.velocity) == _same(theirs.guard.velocity)


def _contract_options(draw, d: int) -> dict:
    """Draw bounds, vmax and dt and, sometimes, the optional limits the guard branches on."""
    lower = np.array(draw(st.lists(st.floats(-3, 0), min_size=d, max_size=d)))
    width = np.array(draw(st.lists(st.floats(0.1, 4), min_size=d, max_size=d)))
    vmax = np.array(draw(st.lists(st.floats(0.05, 5), min_size=d, max_size=d)))
    options = {'lower': lower, 'upper': lower + width, 'max_velocity': vmax,
               'dt': draw(st.sampled_from([0.002, 0.02, 0.1]))}
    kind = draw(st.sampled_from(['plain', 'plain', 'plain', 'uniform', 'acceleration']))
    if kind == 'uniform':
        options['velocity_scaling'] = 'uniform'
    elif kind == 'acceleration':
        options['max_acceleration'] = vmax * draw(st.floats(2, 50))
    return options


def _chunk(draw, d: int, dt: float):
    """Draw a chunk: targets [K, d] (sometimes NaN), offsets (sometimes broken) and an age."""
    k = draw(st.integers(1, 6))
    values = st.floats(-4, 4)
    targets = np.array(draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=k,
                                     max_size=k)))
    if draw(st.integers(0, 9)) == 0:
        targets[draw(st.integers(0, k - 1)), draw(st.integers(0, d - 1))] = np.nan
    steps = np.array(draw(st.lists(st.floats(0.2, 3), min_size=k, max_size=k))) * dt
    offsets = draw(st.sampled_from([0.0, dt, 3 * dt])) + np.cumsum(steps) - steps[0]
    broken = draw(st.integers(0, 14))
    if broken == 0 and k > 1:
        offsets[-1] = offsets[0]                                    # not increasing
    elif broken == 1:
        offsets[0] = -dt                                            # before the start
    elif broken == 2:
        offsets[-1] = np.inf
    age = draw(st.sampled_from([0.0, 0.0, 0.0, 0.5 * dt, 0.05, 0.2, -0.05, -0.5]))
    return targets, offsets, age


@st.composite
def scenarios(draw):
    """Draw a contract, an escalation, a following error or not, a start, a call stream."""
    d = draw(st.integers(1, 4))
    options = _contract_options(draw, d)
    escalating = {'rates': (20.0, 60.0, 90.0), 'cooldown': 0.2, 'window': 0.2}
    escalation = draw(st.sampled_from([None, None, escalating]))
    following = draw(st.sampled_from([None, None, [0.05] * d]))
    start = np.array(draw(st.lists(st.floats(-2, 2), min_size=d, max_size=d)))
    dt = options['dt']
    calls = []
    for _ in range(draw(st.integers(5, 60))):
        kind = draw(st.sampled_from(['tick'] * 6 + ['chunk'] * 2 + [
            'observe', 'arrival', 'timer', 'end_episode', 'stop', 'release', 'reset',
            'speed', 'silence', 'observe_nan']))
        jitter = draw(st.sampled_from([1.0, 1.0, 0.0, 0.3, 0.97, 1.04, 1.6, 2.5]))
        extra = _chunk(draw, d, dt) if kind == 'chunk' else None
        calls.append((kind, jitter * dt, extra))
    return d, options, escalation, following, start, calls


def _drive(pair: Pair, start: np.ndarray, calls) -> None:
    """Run the calls on both executives at advancing times, comparing every answer."""
    now = 1.0
    pair.both('observe', start, now)
    pair.both('start', now)
    position = start.copy()
    for kind, advance, extra in calls:
        now += advance
        if kind == 'tick':
            tick = pair.both('tick', now)
            if tick[0] is not None and tick[0][0] == 'array':   # the arm follows the command
                position = np.frombuffer(tick[0][2]).copy()
            pair.both('observe', position, now)
        elif kind == 'chunk':
            targets, offsets, age = extra
            pair.both('on_chunk', targets, offsets, now, age)
        elif kind == 'observe':
            pair.both('observe', position, now)
        elif kind == 'observe_nan':
            pair.both('observe', np.full(pair.d, np.nan), now)
        elif kind == 'arrival':
            pair.both('on_arrival', now)
        elif kind == 'timer':
            pair.both('on_timer', now)
        elif kind == 'end_episode':
            pair.both('end_episode')
        elif kind == 'stop':
            pair.both('set_stop', True, 'drill')
        elif kind == 'release':
            pair.both('set_stop', False)
        elif kind == 'reset':
            pair.both('reset_latch', now)
        elif kind == 'speed':
            pair.both('lower_speed_scale', 0.5)
        else:       # a silence: long enough for the watchdog to hold or stop
            now += 0.15
        pair.check_state()
    pair.both('brake_path')


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_the_tick_path_answers_as_the_reference_on_any_stream(reference, scenario):
    d, options, escalation, following, start, calls = scenario
    _drive(Pair(reference, d, options, escalation, following), start, calls)


def _recorded_chunks(path: str, episodes: int, dim: int):
    """Return a recording's first episodes, as float64 [T, dim] arrays."""
    with np.load(path, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    return [actions[index == e][:, :dim] for e in np.unique(index)[:episodes]]


@pytest.mark.parametrize('name, fps, horizon, episodes', [
    (PUSHT, 10.0, 8, 3), (ALOHA, 50.0, 25, 1)])
def test_recorded_chunk_streams_are_executed_as_the_reference_did(
        reference, data_file, name, fps, horizon, episodes):
    """
    Replay real episodes as the drill does, with a timer's jitter: identical commands.

    A chunk every `horizon` steps, a measured position and a tick per step, the tick times
    off by up to 5 % of a period; the contract from the episodes' own range, vmax a little
    under their fastest step, so the guard clips now and then.
    """
    rng = np.random.default_rng(0)
    for actions in _recorded_chunks(data_file(name), episodes, 14):
        dt = 1.0 / fps
        speed = np.abs(np.diff(actions, axis=0)).max(axis=0) / dt
        options = {'lower': actions.min(axis=0) - 1e-3, 'upper': actions.max(axis=0) + 1e-3,
                   'max_velocity': 0.8 * speed + 1e-3, 'dt': dt}
        pair = Pair(reference, actions.shape[1], options)
        pair.both('observe', actions[0], 0.0)
        pair.both('start', 0.0)
        interventions = 0
        for k in range(len(actions)):
            now = k * dt + rng.uniform(-0.05, 0.05) * dt
            if k % horizon == 0:
                chunk = actions[k:k + horizon]
                pair.both('on_chunk', chunk, dt * np.arange(1, len(chunk) + 1), now)
            pair.both('observe', actions[max(k - 1, 0)], now)
            tick = pair.both('tick', now)
            interventions += len(tick[2])
        pair.check_state()
        assert interventions > 0        # the guard did clip: both paths were compared
