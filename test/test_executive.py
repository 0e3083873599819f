"""The filter's per-tick logic: due targets, receding horizon, watchdog hold/stop, latch, refusals."""
import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.executive import HOLDING, LATCHED, RUNNING, STOPPED, Executive
from vla_safety_filter.core.joints import JointMap


def _exec(timeout=0.1):
    c = Contract(('a', 'b'), [-1.0, -1.0], [1.0, 1.0], [10.0, 10.0], dt=0.01)
    ex = Executive(c, command_timeout=timeout)
    ex.start([0.0, 0.0], now=0.0)
    return ex


def test_nothing_is_published_before_the_first_input():
    assert _exec().tick(0.01) == (None, STOPPED, ())


def test_chunk_points_become_due_at_their_time_and_are_rate_limited():
    ex = _exec()
    assert ex.on_chunk([[0.05, 0.0], [0.5, 0.0]], [0.0, 0.05], now=1.0) == ()
    t1 = ex.tick(1.0)
    assert t1.state == RUNNING and t1.command == pytest.approx([0.05, 0.0])
    t2 = ex.tick(1.01)                    # second point is the due target: 0.1 per tick at most
    assert t2.command == pytest.approx([0.15, 0.0]) and t2.events[0].reason == 'velocity'


def test_new_chunk_replaces_the_queue():
    ex = _exec()
    ex.on_chunk([[0.5, 0.5]], [0.0], now=1.0)
    ex.on_chunk([[-0.05, 0.0]], [0.0], now=1.005)
    assert ex.tick(1.01).command == pytest.approx([-0.05, 0.0])


def test_watchdog_holds_then_stops_then_resumes():
    ex = _exec(timeout=0.1)
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.tick(1.0)
    hold = ex.tick(1.15)
    assert hold.state == HOLDING and hold.command == pytest.approx([0.05, 0.05])
    assert ex.tick(1.25) == (None, STOPPED, ())
    ex.on_chunk([[0.06, 0.05]], [0.0], now=2.0)
    assert ex.tick(2.0).command == pytest.approx([0.06, 0.05])


@pytest.mark.parametrize('targets, times, reason', [
    ([[np.nan, 0.0]], [0.0], 'nonfinite'), ([[0.0, 0.0, 0.0]], [0.0], 'shape'),
    ([[0.0, 0.0], [0.1, 0.0]], [0.1, 0.1], 'bad_timing'), ([], [], 'shape'),
    ([[0.0, 0.0]], [-1.0], 'bad_timing')])
def test_malformed_chunk_is_refused_whole_and_holds(targets, times, reason):
    ex = _exec()
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.tick(1.0)
    events = ex.on_chunk(targets, times, now=1.01)
    assert events[0].reason == reason and ex.guard.counts[reason] == 1
    assert ex.tick(1.02).command == pytest.approx([0.05, 0.05])   # hold, not the old target
    assert ex.tick(1.15).state == HOLDING                        # refused input is not fresh


def test_latched_stop_until_reset():
    ex = _exec()
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.0)
    ex.latch('alarm: reversal_rate')
    assert ex.tick(1.0) == (None, LATCHED, ()) and ex.latched_reason == 'alarm: reversal_rate'
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.01)
    assert ex.tick(1.01).state == LATCHED
    assert ex.reset_latch() and ex.tick(1.02).state == STOPPED
    ex.on_chunk([[0.05, 0.05]], [0.0], now=1.03)
    assert ex.tick(1.03).state == RUNNING


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
