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
A safety stop is held while ANY source asserts it: core.stop_sources and the filter over DDS.

Several publishers share /vla/safety_stop (the monitor, operator and teleop e-stops): one's
`false` never releases another's `true`, and a publisher that dies stops asserting while the
latch it set stays until ~/reset. On every rclpy: by publisher GID (rclpy >= 9), else by
re-reading the latched publishers (Jazzy, the EventsExecutor; core.stop_reread).
"""
import contextlib
import os
import time

from hypothesis import given, settings, strategies as st
from lifecycle_msgs.msg import Transition
import numpy as np
from probes import FakeArm, FilterProbe, SMALL_CONTRACT
import pytest
from rcl_interfaces.msg import Log
import rclpy
import rclpy.subscription
from ros_harness import Harness, wait_for
from std_msgs.msg import Bool
from vla_safety_filter.core.stop_sources import StopSources
from vla_safety_filter.names import SAFETY_STOP
from vla_safety_filter.nodes.common import LATCHED_QOS, make_executor
from vla_safety_filter.nodes.compat import events_executor
from vla_safety_filter.nodes.safety_filter import PROBE_TIMEOUT_S, SafetyFilter

EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400'))
JOINTS = SMALL_CONTRACT['joint_names']
VMAX, DT = 2.0, 0.01
#: rclpy >= 9 (Kilted) gives each message's publisher GID; Jazzy's rclpy 7.1 does not, and the
#: filter then re-reads the latched publishers' values instead.
GID_IN_MESSAGE_INFO = 'publisher_gid' in getattr(
    getattr(rclpy.subscription, 'MessageInfo', None), '__annotations__', {})
MODE = 'publisher_gid' if GID_IN_MESSAGE_INFO else 'reread_latched'
no_events_executor = pytest.mark.skipif(events_executor()[0] is None,
                                        reason='this rclpy has no EventsExecutor')

# ---- core ------------------------------------------------------------------------------------
SOURCES = st.sampled_from('abcd')
OPS = st.one_of(
    st.tuples(st.just('record'), SOURCES, st.booleans(), st.none() | st.integers(0, 6),
              st.none() | st.integers(0, 6)),
    st.tuples(st.just('forget'), SOURCES),
    st.tuples(st.just('prune'), st.frozensets(SOURCES)),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_asserted_is_any_last_value_of_the_live_sources(ops):
    """Any interleaving: asserted == any(last value per live source), `who` names exactly them."""
    sources = StopSources(grace=-1.0)           # no discovery grace: absent = gone
    last, sequence, heard = {}, {}, {}
    for op in ops:
        if op[0] == 'record':
            _, source, value, seq, message = op
            repeat = source in last and (message in heard[source] or None not in (
                seq, sequence[source]) and seq <= sequence[source])
            assert sources.record(source, value, 0.0, seq, message) is not repeat
            if not repeat:
                last[source], sequence[source] = value, seq
                heard.setdefault(source, set()).update({message} - {None})
        elif op[0] == 'forget':
            sources.forget(op[1])
            last.pop(op[1], None)
            heard.pop(op[1], None)
        else:
            gone = set(last) - op[1]
            assert set(sources.prune(op[1], 0.0)) == gone
            for source in gone:
                del last[source], heard[source]
        assert sources.asserted == any(last.values())
        assert set(sources.who) == {s for s, value in last.items() if value}
        assert len(sources) == len(last)


def test_one_source_releasing_does_not_release_another():
    sources = StopSources()
    sources.record('operator', True, 0.0)
    sources.record('monitor', False, 0.1)           # the monitor's own condition cleared
    assert sources.asserted and sources.who == ('operator',)
    sources.record('operator', False, 0.2)
    assert not sources.asserted and sources.who == ()


def test_a_message_heard_twice_or_out_of_order_is_ignored():
    """The filter hears a publisher on two subscriptions: an older sequence number is stale."""
    sources = StopSources()
    assert sources.record('a', True, 0.0, sequence=1)
    assert sources.record('a', False, 0.0, sequence=2)
    assert not sources.record('a', True, 0.0, sequence=1)     # the first, heard again
    assert not sources.asserted


def test_a_source_not_yet_in_the_graph_is_kept_for_the_grace_then_dropped():
    sources = StopSources(grace=2.0)
    sources.record('new', True, 10.0)
    assert sources.prune(set(), 11.5) == () and sources.asserted     # discovery may lag
    assert sources.prune(set(), 12.5) == ('new',) and not sources.asserted


def test_a_source_seen_in_the_graph_is_dropped_as_soon_as_it_leaves():
    sources = StopSources(grace=2.0)
    sources.record('monitor', True, 10.0)
    assert sources.prune({'monitor'}, 10.1) == ()
    assert sources.prune(set(), 10.2) == ('monitor',) and not sources.asserted


def test_a_late_copy_of_an_old_release_does_not_release_a_newer_stop():
    """Without a GID: false (1), true (2), then the other subscription's copy of false (1)."""
    sources = StopSources()
    for stamp, value in ((1, False), (2, True), (1, False)):
        sources.record('unidentified', value, 0.0, message=(stamp, None))
    assert sources.asserted


def test_a_publisher_heard_again_after_it_was_forgotten_counts_again():
    """Rediscovered: its latched `true` is delivered again, the same message, and asserts."""
    sources = StopSources()
    assert sources.record('monitor', True, 0.0, sequence=3, message=(7, 3))
    sources.forget('monitor')                        # it left the graph (partition, lease)
    assert sources.record('monitor', True, 5.0, sequence=3, message=(7, 3))
    assert sources.asserted


# ---- the filter over real DDS ----------------------------------------------------------------
def _pipeline(ros):
    """Start a tracking arm and an active filter; return (arm, probe)."""
    arm = FakeArm(ros, [0.0, 0.5, 0.9])
    ros.add(SafetyFilter, 'safety_filter', **SMALL_CONTRACT, controller_name='arm',
            command_timeout=0.2)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    return arm, probe


def _stop_publisher(ros, name, latched=True):
    """Return a /vla/safety_stop publisher of its own node `name`, matched with the filter."""
    node = ros.node(name)
    pub = node.create_publisher(Bool, SAFETY_STOP, LATCHED_QOS if latched else 10)
    assert wait_for(lambda: pub.get_subscription_count() >= 1)
    return node, pub


def _stream_for(probe, seconds, target=(0.3, 0.5, 0.9)):
    """Send the same one-point chunk every 10 ms for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        probe.send(list(target))
        time.sleep(DT)


def _value(probe, key):
    """Return a value of the filter's last /diagnostics status."""
    return {kv.key: kv.value for kv in probe.status.values}.get(key) if probe.status else None


def _speeds(safe):
    """Return |dq| / dt between consecutive /vla/safe_action commands (stamps: tick times)."""
    times = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in safe])
    commands = np.array([m.points[0].positions for m in safe])
    return np.max(np.abs(np.diff(commands, axis=0)), axis=1) / np.diff(times)


def test_another_publishers_false_does_not_release_an_operators_stop(ros):
    arm, probe = _pipeline(ros)
    log = []
    probe.node.create_subscription(Log, '/rosout', log.append, 100)
    _stream_for(probe, 0.4)
    operator, estop = _stop_publisher(ros, 'operator_estop', latched=False)   # a plain button
    estop.publish(Bool(data=True))
    assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
    # a monitor joining late: its latched `false` arrives after the operator's `true`
    monitor, monitor_stop = _stop_publisher(ros, 'late_monitor')
    monitor_stop.publish(Bool(data=False))
    time.sleep(0.3)                                       # commands already sent have come
    count = len(probe.commands)
    refused = probe.reset()
    assert not refused.success and '/operator_estop' in refused.message
    assert 'late_monitor' not in refused.message
    _stream_for(probe, 1.2)                               # a policy still sending actions
    assert len(probe.commands) == count                   # nothing published for 1.2 s
    assert not probe.reset().success
    assert wait_for(lambda: _value(probe, 'stop_sources') == '/operator_estop')
    assert probe.state() == 'latched' and '/operator_estop' in probe.status.message
    assert any(m.level == Log.ERROR and m.name == 'safety_filter'
               and '/operator_estop' in m.msg for m in log)
    if not GID_IN_MESSAGE_INFO:             # re-read: a volatile button cannot be, and is named
        assert wait_for(lambda: any(m.level == Log.WARN and m.name == 'safety_filter'
                                    and 'volatile' in m.msg and '/operator_estop' in m.msg
                                    for m in log))
    arm.move_by_hand([-0.5, 0.0, 0.2])                    # moved by hand while stopped
    resumed = len(probe.safe)
    estop.publish(Bool(data=False))                       # the operator releases
    assert wait_for(lambda: probe.reset().success, timeout=3)
    arm.follow = True
    _stream_for(probe, 0.5)
    assert len(probe.commands) > count + 10               # motion resumed
    first = np.array(probe.commands[count])
    assert np.all(np.abs(first - [-0.5, 0.0, 0.2]) <= 2 * VMAX * DT + 1e-9)   # from the arm
    assert np.all(_speeds(probe.safe[resumed:]) <= VMAX * 1.001)   # stamps: whole ns
    assert operator and monitor


def test_a_publisher_that_dies_asserting_leaves_the_stop_latched_until_reset(ros):
    arm, probe = _pipeline(ros)
    _stream_for(probe, 0.3)
    monitor, monitor_stop = _stop_publisher(ros, 'crashing_monitor')
    _, other = _stop_publisher(ros, 'quiet_estop')        # another publisher, never asserting
    monitor_stop.publish(Bool(data=True))
    assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
    assert '/crashing_monitor' in probe.reset().message
    monitor.destroy_node()                                 # the monitor crashed
    time.sleep(0.3)
    count = len(probe.commands)
    _stream_for(probe, 1.2)
    assert len(probe.commands) == count                   # still latched: nothing for 1.2 s
    assert wait_for(lambda: _value(probe, 'stop_asserted') == 'False')   # no longer asserted
    assert probe.state() == 'latched'
    assert wait_for(lambda: probe.reset().success, timeout=5)
    _stream_for(probe, 0.5)
    assert len(probe.commands) > count + 10               # motion resumed
    assert other.get_subscription_count() >= 1


def test_the_refusal_and_diagnostics_name_who_asserts(ros):
    """On every rclpy: the answer names the asserting node (Jazzy: among the candidates)."""
    arm, probe = _pipeline(ros)
    _stream_for(probe, 0.3)
    _, estop = _stop_publisher(ros, 'teleop_estop')
    estop.publish(Bool(data=True))
    assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
    refused = probe.reset()
    assert not refused.success and '/teleop_estop' in refused.message
    assert wait_for(lambda: '/teleop_estop' in (_value(probe, 'stop_sources') or ''))
    assert _value(probe, 'stop_sources_told_apart') == str(GID_IN_MESSAGE_INFO)
    assert _value(probe, 'stop_sources_mode') == MODE
    estop.publish(Bool(data=False))
    assert wait_for(lambda: probe.reset().success, timeout=3)
    assert wait_for(lambda: _value(probe, 'stop_sources') == '')


@contextlib.contextmanager
def _events_pipeline():
    """Yield (harness, probe): the filter and an arm spun by rclpy's EventsExecutor, streaming."""
    ros = Harness(lambda context: make_executor('events', context))
    try:
        arm, probe = _pipeline(ros)       # (the arm lives as long as this frame)
        _stream_for(probe, 0.3)
        yield ros, probe
    finally:
        ros.close()


@no_events_executor
def test_a_stop_under_the_events_executor_latches_and_the_filter_keeps_running():
    """Its spin_once raises SystemError on a callback taking a MessageInfo: none is given it."""
    with _events_pipeline() as (ros, probe):
        _, estop = _stop_publisher(ros, 'estop')
        estop.publish(Bool(data=True))
        assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
        refused = probe.reset()
        assert not refused.success and '/estop' in refused.message
        assert wait_for(lambda: _value(probe, 'stop_sources_told_apart') == 'False')
        assert _value(probe, 'stop_sources_mode') == 'reread_latched'
        estop.publish(Bool(data=False))
        assert wait_for(lambda: probe.reset().success, timeout=3)
        count = len(probe.commands)
        _stream_for(probe, 0.5)
        assert len(probe.commands) > count + 10               # still spinning: motion resumed


@no_events_executor
def test_under_the_events_executor_a_latched_false_does_not_release_a_volatile_stop():
    """No MessageInfo there: the latched `false` is re-read, the button's `true` kept."""
    with _events_pipeline() as (ros, probe):
        _, estop = _stop_publisher(ros, 'operator_estop', latched=False)
        _, monitor = _stop_publisher(ros, 'monitor')
        estop.publish(Bool(data=True))
        assert wait_for(lambda: probe.state() == 'latched' or (probe.send([0.3, 0.5, 0.9]) and 0))
        time.sleep(0.3)                                       # commands already sent have come
        count = len(probe.commands)
        monitor.publish(Bool(data=False))
        _stream_for(probe, PROBE_TIMEOUT_S + 0.5)             # the re-read has ended
        assert len(probe.commands) == count
        refused = probe.reset()
        assert not refused.success and '/operator_estop' in refused.message
        assert '/monitor' not in refused.message
        estop.publish(Bool(data=False))
        assert wait_for(lambda: probe.reset().success, timeout=3)
        count = len(probe.commands)
        _stream_for(probe, 0.5)
        assert len(probe.commands) > count + 10               # motion resumed
