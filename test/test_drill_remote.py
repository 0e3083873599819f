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
Remote policies against real servers on 127.0.0.1: an openpi websocket server and a REST one.

The servers (test/policy_servers.py) are written from the protocol facts (plain msgpack with the
openpi ndarray maps, json-numpy over http.server), so the client's wire format is checked, not
just echoed.
"""
import json
import socket
import time

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import msgpack
import numpy as np
from policy_servers import chunk, encode, HOST, OpenpiServer, pack
import pytest
from vla_safety_filter.core.drill.policies import PolicyFault
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.remote_policies import as_chunk, make_remote_policy

TIMEOUT = 2.0
"""Deadline for replies that should arrive: generous, the machine may be loaded."""
SHORT = 0.3
"""Deadline in the late-reply tests; their servers answer after LATE seconds."""
LATE = 1.0
STATE = np.array([100.0, 200.0, 300.0, 250.0, 0.5])
IMAGE = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)


def free_port() -> int:
    """Return a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """Yield a port that completes TCP handshakes but never answers (a hung server)."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def observation(**extra):
    return {'observation.state': STATE, 'observation.images.top': IMAGE, **extra}


def fault(policy, obs=None) -> str:
    """Return the one-line message of the PolicyFault that act raises."""
    with pytest.raises(PolicyFault) as info:
        policy.act(observation() if obs is None else obs)
    message = str(info.value)
    assert '\n' not in message and message.startswith(policy.name + ': ')
    return message


def wait_until_act(policy, deadline=5.0):
    """Call act until it gives a chunk (a restarted server, a backoff running out)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return policy.act(observation())
        except PolicyFault:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


# ---- openpi websocket ----


def test_openpi_chunk_and_observation(openpi):
    policy = make_remote_policy(openpi.uri, TIMEOUT, action_dim=2)
    policy.reset(seed=3, task='push the T')
    result = policy.act(observation())
    assert result.dtype == np.float64 and result.shape == (4, 2)
    np.testing.assert_array_equal(result, chunk())
    obs = openpi.received[0]
    assert set(obs) == {'observation.state', 'observation.images.top', 'task'}
    assert obs['observation.state'].dtype == np.float32
    np.testing.assert_array_equal(obs['observation.state'], STATE.astype(np.float32))
    np.testing.assert_array_equal(obs['observation.images.top'], IMAGE)
    assert obs['task'] == 'push the T'
    assert policy.server_metadata == {'server': 'test', 'action_horizon': 4}
    policy.act(observation(task='other'))
    assert openpi.received[1]['task'] == 'other' and len(openpi.connections) == 1
    policy.close()


def test_openpi_learns_dimension_from_first_reply(openpi):
    policy = make_remote_policy(openpi.uri, TIMEOUT)
    assert policy.act(observation()).shape == (4, 2)
    openpi.respond = lambda obs: pack({'actions': chunk(d=3)})
    assert 'dimension 3, expected 2' in fault(policy)
    policy.close()


@pytest.mark.parametrize('reply, reason', [
    (lambda: pack({'actions': chunk(d=3)}), 'dimension 3, expected 2'),
    (lambda: pack({'actions': np.full((4, 2), np.nan)}), 'NaN or Inf'),
    (lambda: pack({'actions': np.array([[0.0, np.inf]])}), 'NaN or Inf'),
    (lambda: pack({'actions': np.zeros((2, 2, 2))}), 'shape (2, 2, 2)'),
    (lambda: pack({'actions': np.zeros((0, 2))}), 'shape (0, 2)'),
    (lambda: pack({'actions': 'left'}), 'not a numeric array'),
    (lambda: pack({'result': chunk()}), 'not a map with "actions"'),
    (lambda: pack([1, 2]), 'not a map with "actions"'),
    (lambda: b'\xc1\x00garbage', 'malformed msgpack reply'),
    (lambda: pack({'actions': {b'__ndarray__': True, b'data': b'x', b'dtype': '<f8',
                               b'shape': [4, 2]}}), 'malformed msgpack reply'),
    (lambda: 'Traceback (most recent call last):\n  File "x"\nValueError: bad image',
     'server error: ValueError: bad image'),
])
def test_openpi_bad_replies_are_faults_then_recovery(openpi, reply, reason):
    policy = make_remote_policy(openpi.uri, TIMEOUT, action_dim=2)
    openpi.respond = lambda obs: reply()
    assert reason in fault(policy)
    openpi.respond = lambda obs: pack({'actions': chunk(start=10.0)})
    np.testing.assert_array_equal(policy.act(observation()), chunk(start=10.0))
    policy.close()


def test_openpi_late_reply_is_dropped_never_returned_later(openpi):
    policy = make_remote_policy(openpi.uri, SHORT, action_dim=2)

    def late(obs):
        time.sleep(LATE)
        return pack({'actions': chunk(start=100.0)})
    openpi.respond = late
    assert f'no reply within {SHORT:g} s' in fault(policy)
    openpi.respond = lambda obs: pack({'actions': chunk(start=10.0)})
    time.sleep(LATE)
    np.testing.assert_array_equal(policy.act(observation()), chunk(start=10.0))
    policy.close()


def test_openpi_server_without_metadata_frame():
    server = OpenpiServer(metadata=False)
    try:
        policy = make_remote_policy(server.uri, SHORT, action_dim=2)
        assert f'no metadata within {SHORT:g} s' in fault(policy)
        policy.close()
    finally:
        server.stop()


def test_openpi_unreachable_and_hung_servers(silent_port):
    refused = make_remote_policy(f'ws://{HOST}:{free_port()}', TIMEOUT, action_dim=2)
    assert 'cannot connect' in fault(refused)
    hung = make_remote_policy(f'ws://{HOST}:{silent_port}', SHORT, action_dim=2)
    start = time.monotonic()
    assert 'cannot connect' in fault(hung)
    assert time.monotonic() - start < SHORT + 5.0, 'a hung server must not hang the client'


def test_openpi_server_dies_and_returns():
    server = OpenpiServer()
    policy = make_remote_policy(server.uri, TIMEOUT, action_dim=2)
    policy.act(observation())
    port = server.port
    server.stop()
    assert 'connection lost' in fault(policy)
    assert 'cannot connect' in fault(policy)
    assert 'retrying in' in fault(policy), 'a failed connection backs off before retrying'
    server = OpenpiServer(port=port)
    try:
        np.testing.assert_array_equal(wait_until_act(policy), chunk())
    finally:
        policy.close()
        server.stop()


def test_openpi_observation_without_state_is_a_fault(openpi):
    policy = make_remote_policy(openpi.uri, TIMEOUT, action_dim=2)
    assert 'no observation.state' in fault(policy, {'task': 'x'})
    policy.close()


actions_like = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=3),
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=st.one_of(st.binary(max_size=40),
                       actions_like.map(lambda actions: msgpack.packb({'actions': actions}))))
def test_openpi_any_reply_gives_a_valid_chunk_or_a_fault(frame):
    server = OpenpiServer()
    server.respond = lambda obs: frame
    policy = make_remote_policy(server.uri, TIMEOUT, action_dim=2)
    try:
        result = policy.act(observation())
    except PolicyFault as exc:
        assert '\n' not in str(exc)
    else:
        assert result.dtype == np.float64 and result.ndim == 2 and result.shape[1] == 2
        assert result.shape[0] >= 1 and np.all(np.isfinite(result))
    finally:
        policy.close()
        server.stop()


@given(actions=actions_like)
def test_as_chunk_gives_a_finite_chunk_or_a_fault(actions):
    try:
        result = as_chunk(actions, None)
    except PolicyFault:
        return
    assert result.ndim == 2 and min(result.shape) >= 1 and np.all(np.isfinite(result))


# ---- OpenVLA REST ----


def test_rest_single_action_and_payload(rest):
    policy = make_remote_policy(rest.url, TIMEOUT, action_dim=2, unnorm_key='pusht')
    policy.reset(seed=0, task='push the T')
    result = policy.act(observation())
    assert result.dtype == np.float64 and result.shape == (1, 2)
    np.testing.assert_array_equal(result, chunk()[:1])
    path, payload = rest.received[0]
    assert path == '/act'
    assert set(payload) == {'image', 'instruction', 'unnorm_key', 'state'}
    np.testing.assert_array_equal(payload['image'], IMAGE)
    assert payload['image'].dtype == np.uint8
    assert payload['instruction'] == 'push the T' and payload['unnorm_key'] == 'pusht'
    np.testing.assert_array_equal(payload['state'], STATE.astype(np.float32))
    policy.close()


def test_rest_chunk_as_list_of_actions(rest):
    rest.respond = lambda payload: (200, json.dumps([encode(row) for row in chunk(h=8)]))
    policy = make_remote_policy(rest.url, TIMEOUT, action_dim=2)
    np.testing.assert_array_equal(policy.act(observation()), chunk(h=8))
    rest.respond = lambda payload: (200, json.dumps(chunk(h=3).tolist()))
    np.testing.assert_array_equal(policy.act(observation()), chunk(h=3))
    policy.close()


@pytest.mark.parametrize('status, body, reason', [
    (200, '"error"', 'server answered "error"'),
    (500, 'Internal Server Error', 'HTTP 500'),
    (404, '{}', 'HTTP 404'),
    (200, '{"actions": [1, 2', 'malformed JSON reply'),
    (200, '{"__numpy__": "!!", "dtype": "<f8", "shape": [2]}', 'malformed JSON reply'),
    (200, json.dumps(encode(np.zeros(3))), 'dimension 3, expected 2'),
    (200, json.dumps(encode(np.array([np.nan, 0.0]))), 'NaN or Inf'),
    (200, '[1.0, NaN]', 'NaN or Inf'),
    (200, '[[1.0, 2.0], [3.0]]', 'not a numeric array'),
    (200, '{"action": [1.0, 2.0]}', 'not a numeric array'),
])
def test_rest_bad_replies_are_faults_then_recovery(rest, status, body, reason):
    rest.respond = lambda payload: (status, body)
    policy = make_remote_policy(rest.url, TIMEOUT, action_dim=2)
    assert reason in fault(policy)
    rest.respond = lambda payload: (200, json.dumps(encode(chunk(start=10.0))))
    np.testing.assert_array_equal(policy.act(observation()), chunk(start=10.0))
    policy.close()


def test_rest_late_reply_is_a_fault(rest):
    def late(payload):
        time.sleep(LATE)
        return 200, json.dumps(encode(chunk(start=100.0)))
    rest.respond = late
    policy = make_remote_policy(rest.url, SHORT, action_dim=2)
    assert f'no reply within {SHORT:g} s' in fault(policy)
    rest.respond = lambda payload: (200, json.dumps(encode(chunk(start=10.0))))
    np.testing.assert_array_equal(policy.act(observation()), chunk(start=10.0))
    policy.close()


def test_rest_unreachable_and_hung_servers(silent_port):
    refused = make_remote_policy(f'http://{HOST}:{free_port()}/act', TIMEOUT, action_dim=2)
    assert 'cannot connect' in fault(refused)
    assert 'retrying in' in fault(refused)
    hung = make_remote_policy(f'http://{HOST}:{silent_port}/act', SHORT, action_dim=2)
    assert f'no reply within {SHORT:g} s' in fault(hung)


def test_rest_state_only_observation_sends_no_image(rest):
    policy = make_remote_policy(rest.url, TIMEOUT, action_dim=2)
    policy.act({'observation.state': STATE, 'task': 'push'})
    assert set(rest.received[0][1]) == {'instruction', 'state'}
    camera = make_remote_policy(rest.url, TIMEOUT, action_dim=2, camera='wrist')
    assert "no image from camera 'wrist'" in fault(camera)


@pytest.mark.parametrize('spec', ['ftp://127.0.0.1:1/act', 'ws://', 'http:///act',
                                  'ws://127.0.0.1:notaport'])
def test_bad_specs_are_input_errors(spec):
    with pytest.raises(InputError):
        make_remote_policy(spec, TIMEOUT)


@pytest.mark.parametrize('timeout, action_dim', [(0.0, 2), (-1.0, 2), (TIMEOUT, 0)])
def test_bad_settings_are_input_errors(timeout, action_dim):
    with pytest.raises(InputError):
        make_remote_policy(f'ws://{HOST}:1', timeout, action_dim=action_dim)
