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
Serve any drill `Policy` over the openpi websocket protocol or OpenVLA-style REST.

Pure Python (no rclpy): `vla-safety serve-policy` uses it, and so can tests and demos that need
a real policy server on this machine. The protocol facts are those the clients in
`remote_policies` rely on (see its docstring); what this side adds:

openpi websocket (`ws://HOST:PORT`)
  - After the handshake the server sends its metadata map, then answers each binary
    msgpack-numpy observation with `{"actions": [H, D]}` (float64, as the policy returns it).
  - A request it cannot serve gets one text frame with one line saying why, then the
    connection is closed (1007 for a bad request, 1011 for a policy failure), as openpi's own
    server does after its traceback. The server keeps serving other and new connections.

REST (`POST http://HOST:PORT/act`, json-numpy bodies)
  - Request keys: `state` (the `observation.state` vector, required: the built-in policies act
    on state), `instruction` (the task), `image` (HxWx3 uint8, handed to the policy as
    `observation.images.image`); others such as `unnorm_key` are ignored.
  - Reply: HTTP 200 with the chunk [H, D] as one json-numpy array.
  - Errors use a clear HTTP status rather than OpenVLA's HTTP 200 `"error"` body, so the reason
    travels with them: 400 (bad request), 404 (other path), 411/413 (missing or oversize body),
    500 (the policy failed); the reason phrase and a JSON body `{"error": LINE}` say why.

Requests are served one at a time (the policy need not be thread-safe). The protocols carry no
episode boundaries, so the served policy should not keep state between requests.
"""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

import json_numpy
import numpy as np
from openpi_client import msgpack_numpy
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from .drill.policies import Policy, PolicyFault
from .remote_policies import as_chunk, MAX_REPLY_BYTES, one_line

MAX_REQUEST_BYTES = MAX_REPLY_BYTES
"""Largest observation accepted: a few camera images are megabytes."""

IMAGE_PREFIX = 'observation.images.'
REST_IMAGE_KEY = IMAGE_PREFIX + 'image'
"""The key the REST request's single `image` gets in the observation the policy sees."""

CLOSE_BAD_REQUEST = 1007
CLOSE_POLICY_FAILED = 1011
"""Websocket close codes after an error frame: invalid payload data, internal error."""

IDLE_TIMEOUT_S = 60.0
"""A REST connection idle this long is closed, so stalled clients do not hold threads."""


def _why(exc: BaseException) -> str:
    """One line saying why EXC happened, its type when it carries no message."""
    return one_line(exc) or type(exc).__name__


class RequestError(Exception):
    """The request cannot be served: malformed, or not an observation the policy accepts."""


class PolicyFailed(Exception):
    """The policy raised or returned an unusable chunk for a well-formed observation."""


def _image(key: str, value) -> np.ndarray:
    """Return a camera image as HxWx3 uint8, else RequestError naming the key."""
    image = np.asarray(value)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(f'{key} must be an HxWx3 uint8 image, got {image.dtype} '
                           f'{image.shape}')
    return image


def state_vector(value) -> np.ndarray:
    """`observation.state` as a finite float64 vector, else RequestError saying what is wrong."""
    state = np.asarray(value)
    if state.dtype.kind not in 'fiu':
        raise RequestError(f'observation.state must be real numbers, got dtype {state.dtype}')
    if state.ndim != 1 or state.size == 0:
        raise RequestError(f'observation.state must be a non-empty vector, got shape '
                           f'{state.shape}')
    state = state.astype(np.float64)
    if not np.all(np.isfinite(state)):
        raise RequestError('observation.state contains NaN or Inf')
    return state


def observation_from(request) -> dict:
    """Return the policy's observation from a decoded openpi request map, validated."""
    if not isinstance(request, dict):
        raise RequestError(f'the observation is a {type(request).__name__}, not a map')
    if 'observation.state' not in request:
        raise RequestError('the observation has no observation.state')
    task = request.get('task', request.get('prompt', ''))
    if not isinstance(task, str):
        raise RequestError(f'task must be text, got {type(task).__name__}')
    observation = {'observation.state': state_vector(request['observation.state']),
                   'task': task}
    for key, value in request.items():
        if isinstance(key, str) and key.startswith(IMAGE_PREFIX):
            observation[key] = _image(key, value)
    return observation


class PolicyService:
    """One policy behind a lock: validated observation in, validated chunk [H, D] out."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._lock = threading.Lock()

    def act(self, observation: dict) -> np.ndarray:
        """
        Return the policy's chunk.

        RequestError if it refuses the observation, else PolicyFailed.
        """
        with self._lock:
            try:
                actions = self.policy.act(observation)
            except PolicyFault as fault:
                raise RequestError(one_line(fault) or 'the policy refused the observation') \
                    from None
            except Exception as exc:  # noqa: BLE001 - a failing policy must not stop the server
                raise PolicyFailed(f'policy failed ({_why(exc)})') from None
        try:
            return as_chunk(actions, None)
        except PolicyFault as fault:
            raise PolicyFailed(f'policy returned unusable actions ({fault})') from None


class _Server:
    """What both protocols share: the address, a background thread, stopping."""

    scheme = ''
    path = ''

    def __init__(self):
        self._thread = None
        self._serving = False

    @property
    def address(self) -> tuple[str, int]:
        """Return the host and port actually bound (the OS's port when asked for port 0)."""
        host, port = self._socket().getsockname()[:2]
        return host, port

    @property
    def uri(self) -> str:
        """
        Return the address as a client's policy spec.

        (`ws://HOST:PORT`, `http://HOST:PORT/act`).
        """
        host, port = self.address
        host = f'[{host}]' if ':' in host else host
        return f'{self.scheme}://{host}:{port}{self.path}'

    def serve_forever(self) -> None:
        """Serve until `stop` (from another thread) or KeyboardInterrupt."""
        self._serving = True
        self._serve()

    def start(self) -> '_Server':
        """Serve on a daemon thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name=f'policy-server-{self.scheme}')
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and wait for the serving thread."""
        self._shutdown()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class OpenpiServer(_Server):
    """The openpi websocket protocol: metadata frame, then one reply per observation."""

    scheme = 'ws'

    def __init__(self, policy: Policy, host: str, port: int, metadata: dict | None = None):
        super().__init__()
        self.service = PolicyService(policy)
        self.metadata = dict(metadata or {})
        self._connections = set()
        self._server = serve(self._handle, host, port, compression=None,
                             max_size=MAX_REQUEST_BYTES)

    def _socket(self):
        return self._server.socket

    def _serve(self) -> None:
        """Accept connections until stopped (each is served on its own thread)."""
        self._server.serve_forever()

    def _shutdown(self):
        self._server.shutdown()
        for connection in list(self._connections):
            connection.close()

    def _handle(self, connection) -> None:
        """One client: metadata, then reply to each observation until it leaves or errs."""
        self._connections.add(connection)
        try:
            connection.send(msgpack_numpy.packb(self.metadata))
            for message in connection:
                connection.send(self._reply(message))
        except RequestError as exc:
            self._refuse(connection, str(exc), CLOSE_BAD_REQUEST)
        except PolicyFailed as exc:
            self._refuse(connection, str(exc), CLOSE_POLICY_FAILED)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(connection)

    def _reply(self, message) -> bytes:
        """Return the msgpack-numpy reply to one frame, or RequestError / PolicyFailed."""
        if isinstance(message, str):
            raise RequestError('expected a binary msgpack-numpy frame, got a text frame')
        try:
            request = msgpack_numpy.unpackb(message)
        except Exception as exc:  # noqa: BLE001 - any decoding error means a malformed frame
            raise RequestError(f'malformed msgpack observation ({_why(exc)})') from None
        chunk = self.service.act(observation_from(request))
        return msgpack_numpy.packb({'actions': chunk})

    @staticmethod
    def _refuse(connection, reason: str, code: int) -> None:
        """Send the one-line error as a text frame, then close with CODE."""
        try:
            connection.send(one_line(reason))
            connection.close(code, one_line(reason, limit=120))
        except ConnectionClosed:
            pass


class _RestHandler(BaseHTTPRequestHandler):
    """`POST /act` with json-numpy; everything else gets a clear HTTP error."""

    protocol_version = 'HTTP/1.1'
    timeout = IDLE_TIMEOUT_S
    service: PolicyService  # set on the subclass made per server

    def do_POST(self):  # noqa: N802 - the name http.server dispatches to
        """Answer one observation with its chunk, or an error status with the reason."""
        if self.path.split('?', 1)[0] != '/act':
            self._send(404, 'Not Found', {'error': f'no such endpoint {self.path}: use /act'})
            return
        try:
            request = self._read_json()
            chunk = self.service.act(self._observation(request))
        except _HttpError as exc:
            self._send(exc.status, exc.reason, {'error': exc.reason})
            return
        except RequestError as exc:
            self._send(400, str(exc), {'error': str(exc)})
            return
        except PolicyFailed as exc:
            self._send(500, str(exc), {'error': str(exc)})
            return
        self._send(200, 'OK', chunk)

    def _read_json(self):
        """Return the request body decoded by json-numpy, or an HTTP error saying what is wrong."""
        length = self.headers.get('Content-Length')
        if length is None or not length.strip().isdigit():
            self.close_connection = True  # where this request's body ends is unknown
            raise _HttpError(411, 'a Content-Length is required')
        if int(length) > MAX_REQUEST_BYTES:
            self.close_connection = True
            raise _HttpError(413, f'request larger than {MAX_REQUEST_BYTES} bytes')
        body = self.rfile.read(int(length))
        try:
            return json_numpy.loads(body.decode('utf-8'))
        except Exception as exc:  # noqa: BLE001 - any decoding error means a malformed body
            raise RequestError(f'malformed JSON body ({_why(exc)})') from None

    @staticmethod
    def _observation(request) -> dict:
        """Return the REST body's keys mapped onto an openpi-style observation, validated."""
        if not isinstance(request, dict):
            raise RequestError(f'the body is a JSON {type(request).__name__}, not an object')
        if 'state' not in request:
            raise RequestError('the body has no state (the observation.state vector)')
        mapped = {'observation.state': request['state'], 'task': request.get('instruction', '')}
        if 'image' in request:
            mapped[REST_IMAGE_KEY] = request['image']
        return observation_from(mapped)

    def _send(self, status: int, reason: str, body) -> None:
        """One response with a JSON body; a client that already left is no error."""
        data = json_numpy.dumps(body).encode()
        phrase = one_line(reason).encode('ascii', 'replace').decode('ascii')
        try:
            self.send_response(status, phrase)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """Quiet: a policy server answers many requests a second."""


class _HttpError(Exception):
    """An HTTP-level refusal (status and reason) before the body is decoded."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class RestServer(_Server):
    """OpenVLA-style REST: `POST /act` with json-numpy bodies, one chunk per request."""

    scheme = 'http'
    path = '/act'

    def __init__(self, policy: Policy, host: str, port: int):
        super().__init__()
        handler = type('Handler', (_RestHandler,), {'service': PolicyService(policy)})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True

    def _socket(self):
        return self._server.socket

    def _serve(self) -> None:
        """Accept requests until stopped (each connection on its own thread)."""
        self._server.serve_forever(poll_interval=0.1)

    def _shutdown(self):
        if self._serving:  # http.server's shutdown waits for a serve_forever that must run
            self._server.shutdown()
        self._server.server_close()


PROTOCOLS = ('openpi', 'rest')


def make_server(protocol: str, policy: Policy, host: str = '127.0.0.1', port: int = 8000,
                metadata: dict | None = None) -> _Server:
    """
    Return a bound (not yet serving) server for POLICY.

    OSError if the address cannot be bound.
    """
    if protocol == 'openpi':
        return OpenpiServer(policy, host, port, metadata)
    if protocol == 'rest':
        return RestServer(policy, host, port)
    raise ValueError(f'unknown protocol {protocol!r}: use one of {", ".join(PROTOCOLS)}')
