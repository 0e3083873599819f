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
Shared fixtures and probes of the test suite: ROS harness, real data, lint scope, policy servers.

Test modules share fixtures and probes through this file only; they do not import each other.
Factories are fixtures that return a callable (e.g. `filter_probe(controller='arm')`).

Missing real data (/work/shared/data, or $VLA_SAFETY_DATA): a test that needs it asks for the
`shared_data` fixture (or `data_file`), which skips with the path it looked for, so a checkout
without the recordings still runs everything else. CI sets VLA_REQUIRE_DATA=1 (.ci/run), which
turns that skip into a failure: there, a missing recording is a broken setup, not a reason to
test less.
"""
import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
from pathlib import Path
import threading
import time
from types import SimpleNamespace

from data_paths import DATA as DATA_DIR
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
#: What the ament linters check (test_flake8, test_pep257, test_copyright).
LINT_SCOPE = ('vla_safety_filter', 'test', 'bench', 'launch', 'setup.py')


def missing_data(what: str) -> None:
    """Skip the test for missing real data, or fail when VLA_REQUIRE_DATA=1 (CI)."""
    reason = f'real data {what} not found (it sits beside the repository, or $VLA_SAFETY_DATA)'
    if os.environ.get('VLA_REQUIRE_DATA') == '1':
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope='session')
def shared_data():
    """Return the real recorded data folder (see the policy above)."""
    if not os.path.isdir(DATA_DIR):
        missing_data(DATA_DIR)
    return DATA_DIR


@pytest.fixture(scope='session')
def data_file(shared_data):
    """Return a function giving the path of one recording in the data folder (policy above)."""
    def path(name: str) -> str:
        found = os.path.join(shared_data, name)
        if not os.path.exists(found):
            missing_data(found)
        return found
    return path


@pytest.fixture
def ros():
    """Return a Harness: an isolated rclpy context on its own domain, closed after the test."""
    from ros_harness import Harness
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Return the repository's root folder."""
    return REPO


@pytest.fixture(scope='session')
def lint_paths() -> list:
    """Return the files and folders the ament linters check."""
    return [REPO / name for name in LINT_SCOPE]


@pytest.fixture(scope='session')
def python_files(lint_paths) -> list:
    """Return every Python file in the lint scope."""
    files = []
    for path in lint_paths:
        files.extend(sorted(path.rglob('*.py')) if path.is_dir() else [path])
    return [path for path in files if '__pycache__' not in path.parts]


# ---- the pipeline's parameters from a real recording ---------------------------------------
def pipeline_setup(tmp_path, episodes_file, calibrate_on_rest=False):
    """
    Calibrate on a real recording; return parameters of every node replaying its first episode.

    Returns (contract, {node name: parameters}). The contract and calibration come from all
    episodes, or with `calibrate_on_rest` from all but the replayed one; the checkpoint metadata
    is identical to the bridge's unnormalizer parameters.
    """
    from vla_safety_filter.core.calibration import calibrate
    from vla_safety_filter.core.checkpoints import write_params_yaml
    from vla_safety_filter.core.episodes import read_episodes
    from vla_safety_filter.core.execspec import Metadata, metadata_to_params
    from vla_safety_filter.core.params import contract_to_params

    data = read_episodes(episodes_file)
    first = data.episodes[0]
    calibration_episodes = data.episodes[1:] if calibrate_on_rest else data.episodes
    result = calibrate([e.actions for e in calibration_episodes], data.joint_names,
                       1.0 / data.fps, holdout=0.0)
    cal = str(tmp_path / 'cal.npz')
    result.data.save(cal)
    meta = Metadata('mean_std', [True] * data.dim, mean=result.data.mu, std=result.data.sigma,
                    source='test')
    checkpoint = tmp_path / 'checkpoint.yaml'
    write_params_yaml(str(checkpoint), meta)
    return result.contract, {
        'safety_filter': {**contract_to_params(result.contract, cal), 'command_timeout': 0.5},
        'sim_arm': {'joint_names': list(data.joint_names),
                    'initial_positions': [float(v) for v in first.actions[0]]},
        'policy_bridge': {'episodes_file': episodes_file, 'episode': int(first.index),
                          'loop': True, **metadata_to_params(meta)},
        'action_monitor': {'calibration_file': cal},
        'execspec_check': {'checkpoint': str(checkpoint), 'format': 'yaml',
                           'policy_outputs_normalized': False},   # recorded actions, not outputs
    }


@pytest.fixture
def pipeline_params(tmp_path):
    """Return `(episodes_file, calibrate_on_rest=False) -> (contract, params)` (pipeline_setup)."""
    def make(episodes_file, calibrate_on_rest=False):
        return pipeline_setup(tmp_path, episodes_file, calibrate_on_rest)
    return make


# ---- probes of the safety filter ------------------------------------------------------------
#: A small 3-joint contract for the filter's tests (100 Hz, 2 rad/s).
SMALL_CONTRACT = {'joint_names': ['j0', 'j1', 'j2'], 'lower': [-1.0, -1.0, -1.0],
                  'upper': [1.0, 1.0, 1.0], 'max_velocity': [2.0, 2.0, 2.0],
                  'control_rate_hz': 100.0}


def call_service(node, srv_type, name, request, timeout=10.0):
    """Call a service from the test thread (the harness spins the node in the background)."""
    from ros_harness import wait_for

    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), name
    future = client.call_async(request)
    assert wait_for(future.done, timeout=timeout), f'{name} did not answer'
    node.destroy_client(client)
    return future.result()


class FilterProbe:
    """
    Publish raw actions, stops and episodes; record what the filter sends.

    Commands (with arrival times), the safe action, events and the filter's /diagnostics.
    """

    def __init__(self, ros, controller='arm'):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Bool, Float64MultiArray, String
        from trajectory_msgs.msg import JointTrajectory
        from vla_safety_filter import names
        from vla_safety_filter.nodes.common import LATCHED_QOS

        self.node = ros.node('probe')
        self.raw = self.node.create_publisher(JointTrajectory, names.RAW_ACTION, 10)
        self.stop = self.node.create_publisher(Bool, names.SAFETY_STOP, LATCHED_QOS)
        self.episode = self.node.create_publisher(String, names.EPISODE, LATCHED_QOS)
        self.commands, self.times, self.trajectories, self.safe, self.events = [], [], [], [], []
        self.status = None
        self.node.create_subscription(Float64MultiArray, names.forward_commands(controller),
                                      self._on_command, 1000)
        self.node.create_subscription(JointTrajectory, names.joint_trajectory(controller),
                                      self.trajectories.append, 100)
        self.node.create_subscription(JointTrajectory, names.SAFE_ACTION, self.safe.append, 1000)
        self.node.create_subscription(DiagnosticArray, names.FILTER_EVENTS,
                                      lambda m: self.events.extend(s.message for s in m.status),
                                      1000)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 100)

    def _on_command(self, msg):
        self.times.append(time.monotonic())
        self.commands.append(list(msg.data))

    def _on_diag(self, msg):
        from vla_safety_filter import names

        for s in msg.status:
            if s.name == names.FILTER_STATUS:
                self.status = s

    def state(self):
        """Return the filter's state as /diagnostics reports it."""
        if self.status is None:
            return None
        return {kv.key: kv.value for kv in self.status.values}.get('state')

    def send(self, positions, names=SMALL_CONTRACT['joint_names'], dt=0.01, stamp=None):
        """Publish one raw action chunk, one point per row, `dt` apart."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        points = [JointTrajectoryPoint(positions=[float(x) for x in p], time_from_start=Duration(
            nanosec=int((k + 1) * dt * 1e9))) for k, p in enumerate(np.atleast_2d(positions))]
        msg = JointTrajectory(joint_names=list(names), points=points)
        if stamp is not None:
            msg.header.stamp = stamp
        self.raw.publish(msg)

    def transition(self, transition_id, name='safety_filter'):
        """Request a lifecycle transition; return whether it succeeded."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        return call_service(self.node, ChangeState, f'/{name}/change_state',
                            ChangeState.Request(transition=Transition(id=transition_id))).success

    def lifecycle_state(self, name='safety_filter'):
        """Return the node's lifecycle state id."""
        from lifecycle_msgs.srv import GetState

        return call_service(self.node, GetState, f'/{name}/get_state',
                            GetState.Request()).current_state.id

    def reset(self):
        """Call the filter's reset service; return its response."""
        from std_srvs.srv import Trigger

        return call_service(self.node, Trigger, '/safety_filter/reset', Trigger.Request())


class FakeArm:
    """A perfectly tracking arm: /joint_states at 100 Hz = the last command, unless moved."""

    def __init__(self, ros, start, controller='arm', names=SMALL_CONTRACT['joint_names']):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from vla_safety_filter import names as topics

        self._state = JointState
        self.node = ros.node('fake_arm')
        self.names, self.position = list(names), np.array(start, dtype=float)
        self.follow = True
        self.pub = self.node.create_publisher(JointState, topics.JOINT_STATES, 10)
        self.node.create_subscription(Float64MultiArray, topics.forward_commands(controller),
                                      self._on_command, 100)
        self.node.create_timer(0.01, self._publish)

    def _on_command(self, msg):
        if self.follow:
            self.position = np.array(msg.data)

    def move_by_hand(self, position):
        """Stop following the commands and stand at `position`."""
        self.follow, self.position = False, np.array(position, dtype=float)

    def _publish(self):
        self.pub.publish(self._state(name=self.names, position=self.position.tolist()))


@pytest.fixture
def small_contract() -> dict:
    """Return the filter parameters of SMALL_CONTRACT (a fresh copy)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in SMALL_CONTRACT.items()}


@pytest.fixture
def filter_probe(ros):
    """Return `(controller='arm') -> FilterProbe` on the test's harness."""
    return lambda controller='arm': FilterProbe(ros, controller)


@pytest.fixture
def fake_arm(ros):
    """Return `(start, controller='arm', names=...) -> FakeArm` on the test's harness."""
    return lambda start, **kwargs: FakeArm(ros, start, **kwargs)


@pytest.fixture
def service_call():
    """Return call_service: `(node, srv_type, name, request, timeout=10.0) -> response`."""
    return call_service


# ---- policy servers (openpi websocket, OpenVLA REST) ------------------------------------------
HOST = '127.0.0.1'


def openpi_pack(obj) -> bytes:
    """Pack with msgpack, numpy arrays as openpi's {__ndarray__, data, dtype, shape} maps."""
    import msgpack

    def default(value):
        if isinstance(value, np.ndarray):
            return {b'__ndarray__': True, b'data': value.tobytes(), b'dtype': value.dtype.str,
                    b'shape': list(value.shape)}
        raise TypeError(type(value))
    return msgpack.packb(obj, default=default)


def openpi_unpack(data: bytes):
    """Invert openpi_pack."""
    import msgpack

    def hook(obj):
        if b'__ndarray__' in obj:
            return np.frombuffer(obj[b'data'], np.dtype(obj[b'dtype'])).reshape(obj[b'shape'])
        return obj
    return msgpack.unpackb(data, object_hook=hook)


def json_numpy_encode(array):
    """Return json-numpy's map for an array: base64 bytes, dtype descr, shape."""
    array = np.ascontiguousarray(array)
    return {'__numpy__': base64.b64encode(array.tobytes()).decode(), 'dtype': array.dtype.str,
            'shape': list(array.shape)}


def json_numpy_decode(obj):
    """Invert json_numpy_encode, as a json object hook."""
    if '__numpy__' in obj:
        data = np.frombuffer(base64.b64decode(obj['__numpy__']), np.dtype(obj['dtype']))
        return data.reshape(obj['shape'])
    return obj


def action_chunk(h=4, d=2, start=0.0):
    """Return a recognisable action chunk [H, D]."""
    return (start + np.arange(h * d, dtype=np.float32)).reshape(h, d)


class OpenpiServer:
    """A websocket server speaking openpi: metadata frame first, one reply per observation."""

    pack = staticmethod(openpi_pack)

    def __init__(self, port=0, metadata=True):
        from websockets.sync.server import serve

        self.received = []
        self.respond = lambda obs: openpi_pack({'actions': action_chunk()})
        self.metadata = metadata
        self.connections = []
        self.stopped = False
        self.server = serve(self._handle, HOST, port, compression=None)
        self.port = self.server.socket.getsockname()[1]
        self.uri = f'ws://{HOST}:{self.port}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, conn):
        from websockets.exceptions import ConnectionClosed

        self.connections.append(conn)
        try:
            if self.metadata:
                conn.send(openpi_pack({'server': 'test', 'action_horizon': 4}))
            for message in conn:
                obs = openpi_unpack(message)
                self.received.append(obs)
                frame = self.respond(obs)
                if frame is not None:
                    conn.send(frame)
        except ConnectionClosed:
            pass

    def stop(self):
        """Stop listening and close every connection (the server process dies); once."""
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        for conn in self.connections:
            conn.close()
        self.thread.join(5)


class RestServer:
    """An OpenVLA-style REST server: POST /act with json-numpy, replies chosen by the test."""

    encode = staticmethod(json_numpy_encode)

    def __init__(self):
        self.received = []
        self.respond = lambda payload: (200, json.dumps(json_numpy_encode(action_chunk()[0])))
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f'http://{HOST}:{self.server.server_address[1]}/act'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                length = int(self.headers['Content-Length'])
                payload = json.loads(self.rfile.read(length), object_hook=json_numpy_decode)
                outer.received.append((self.path, payload))
                status, body = outer.respond(payload)
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header('Content-Type', 'application/json')
                    self.send_header('Content-Length', str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a late reply

            def log_message(self, *args):
                pass
        return Handler

    def stop(self):
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def openpi():
    """Return a real openpi-protocol policy server on 127.0.0.1, stopped after the test."""
    server = OpenpiServer()
    yield server
    server.stop()


@pytest.fixture
def make_openpi():
    """Return `(port=0, metadata=True) -> OpenpiServer`; each is stopped after the test."""
    servers = []

    def make(**kwargs):
        servers.append(OpenpiServer(**kwargs))
        return servers[-1]
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def wire():
    """Return the policy servers' wire helpers: pack/unpack (openpi), encode/decode (REST)."""
    return SimpleNamespace(pack=openpi_pack, unpack=openpi_unpack, encode=json_numpy_encode,
                           decode=json_numpy_decode)


@pytest.fixture
def rest():
    """Return a real OpenVLA-style REST policy server on 127.0.0.1, stopped after the test."""
    server = RestServer()
    yield server
    server.stop()


@pytest.fixture
def chunk():
    """Return action_chunk: `(h=4, d=2, start=0.0)`, the servers' default reply."""
    return action_chunk
