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
The control tick's memory behaviour, in core (no ROS, not timed).

With `gc_mode: quiet` the garbage collector is off while the filter is active, which is safe
only if a tick keeps nothing and leaves no reference cycles behind. A recorded ALOHA episode
(14 joints) is replayed through `Executive` at 1 kHz as single-point chunks arriving between
timer ticks; tracemalloc shows what a tick keeps and the largest transient it makes.
"""
import gc
import os
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.contract import Contract
from vla_safety_filter.core.executive import Executive, RUNNING

ALOHA = 'aloha_sim_lerobot_4ep.npz'
DT = 0.001
#: Bytes 10,000 ticks may keep allocated (numpy's small-buffer cache): under 2 bytes a tick,
#: where keeping one D = 14 command per tick would keep 1.1 MB.
RETAINED_BYTES = 16384
#: Largest transient of one tick, bytes (2.6 kB measured): D-sized temporaries, never a copy
#: of the chunk (60 frames of 14 joints: 6.7 kB) or of a history.
TRANSIENT_BYTES = 4096


@pytest.fixture(scope='module')
def episode(shared_data):
    """Return the first recorded ALOHA episode's actions [T, 14]."""
    data = np.load(os.path.join(shared_data, ALOHA))
    actions = data['actions'].astype(float)
    return actions[data['episode_index'] == data['episode_index'][0]]


def _executive(actions) -> Executive:
    """Return an active executive at 1 kHz around the recording (acceleration-limited)."""
    dim = actions.shape[1]
    contract = Contract(tuple(f'j{k}' for k in range(dim)), actions.min(axis=0) - 0.2,
                        actions.max(axis=0) + 0.2, [1.0] * dim, DT,
                        max_acceleration=[20.0] * dim)
    ex = Executive(contract, command_timeout=0.2)
    ex.observe(actions[0], 0.0)
    ex.start(0.0)
    return ex


def _replay(ex, actions, start: int, ticks: int, now: float, every: int = 20) -> float:
    """Run `ticks` timer ticks, a recorded frame arriving (due at once) every `every` ticks."""
    for k in range(start, start + ticks):
        if k % every == 0:
            ex.on_chunk(actions[(k // every) % len(actions)][None, :], [0.0], now)
            ex.on_arrival(now + 0.3 * DT)
        ex.on_timer(now + DT)
        now += DT
    return now


def _ours(snapshot):
    """Keep the traces allocated in this package and numpy (not tracemalloc's own)."""
    return snapshot.filter_traces([tracemalloc.Filter(True, '*vla_safety_filter*'),
                                   tracemalloc.Filter(True, '*numpy*')])


def test_ticks_keep_nothing_and_leave_no_cycles_for_the_collector(episode):
    ex = _executive(episode)
    now = _replay(ex, episode, 0, 3000, 0.0)               # warm-up: numpy's caches fill
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    tracemalloc.start()
    try:
        before = _ours(tracemalloc.take_snapshot())
        _replay(ex, episode, 3000, 10000, now)
        gc.collect()
        cycles = [o for o in gc.garbage if type(o).__module__.startswith(('vla_safety_filter',
                                                                          'numpy'))]
        gc.garbage.clear()
        after = _ours(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    kept = sum(stat.size_diff for stat in after.compare_to(before, 'filename'))
    assert kept <= RETAINED_BYTES, after.compare_to(before, 'lineno')[:5]
    assert not cycles
    assert ex.state == RUNNING


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 60), phase=st.floats(0.0, 0.99), due=st.floats(0.0, 0.05))
def test_one_tick_allocates_a_few_temporaries_whatever_the_chunk(episode, length, phase, due):
    ex = _executive(episode)
    now = _replay(ex, episode, 0, 200, 0.0)
    frames = episode[100:100 + length]
    ex.on_chunk(frames, due + np.arange(len(frames)) * 0.02, now + phase * DT)
    ex.on_arrival(now + phase * DT)
    tracemalloc.start()
    try:
        largest = 0
        for _ in range(50):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            now += DT
            ex.on_timer(now)
            largest = max(largest, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    assert largest <= TRANSIENT_BYTES
    assert ex.state == RUNNING
