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
`vla-safety serve-policy` over real sockets on 127.0.0.1.

The package's own clients get the policy's chunks, bad requests get one-line errors while the
server keeps serving, and the drill closes the same loop through the server as with the policy
in-process.
"""
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import json_numpy
import msgpack
import numpy as np
from openpi_client import msgpack_numpy
import pytest
from vla_safety_filter.cli import main
from vla_safety_filter.commands.serve_policy import is_loopback
from vla_safety_filter.core.drill.policies import load_demos, make_policy, PolicyFault
from vla_safety_filter.core.policy_server import make_server
from vla_safety_filter.core.remote_policies import make_remote_policy
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

HOST = '127.0.0.1'
TIMEOUT = 5.0
"""Reply deadline: generous, the machine may be loaded."""
CHUNK = 6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def demos(data_file):
    """Return the real PushT demonstrations the nearest-neighbour policy replays."""
    return data_file('pusht_cchi_v7_replay.npz')


@pytest.fixture(scope='module')
def states(demos):
    """Every demonstration state (the policy's own inputs)."""
    return load_demos(demos)[1]


@pytest.fixture(scope='module')
def servers(demos):
    """Both protocols serving nn:DEMOS (chunk CHUNK) on OS-chosen ports, for the module."""
    running = {protocol: make_server(protocol, make_policy(f'nn:{demos}', horizon=CHUNK), HOST,
                                     0, {'policy': 'nn'}).start()
               for protocol in ('openpi', 'rest')}
    yield running
    for server in running.values():
        server.stop()


@pytest.fixture(scope='module')
def direct(demos):
    return make_policy(f'nn:{demos}', horizon=CHUNK)


def expected(direct, state) -> np.ndarray:
    """Return the policy's own chunk for STATE as the clients send it (float32)."""
    return direct.act({'observation.state': np.float32(state).astype(np.float64)})


def client(servers, protocol):
    return make_remote_policy(servers[protocol].uri, TIMEOUT)


def good_request_works(servers, protocol, direct, state):
    """Check that a new client still gets the policy's chunk (the server kept serving)."""
    policy = client(servers, protocol)
    try:
        np.testing.assert_array_equal(policy.act({'observation.state': state}),
                                      expected(direct, state))
    finally:
        policy.close()


# ---- the clients get the policy's chunks --------------------------------------------------


@pytest.mark.parametrize('protocol', ['openpi', 'rest'])
def test_clients_get_the_policys_chunks_for_demo_states(servers, direct, states, protocol):
    policy = client(servers, protocol)
    policy.reset(seed=0, task='push the T')
    for state in states[::97]:
        result = policy.act({'observation.state': state})
        assert result.shape == (CHUNK, 2)
        np.testing.assert_array_equal(result, expected(direct, state))
    policy.close()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(state=st.lists(st.floats(-50, 600), min_size=5, max_size=5).map(np.array),
       protocol=st.sampled_from(['openpi', 'rest']))
def test_any_state_gives_the_same_chunk_through_the_server(servers, direct, state, protocol):
    good_request_works(servers, protocol, direct, state)


def test_openpi_metadata_frame_comes_first(servers, direct, states):
    policy = client(servers, 'openpi')
    policy.act({'observation.state': states[0]})
    assert policy.server_metadata == {'policy': 'nn'}
    policy.close()


def test_rest_image_and_instruction_are_accepted(servers, direct, states):
    image = np.zeros((8, 8, 3), np.uint8)
    policy = client(servers, 'rest')
    result = policy.act({'observation.state': states[5], 'observation.images.top': image,
                         'task': 'push'})
    np.testing.assert_array_equal(result, expected(direct, states[5]))
    policy.close()


@pytest.mark.parametrize('protocol', ['openpi', 'rest'])
def test_two_clients_in_turn(servers, direct, states, protocol):
    first, second = client(servers, protocol), client(servers, protocol)
    for k in range(4):
        for who, state in ((first, states[10 * k]), (second, states[10 * k + 500])):
            np.testing.assert_array_equal(who.act({'observation.state': state}),
                                          expected(direct, state))
    first.close()
    second.close()


# ---- malformed requests: one clear line, and the server keeps serving ---------------------


def openpi_exchange(uri, frame):
    """Send FRAME after the metadata; the text reply, and the close code that followed."""
    with connect(uri, open_timeout=TIMEOUT, compression=None) as ws:
        msgpack_numpy.unpackb(ws.recv(timeout=TIMEOUT))
        ws.send(frame)
        reply = ws.recv(timeout=TIMEOUT)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        return reply, ws.close_code


STATE = np.array([100.0, 200.0, 300.0, 250.0, 0.5])


@pytest.mark.parametrize('frame, reason', [
    (b'\xc1garbage', 'malformed msgpack observation'),
    ('{"observation.state": [1, 2]}', 'expected a binary msgpack-numpy frame'),
    (msgpack_numpy.packb([1, 2]), 'not a map'),
    (msgpack_numpy.packb({'task': 'push'}), 'no observation.state'),
    (msgpack_numpy.packb({'observation.state': np.array(['a', 'b'])}), 'dtype <U1'),
    (msgpack_numpy.packb({'observation.state': np.ones(5, bool)}), 'dtype bool'),
    (msgpack_numpy.packb({'observation.state': np.ones((5, 1))}), 'shape (5, 1)'),
    (msgpack_numpy.packb({'observation.state': np.array([1.0, np.nan, 0, 0, 0])}), 'NaN'),
    (msgpack_numpy.packb({'observation.state': np.ones(3, np.float32)}), 'does not match'),
    (msgpack_numpy.packb({'observation.state': STATE, 'observation.images.top':
                          np.zeros((4, 4, 3), np.float32)}), 'HxWx3 uint8'),
    (msgpack.packb({'observation.state': {b'__ndarray__': True, b'data': b'x',
                                          b'dtype': '<f8', b'shape': [5]}}),
     'malformed msgpack observation'),
])
def test_openpi_bad_request_gets_one_line_and_server_keeps_serving(servers, direct, frame,
                                                                   reason):
    reply, code = openpi_exchange(servers['openpi'].uri, frame)
    assert isinstance(reply, str) and '\n' not in reply and reason in reply
    assert code == 1007
    good_request_works(servers, 'openpi', direct, STATE)


def post(server, body: bytes, path='/act'):
    """POST BODY; the status, reason phrase and decoded JSON reply."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request('POST', path, body=body, headers={'Content-Type': 'application/json'})
        response = conn.getresponse()
        return response.status, response.reason, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize('body, path, status, reason', [
    (b'{"state": [1, 2', '/act', 400, 'malformed JSON body'),
    (b'\xff\xfe', '/act', 400, 'malformed JSON body'),
    (b'[1, 2]', '/act', 400, 'not an object'),
    (b'{"instruction": "push"}', '/act', 400, 'no state'),
    (b'{"state": "left"}', '/act', 400, 'dtype <U4'),
    (json_numpy.dumps({'state': np.ones(3)}).encode(), '/act', 400, 'does not match'),
    (json_numpy.dumps({'state': STATE, 'image': np.zeros((4, 4))}).encode(), '/act', 400,
     'HxWx3 uint8'),
    (b'{"state": {"__numpy__": "!!", "dtype": "<f8", "shape": [5]}}', '/act', 400,
     'malformed JSON body'),
    (json_numpy.dumps({'state': STATE}).encode(), '/predict', 404, 'use /act'),
])
def test_rest_bad_request_gets_clear_status_and_server_keeps_serving(servers, direct, body,
                                                                     path, status, reason):
    got_status, phrase, reply = post(servers['rest'], body, path)
    assert got_status == status
    assert reason in reply['error'] and '\n' not in reply['error']
    assert reason in phrase or status == 404
    good_request_works(servers, 'rest', direct, STATE)


def test_rest_request_without_length_gets_411(servers, direct):
    with socket.create_connection(servers['rest'].address, timeout=TIMEOUT) as sock:
        sock.sendall(b'POST /act HTTP/1.1\r\nHost: x\r\n\r\n{"state": [1]}')
        assert sock.recv(4096).startswith(b'HTTP/1.1 411 a Content-Length is required')
    good_request_works(servers, 'rest', direct, STATE)


def test_client_reports_the_servers_reason(servers):
    for protocol in ('openpi', 'rest'):
        policy = client(servers, protocol)
        with pytest.raises(PolicyFault, match='does not match the demonstrations'):
            policy.act({'observation.state': np.ones(3)})
        policy.close()


class BrokenPolicy:
    """A policy that fails: raises, or returns NaN, by request."""

    name = 'broken'

    def __init__(self):
        self.nan = False

    def reset(self, seed, task):
        pass

    def act(self, observation):
        if self.nan:
            return np.full((2, 2), np.nan)
        raise RuntimeError('weights not loaded')

    def close(self):
        pass


@pytest.mark.parametrize('protocol', ['openpi', 'rest'])
def test_a_failing_policy_is_reported_and_the_server_survives(protocol):
    broken = BrokenPolicy()
    with make_server(protocol, broken, HOST, 0).start() as server:
        policy = make_remote_policy(server.uri, TIMEOUT)
        with pytest.raises(PolicyFault, match='policy failed .weights not loaded.'):
            policy.act({'observation.state': STATE})
        broken.nan = True
        policy.close()
        policy = make_remote_policy(server.uri, TIMEOUT)
        with pytest.raises(PolicyFault, match='unusable actions .actions contain NaN or Inf'):
            policy.act({'observation.state': STATE})
        policy.close()


# ---- closed loop: the drill through the server ---------------------------------------------


def test_drill_through_the_server_executes_what_the_policy_in_process_does(servers, demos):
    pytest.importorskip('gym_pusht')
    from vla_safety_filter.core.drill.conditions import parse_conditions
    from vla_safety_filter.core.drill.runner import DrillSettings, run_drill, safety_from_demos
    from vla_safety_filter.core.drill.worlds import make_world

    world = make_world('pusht')
    try:
        safety = safety_from_demos(demos, world)
        drill = DrillSettings(episodes=2, seed=3, max_steps=60,
                              conditions=tuple(parse_conditions('none,filter')))
        local = run_drill(world, make_policy(f'nn:{demos}', horizon=CHUNK), safety, drill)
        remote_policy = make_remote_policy(servers['openpi'].uri, TIMEOUT)
        remote = run_drill(world, remote_policy, safety, drill)
        remote_policy.close()
    finally:
        world.close()
    assert len(local) == len(remote) == 4
    for a, b in zip(local, remote):
        assert not b.policy_fault and b.n_steps == a.n_steps > 0
        np.testing.assert_array_equal(np.array(b.executed), np.array(a.executed))
        np.testing.assert_array_equal(np.array(b.states), np.array(a.states))
        assert (a.success, a.interventions) == (b.success, b.interventions)


# ---- the command ---------------------------------------------------------------------------


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(['serve-policy', *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize('protocol', ['openpi', 'rest'])
def test_command_prints_address_serves_and_stops_on_ctrl_c(demos, direct, protocol):
    proc = subprocess.Popen(
        [sys.executable, '-m', 'vla_safety_filter.cli', 'serve-policy', '--policy',
         f'nn:{demos}', '--protocol', protocol, '--port', '0', '--chunk', str(CHUNK)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f'serving nn:{demos} over {protocol} at '), line
        uri = line.split(' at ')[1].split()[0]
        assert uri.startswith('ws://127.0.0.1:' if protocol == 'openpi' else 'http://127.0.0.1:')
        policy = make_remote_policy(uri, TIMEOUT)
        np.testing.assert_array_equal(policy.act({'observation.state': STATE}),
                                      expected(direct, STATE))
        policy.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert 'WARNING' not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize('argv, message', [
    (['--policy', 'replay:x.npz'], "cannot serve 'replay:x.npz'"),
    (['--policy', 'ws://127.0.0.1:1'], 'serves nn:DEMOS.npz'),
    (['--policy', 'nn:/no/such.npz'], 'not found'),
    (['--policy', 'nn:DEMOS', '--chunk', '0'], '--chunk must be >= 1'),
    (['--policy', 'nn:DEMOS', '--port', '70000'], '--port must be 0..65535'),
])
def test_command_bad_input_is_one_line_exit_2(demos, argv, message):
    argv = [a.replace('DEMOS', demos) for a in argv]
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ''
    assert err.count('\n') == 1 and message in err


def test_command_port_in_use_is_one_line_exit_2(servers, demos):
    port = servers['rest'].address[1]
    code, _, err = run_cli('--policy', f'nn:{demos}', '--port', str(port))
    assert code == 2 and err.count('\n') == 1 and f'cannot bind 127.0.0.1:{port}' in err


def test_command_warns_loudly_before_binding_a_non_loopback_address(demos):
    # 192.0.2.1 (TEST-NET-1) is not this machine's: the warning comes, then the bind fails.
    code, _, err = run_cli('--policy', f'nn:{demos}', '--host', '192.0.2.1', '--port', '0')
    assert code == 2
    assert "WARNING: binding '192.0.2.1', not a loopback address" in err


@pytest.mark.parametrize('host, loopback', [
    ('127.0.0.1', True), ('127.0.0.2', True), ('localhost', True), ('::1', True),
    ('0.0.0.0', False), ('::', False), ('192.0.2.1', False), ('no such host.invalid', False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) == loopback
