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
policy_bridge's live sources over real DDS and real sockets on 127.0.0.1.

The servers are test_drill_remote's (written from the protocol facts); the bridge is driven only
through topics, lifecycle services, its loaded_unnormalizer service and /diagnostics.
"""
import json
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
from policy_servers import chunk, encode, OpenpiServer, pack
import pytest
from rclpy.time import Time
from ros_harness import wait_for
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from vla_safety_filter import names
from vla_safety_filter.nodes.lifecycle_manager import call
from vla_safety_filter.nodes.policy_bridge import PolicyBridge

OK, WARN, ERROR = (bytes([level]) for level in (names.OK, names.WARN, names.ERROR))
JOINTS = ['j0', 'j1']
STATE = {'j1': 0.25, 'other': 9.0, 'j0': -0.5}
"""What the joint state publishes (by name, in a different order than state_joints)."""
IMAGE = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
RATE = 10.0
CONFIGURE, ACTIVATE, CLEANUP = (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                                Transition.TRANSITION_CLEANUP)
DEACTIVATE = Transition.TRANSITION_DEACTIVATE


class Rig:
    """A probe node that feeds the bridge a camera and joint states and records its outputs."""

    def __init__(self, ros):
        self.probe = ros.node('probe')
        self.chunks, self.statuses, self.state_stamps = [], [], set()
        self.feeding = True
        self.probe.create_subscription(JointTrajectory, names.RAW_ACTION,
                                       lambda m: self.chunks.append(m), 1000)
        self.probe.create_subscription(
            DiagnosticArray, names.DIAGNOSTICS,
            lambda m: self.statuses.extend(s for s in m.status if s.name == names.BRIDGE_STATUS),
            1000)
        self._state = self.probe.create_publisher(JointState, names.JOINT_STATES, 10)
        self._image = self.probe.create_publisher(Image, '/cam/top', 10)
        self.probe.create_timer(0.02, self._feed)

    def _feed(self):
        """Joint state and image with one stamp (the observation time the bridge must keep)."""
        if not self.feeding:
            return
        stamp = self.probe.get_clock().now().to_msg()
        state = JointState(name=list(STATE), position=list(STATE.values()))
        state.header.stamp = stamp
        image = Image(height=4, width=5, encoding='bgr8', step=15,
                      data=IMAGE[:, :, ::-1].tobytes())
        image.header.stamp = stamp
        self.state_stamps.add((stamp.sec, stamp.nanosec))
        self._state.publish(state)
        self._image.publish(image)

    def change(self, node, transition) -> bool:
        client = self.probe.create_client(ChangeState, f'/{node}/change_state')
        request = ChangeState.Request(transition=Transition(id=transition))
        return call(client, request, 10.0).success

    def loaded(self, node='policy_bridge') -> dict:
        client = self.probe.create_client(Trigger, f'/{node}/loaded_unnormalizer')
        return json.loads(call(client, Trigger.Request(), 10.0).message)

    def status(self, level, text='', node='policy_bridge', since=0):
        """Return the first bridge status of NODE at LEVEL containing TEXT (after index SINCE)."""
        for s in list(self.statuses)[since:]:
            if s.hardware_id == node and s.level == level and text in s.message:
                return s
        return None

    def wait_status(self, level, text='', node='policy_bridge', since=0, timeout=10.0):
        found = wait_for(lambda: self.status(level, text, node, since), timeout=timeout)
        levels = [(s.level, s.message) for s in self.statuses if s.hardware_id == node]
        assert found, f'no {level} status with {text!r}; got {levels[-5:]}'
        return found


def bridge(ros, source, uri, name='policy_bridge', **params):
    """Add a live bridge on the rig's topics (not yet configured)."""
    defaults = {'source': source, 'server_uri': uri, 'request_timeout': 1.0, 'rate_hz': RATE,
                'task': 'push the T', 'image_topics': ['top=/cam/top'], 'state_joints': JOINTS,
                'joint_names': JOINTS, 'replan_every': 2}
    return ros.add(PolicyBridge, name, **{**defaults, **params})


def start(rig, name='policy_bridge'):
    assert rig.change(name, CONFIGURE) and rig.change(name, ACTIVATE)


def positions(msg) -> np.ndarray:
    return np.array([p.positions for p in msg.points])


def test_openpi_chunks_carry_the_observation_time_and_the_joint_names(ros, openpi):
    rig = Rig(ros)
    bridge(ros, 'openpi', openpi.uri)
    start(rig)
    assert wait_for(lambda: len(rig.chunks) >= 3)
    for n, msg in enumerate(rig.chunks[:3]):
        assert msg.joint_names == JOINTS and msg.header.frame_id == f'chunk {n}'
        np.testing.assert_array_equal(positions(msg), chunk()[:2])       # replan_every points
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in rig.state_stamps
        t = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
        assert t == pytest.approx([1 / (2 * RATE), 2 / (2 * RATE)])
    obs = openpi.received[0]
    np.testing.assert_array_equal(obs['observation.state'], np.float32([-0.5, 0.25]))
    np.testing.assert_array_equal(obs['observation.images.top'], IMAGE)
    assert obs['task'] == 'push the T'
    rig.wait_status(OK, 'chunk ')


def test_openpi_observation_keys_are_renamed_for_the_servers_transform(ros, openpi):
    rig = Rig(ros)
    bridge(ros, 'openpi', openpi.uri, observation_keys=[
        'observation.state=observation/state', 'observation.images.top=observation/image',
        'task=prompt'])
    start(rig)
    assert wait_for(lambda: openpi.received)
    obs = openpi.received[0]
    assert set(obs) == {'observation/state', 'observation/image', 'prompt'}
    np.testing.assert_array_equal(obs['observation/state'], np.float32([-0.5, 0.25]))
    np.testing.assert_array_equal(obs['observation/image'], IMAGE)
    assert obs['prompt'] == 'push the T'


def test_rest_single_actions_are_published_as_chunks(ros, rest):
    rig = Rig(ros)
    bridge(ros, 'openvla_rest', rest.url)
    start(rig)
    assert wait_for(lambda: len(rig.chunks) >= 2)
    msg = rig.chunks[0]
    assert msg.joint_names == JOINTS and len(msg.points) == 1
    np.testing.assert_array_equal(positions(msg), chunk()[:1])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in rig.state_stamps
    path, payload = rest.received[0]
    assert path == '/act' and payload['instruction'] == 'push the T'
    np.testing.assert_array_equal(payload['image'], IMAGE)
    np.testing.assert_array_equal(payload['state'], np.float32([-0.5, 0.25]))


def test_normalized_replies_go_through_the_loaded_unnormalizer(ros, openpi):
    rig = Rig(ros)
    openpi.respond = lambda obs: pack({'actions': np.array([[0.0, 0.5], [1.0, -1.0]])})
    bridge(ros, 'openpi', openpi.uri, normalized_input=True, **{
        'unnormalizer.mode': 'min_max', 'unnormalizer.dim': 2,
        'unnormalizer.low': [-1.0, 0.0], 'unnormalizer.high': [1.0, 10.0]})
    start(rig)
    assert wait_for(lambda: rig.chunks)
    np.testing.assert_allclose(positions(rig.chunks[0]), [[0.0, 7.5], [1.0, 0.0]])
    loaded = rig.loaded()
    assert loaded['configured'] and loaded['normalized_input'] and loaded['joint_names'] == JOINTS
    assert loaded['parameters']['unnormalizer.high'] == [1.0, 10.0]
    assert loaded['pending_changes'] == []


def test_server_killed_mid_run_means_no_chunks_and_error_then_recovery(ros):
    server = OpenpiServer()
    port = server.port
    rig = Rig(ros)
    bridge(ros, 'openpi', server.uri)
    start(rig)
    assert wait_for(lambda: len(rig.chunks) >= 2)
    server.stop()
    since = len(rig.statuses)
    rig.wait_status(ERROR, 'connection lost', since=since)
    count = len(rig.chunks)
    error_at = len(rig.statuses)
    time.sleep(1.0)                       # about ten ticks with the server down
    assert len(rig.chunks) == count, 'a dead server must produce no actions'
    assert rig.status(ERROR, 'cannot connect', since=error_at)   # retried, with the reason
    server = OpenpiServer(port=port)
    try:
        assert wait_for(lambda: len(rig.chunks) > count, timeout=10)
        rig.wait_status(OK, 'chunk ', since=error_at)
        np.testing.assert_array_equal(positions(rig.chunks[-1]), chunk()[:2])
    finally:
        server.stop()


def test_a_late_reply_is_never_published(ros, openpi):
    rig = Rig(ros)

    def late(obs):
        time.sleep(0.8)
        return pack({'actions': chunk(start=100.0)})
    openpi.respond = late
    bridge(ros, 'openpi', openpi.uri, request_timeout=0.3)
    start(rig)
    rig.wait_status(ERROR, 'no reply within 0.3 s')
    time.sleep(1.5)                       # late replies reach the client meanwhile
    assert rig.chunks == []
    openpi.respond = lambda obs: pack({'actions': chunk(start=10.0)})
    assert wait_for(lambda: rig.chunks, timeout=10)
    assert all(positions(m).max() < 100.0 for m in rig.chunks)


@pytest.mark.parametrize('source, reply, reason', [
    ('openpi', lambda: pack({'actions': chunk(d=3)}), 'dimension 3, expected 2'),
    ('openpi', lambda: pack({'actions': np.full((4, 2), np.nan)}), 'NaN or Inf'),
    ('openpi', lambda: 'Traceback (most recent call last):\nValueError: bad image',
     'server error: ValueError: bad image'),
    ('openvla_rest', lambda: (200, '"error"'), 'server answered "error"'),
    ('openvla_rest', lambda: (200, json.dumps(encode(np.zeros(3)))), 'dimension 3, expected 2'),
])
def test_malformed_replies_are_refused_with_a_diagnostic(ros, openpi, rest, source, reply,
                                                         reason):
    rig = Rig(ros)
    if source == 'openpi':
        openpi.respond = lambda obs: reply()
        bridge(ros, source, openpi.uri)
    else:
        rest.respond = lambda payload: reply()
        bridge(ros, source, rest.url)
    start(rig)
    rig.wait_status(ERROR, reason)
    time.sleep(0.3)
    assert rig.chunks == []


def test_a_reply_to_a_request_from_before_a_pause_is_never_published(ros, openpi):
    rig = Rig(ros)

    def slow(obs):
        n = len(openpi.received)          # this reply's request number, from 1
        time.sleep(0.6)
        return pack({'actions': chunk(start=100.0 * n)})
    openpi.respond = slow
    bridge(ros, 'openpi', openpi.uri, request_timeout=2.0)
    start(rig)
    assert wait_for(lambda: openpi.received)
    assert rig.change('policy_bridge', DEACTIVATE) and rig.change('policy_bridge', ACTIVATE)
    paused_at = len(openpi.received)     # requests sent before the pause
    assert wait_for(lambda: len(rig.chunks) >= 2, timeout=10)
    assert all(positions(m).min() >= 100.0 * (paused_at + 1) for m in rig.chunks)


def test_missing_or_old_inputs_mean_no_request_and_a_warning(ros, openpi):
    rig = Rig(ros)
    rig.feeding = False
    bridge(ros, 'openpi', openpi.uri, state_topic='/arm/joint_states')
    start(rig)
    rig.wait_status(WARN, 'nothing received on /arm/joint_states yet')
    assert openpi.received == [] and rig.chunks == []
    bridge(ros, 'openpi', openpi.uri, name='bridge_b', request_timeout=0.5)
    start(rig, 'bridge_b')
    rig.feeding = True
    assert wait_for(lambda: openpi.received)
    rig.feeding = False
    since = len(rig.statuses)
    rig.wait_status(WARN, 's old (more than request_timeout)', node='bridge_b', since=since)
    count = len(openpi.received)
    time.sleep(0.5)
    assert len(openpi.received) == count


BAD = [
    ({'server_uri': ''}, 'server_uri'),
    ({'server_uri': 'http://127.0.0.1:1/act'}, 'needs ws://'),
    ({'server_uri': 'ws://'}, 'names no host'),
    ({'request_timeout': 0.0}, 'request_timeout'),
    ({'rate_hz': float('nan')}, 'rate_hz'),
    ({'replan_every': 0}, 'replan_every'),
    ({'image_topics': ['top']}, 'NAME=/topic'),
    ({'image_topics': ['a=/x', 'a=/y']}, "names 'a' twice"),
    ({'faults': ['spike@0.1']}, 'drill replays only'),
    (dict(normalized_input=True, **{'unnormalizer.mode': 'min_max', 'unnormalizer.dim': 3,
                                    'unnormalizer.low': [0.0] * 3,
                                    'unnormalizer.high': [1.0] * 3}), '3 dimensions for 2'),
    ({'request_timeout': 1}, 'wrong parameter type'),
    ({'observation_keys': ['task']}, 'use OURS=THEIRS'),
    ({'observation_keys': ['observation.images.side=image']}, 'is not an observation key'),
    ({'observation_keys': ['task=x', 'observation.state=x']}, 'two observation entries'),
]


def test_bad_parameters_refuse_configure_with_the_reason(ros, openpi):
    rig = Rig(ros)
    cases = [(f'bad_{k}', params, reason) for k, (params, reason) in enumerate(BAD)]
    for name, params, _ in cases:
        bridge(ros, 'openpi', openpi.uri, name=name, **params)
    for name, params, reason in cases:
        assert not rig.change(name, CONFIGURE), params
        rig.wait_status(ERROR, reason, node=name)
        assert rig.loaded(name)['configured'] is False


def test_state_joints_missing_from_the_joint_state_warn_without_requests(ros, openpi):
    rig = Rig(ros)
    bridge(ros, 'openpi', openpi.uri, state_joints=['j0', 'elbow'])
    start(rig)
    rig.wait_status(WARN, '/joint_states: joint state lacks elbow')
    assert openpi.received == []


def test_configure_cleanup_configure_activate_runs_one_worker(ros, openpi):
    rig = Rig(ros)
    bridge(ros, 'openpi', openpi.uri)
    for transition in (CONFIGURE, CLEANUP, CONFIGURE, ACTIVATE):
        assert rig.change('policy_bridge', transition), transition
    assert wait_for(lambda: len(rig.chunks) >= 2)
    start_time, requests, chunks = time.monotonic(), len(openpi.received), len(rig.chunks)
    time.sleep(2.0)
    elapsed = time.monotonic() - start_time
    assert len(openpi.received) - requests <= RATE * elapsed + 2     # one timer, one worker
    assert len(rig.chunks) > chunks
    ids = [int(m.header.frame_id.split()[1]) for m in rig.chunks]
    assert ids == list(range(len(ids)))
    assert rig.loaded()['generation'] == 2
    age = (rig.probe.get_clock().now() - Time.from_msg(rig.chunks[-1].header.stamp))
    assert 0 <= age.nanoseconds * 1e-9 < 2.0
