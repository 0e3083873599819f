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
Remote policies: an openpi websocket server or an OpenVLA REST server as a drill `Policy`.

Pure Python (no rclpy) so the drills and the ROS policy_bridge share one client. Every bad case
(unreachable server, late reply, text error frame, HTTP error, the `"error"` body, malformed
msgpack or JSON, wrong shape or dimension, NaN/Inf) raises `PolicyFault` with one line; nothing
blocks longer than `timeout` and a dead connection is reopened on a later call.

Protocol facts relied on:

openpi websocket (`ws://HOST:PORT`, as `openpi_client.websocket_client_policy` speaks it)
  - One websocket per client, no per-message compression. Every frame is binary msgpack, with
    numpy arrays as maps `{__ndarray__: True, data: raw bytes, dtype: dtype.str, shape: [...]}`
    (`openpi_client.msgpack_numpy`, which refuses object dtypes: no pickle on the wire).
  - Right after the handshake the server sends one frame: its metadata map.
  - Then strictly one reply per observation, in order. A reply is a map with `actions` [H, D]
    (servers may add keys such as timings). A *text* frame instead is the server's error
    (usually a traceback); the server then closes the connection.
  - openpi-client's own `WebsocketClientPolicy` waits without a deadline, so this module keeps
    its wire format (`openpi_client.msgpack_numpy`) but drives `websockets` itself with
    timeouts. A reply that misses the deadline would arrive as the answer to the *next*
    observation, so the connection is dropped: a late reply is never taken for a later one.
  - Observation sent: `observation.state` (float32 vector), `observation.images.<cam>`
    (HxWx3 uint8) when given, and `task` (the observation's, else the one given at reset).

OpenVLA / OpenVLA-OFT REST (`http://HOST:PORT/act`)
  - `POST` with a JSON body encoded by json-numpy (arrays as `{__numpy__: base64, dtype,
    shape}`): `image` (HxWx3 uint8), `instruction` (the task), `unnorm_key` when set. This
    client also sends `state` (the `observation.state` vector): OpenVLA ignores keys it does
    not read, and state-only servers (the built-in one) need it.
  - The reply is json-numpy JSON: one action [D] (OpenVLA) or a list of actions [H, D] (OFT).
  - Both answer a failure with HTTP 200 and the JSON body `"error"`; that is an error here.
"""
from __future__ import annotations

from contextlib import ExitStack
import http.client
import json
import time
from urllib.parse import urlsplit

import json_numpy
import numpy as np
from openpi_client import msgpack_numpy
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from .drill.policies import PolicyFault
from .errors import InputError

MAX_REPLY_BYTES = 64 * 1024 * 1024
"""Largest reply accepted: an action chunk is kilobytes, so anything near this is broken."""

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
"""Seconds before retrying a failed connection: doubled per failure up to the maximum."""


def make_remote_policy(spec: str, timeout: float, action_dim: int | None = None,
                       **options):
    """
    Build the remote policy for SPEC: `ws://HOST:PORT` (openpi) or `http://HOST:PORT/act`.

    `action_dim` is the action dimension replies must have; if None the first good reply fixes
    it. `options` go to the client (`unnorm_key`, `camera` for REST).
    """
    if timeout <= 0:
        raise InputError(f'remote policy timeout must be positive, got {timeout}')
    scheme = urlsplit(spec).scheme
    if scheme in ('ws', 'wss'):
        return OpenpiPolicy(spec, timeout, action_dim, **options)
    if scheme in ('http', 'https'):
        return OpenvlaRestPolicy(spec, timeout, action_dim, **options)
    raise InputError(f'remote policy {spec!r}: use ws://HOST:PORT or http://HOST:PORT/act')


def _host_port(spec: str) -> tuple[str, int | None]:
    """Host and port of a policy URI, or an InputError naming what is missing."""
    try:
        parts = urlsplit(spec)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InputError(f'remote policy {spec!r}: {exc}') from exc
    if not host:
        raise InputError(f'remote policy {spec!r} names no host')
    return host, port


def parse_key_map(specs, known) -> dict:
    """
    Return {our key: the server's key} from `ours=theirs` entries, refusing malformed ones.

    An openpi server reads the keys its policy's input transform expects (openpi's LIBERO
    example: observation/state, observation/image, prompt), so the observation's keys may need
    renaming. KNOWN are the keys an observation carries; the server's keys must be distinct.
    """
    keys = {}
    for spec in specs:
        ours, sep, theirs = str(spec).partition('=')
        if not sep or not ours or not theirs:
            raise InputError(f'observation_keys entry {spec!r}: use OURS=THEIRS')
        if ours not in known:
            raise InputError(f'observation_keys entry {spec!r}: {ours!r} is not an observation '
                             f'key here ({", ".join(sorted(known))})')
        if ours in keys:
            raise InputError(f'observation_keys renames {ours!r} twice')
        keys[ours] = theirs
    renamed = [keys.get(k, k) for k in known]
    if len(set(renamed)) != len(renamed):
        raise InputError(f'observation_keys gives two observation entries one key: {renamed}')
    return keys


def one_line(text, limit: int = 200) -> str:
    """Return the last non-empty line of a message (a traceback ends with its exception), or ''."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[-1] if lines else ''
    return line if len(line) <= limit else line[:limit - 3] + '...'


def _why(exc: BaseException) -> str:
    """One line saying why EXC happened, its type when it carries no message."""
    return one_line(exc) or type(exc).__name__


def as_chunk(actions, action_dim: int | None) -> np.ndarray:
    """Validate a reply's actions as a finite float64 chunk [H, D]; one action [D] is H = 1."""
    try:
        chunk = np.array(actions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PolicyFault(f'actions are not a numeric array ({_why(exc)})') from None
    if chunk.ndim == 1:
        chunk = chunk[np.newaxis, :]
    if chunk.ndim != 2 or chunk.shape[0] == 0 or chunk.shape[1] == 0:
        raise PolicyFault(f'actions have shape {np.shape(actions)}, expected [H, D] or [D]')
    if action_dim is not None and chunk.shape[1] != action_dim:
        raise PolicyFault(f'actions have dimension {chunk.shape[1]}, expected {action_dim}')
    if not np.all(np.isfinite(chunk)):
        raise PolicyFault('actions contain NaN or Inf')
    return chunk


class _Backoff:
    """Spaces reconnection attempts after failures, so a dead server is not hammered."""

    def __init__(self):
        self.delay = 0.0
        self.retry_at = 0.0

    def wait_left(self) -> float:
        """Seconds until the next attempt is allowed (0 when it is)."""
        return max(0.0, self.retry_at - time.monotonic())

    def failed(self):
        """Push the next attempt back, doubling the delay up to BACKOFF_MAX."""
        self.delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, 2.0 * self.delay))
        self.retry_at = time.monotonic() + self.delay

    def succeeded(self):
        """Note a connection: the next failure starts from the first delay again."""
        self.delay = 0.0
        self.retry_at = 0.0


class _RemotePolicy:
    """What both protocols share: the task, the expected dimension, reply validation, backoff."""

    def __init__(self, spec: str, timeout: float, action_dim: int | None):
        self.name = spec
        self.timeout = float(timeout)
        if action_dim is not None and action_dim < 1:
            raise InputError(f'remote policy action_dim must be at least 1, got {action_dim}')
        self.action_dim = action_dim
        self.task = ''
        self._backoff = _Backoff()
        self._last_connect_error = ''

    def reset(self, seed: int, task: str) -> None:
        """Remember the task; the connection (if any) is kept across episodes."""
        self.task = task

    def act(self, observation: dict) -> np.ndarray:
        """One request for OBSERVATION; the chunk [H, D] or PolicyFault with one line."""
        try:
            chunk = as_chunk(self._request(observation), self.action_dim)
        except PolicyFault as fault:
            raise PolicyFault(f'{self.name}: {fault}') from None
        if self.action_dim is None:
            self.action_dim = chunk.shape[1]
        return chunk

    def close(self) -> None:
        """Close the connection; a later act would open a new one."""
        self._drop()

    def _ensure_connected(self):
        """Open the connection unless one is open; refuse while backing off from a failure."""
        if self._connected():
            return
        wait = self._backoff.wait_left()
        if wait > 0:
            raise PolicyFault(f'{self._last_connect_error}; retrying in {wait:.2f} s')
        try:
            self._connect()
        except PolicyFault as fault:
            self._drop()
            self._backoff.failed()
            self._last_connect_error = str(fault)
            raise
        self._backoff.succeeded()

    def _state(self, observation: dict) -> np.ndarray:
        """Return the observation's state vector as float32 (what openpi servers expect)."""
        if 'observation.state' not in observation:
            raise PolicyFault('the observation has no observation.state')
        return np.asarray(observation['observation.state'], dtype=np.float32).reshape(-1)

    def _task(self, observation: dict) -> str:
        """Return the observation's task text, else the one given at reset."""
        return str(observation.get('task', self.task))


class OpenpiPolicy(_RemotePolicy):
    """A policy served over the openpi websocket protocol (pi0, pi0.5 or any such server)."""

    def __init__(self, spec: str, timeout: float, action_dim: int | None = None,
                 keys: dict | None = None):
        super().__init__(spec, timeout, action_dim)
        _host_port(spec)  # refuse a bad URI now, not at the first act
        self.keys = dict(keys or {})   # our observation key -> the server's
        self.server_metadata: dict = {}
        self._ws = None
        self._session = ExitStack()

    def _connected(self) -> bool:
        return self._ws is not None

    def _drop(self):
        """Close and forget the websocket (its state is unknown after any fault)."""
        self._ws = None
        self._session.close()

    def _connect(self):
        """Handshake within the timeout and read the server's metadata frame."""
        try:
            websocket = connect(self.name, open_timeout=self.timeout, close_timeout=0.2,
                                compression=None, max_size=MAX_REPLY_BYTES, proxy=None)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise PolicyFault(f'cannot connect ({_why(exc)})') from None
        self._ws = self._session.enter_context(websocket)
        metadata = self._receive('metadata')
        if not isinstance(metadata, dict):
            raise PolicyFault(f'metadata frame is a {type(metadata).__name__}, not a map')
        self.server_metadata = metadata

    def _request(self, observation: dict):
        """Send one observation and return the `actions` of its reply."""
        frame = self._encode(observation)
        self._ensure_connected()
        try:
            self._ws.send(frame)
        except (OSError, WebSocketException) as exc:
            self._drop()
            raise PolicyFault(f'connection lost ({_why(exc)})') from None
        reply = self._receive('reply')
        if not isinstance(reply, dict) or 'actions' not in reply:
            self._drop()
            raise PolicyFault('reply is not a map with "actions"')
        return reply['actions']

    def _encode(self, observation: dict) -> bytes:
        """Return the observation as an openpi msgpack-numpy frame."""
        obs = {'observation.state': self._state(observation), 'task': self._task(observation)}
        for key, value in observation.items():
            if key.startswith('observation.images.'):
                obs[key] = np.asarray(value)
        obs = {self.keys.get(key, key): value for key, value in obs.items()}
        try:
            return msgpack_numpy.packb(obs)
        except (TypeError, ValueError) as exc:
            raise PolicyFault(f'observation cannot be encoded ({_why(exc)})') from None

    def _receive(self, what: str):
        """Return the next frame decoded, within the timeout; any fault drops the connection."""
        try:
            data = self._ws.recv(timeout=self.timeout)
        except TimeoutError:
            self._drop()
            raise PolicyFault(f'no {what} within {self.timeout:g} s') from None
        except (OSError, WebSocketException) as exc:
            self._drop()
            raise PolicyFault(f'connection lost waiting for {what} ({_why(exc)})') from None
        if isinstance(data, str):
            self._drop()
            raise PolicyFault(f'server error: {one_line(data)}')
        return self._decode(data, what)

    def _decode(self, data: bytes, what: str):
        """Return a msgpack-numpy frame decoded; any malformation is a fault, never a crash."""
        try:
            return msgpack_numpy.unpackb(data)
        except Exception as exc:  # noqa: BLE001 - any decoding error means a malformed frame
            self._drop()
            raise PolicyFault(f'malformed msgpack {what} ({_why(exc)})') from None


class OpenvlaRestPolicy(_RemotePolicy):
    """A policy served by OpenVLA's or OpenVLA-OFT's REST server (`POST /act`, json-numpy)."""

    def __init__(self, spec: str, timeout: float, action_dim: int | None = None,
                 unnorm_key: str | None = None, camera: str | None = None):
        super().__init__(spec, timeout, action_dim)
        self.host, self.port = _host_port(spec)
        parts = urlsplit(spec)
        self.https = parts.scheme == 'https'
        self.path = parts.path or '/act'
        self.unnorm_key = unnorm_key
        self.camera = camera
        self._conn = None

    def _connected(self) -> bool:
        return self._conn is not None

    def _drop(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connect(self):
        """Open a connection within the timeout (one per request, see `_request`)."""
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = kind(self.host, self.port, timeout=self.timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise PolicyFault(f'cannot connect ({_why(exc)})') from None
        self._conn = conn

    def _request(self, observation: dict):
        """
        POST one observation on a fresh connection; the decoded reply (action or list).

        A fresh connection per request: servers close idle keep-alive connections (uvicorn
        after 5 s), which would otherwise fail the next request of a healthy server.
        """
        body = json_numpy.dumps(self._payload(observation)).encode()
        deadline = time.monotonic() + self.timeout
        self._ensure_connected()
        try:
            status, reason, data = self._exchange(body, deadline)
        finally:
            self._drop()
        if time.monotonic() > deadline:
            raise PolicyFault(f'reply came later than {self.timeout:g} s')
        return self._decode(status, reason, data)

    def _exchange(self, body: bytes, deadline: float) -> tuple[int, str, bytes]:
        """Send the request and read the whole response, all before DEADLINE."""
        try:
            self._conn.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            self._conn.request('POST', self.path, body=body, headers={
                'Content-Type': 'application/json', 'Connection': 'close'})
            response = self._conn.getresponse()
            return response.status, response.reason, response.read(MAX_REPLY_BYTES + 1)
        except TimeoutError:
            raise PolicyFault(f'no reply within {self.timeout:g} s') from None
        except (OSError, http.client.HTTPException) as exc:
            raise PolicyFault(f'request failed ({_why(exc)})') from None

    def _payload(self, observation: dict) -> dict:
        """Return the request body: image, instruction, state, and unnorm_key when set."""
        payload = {'instruction': self._task(observation), 'state': self._state(observation)}
        image = self._image(observation)
        if image is not None:
            payload['image'] = image
        if self.unnorm_key is not None:
            payload['unnorm_key'] = self.unnorm_key
        return payload

    def _image(self, observation: dict):
        """Return the chosen camera's image (the first one by name if none was chosen), or None."""
        keys = sorted(k for k in observation if k.startswith('observation.images.'))
        if self.camera is not None:
            key = 'observation.images.' + self.camera
            if key not in observation:
                raise PolicyFault(f'the observation has no image from camera {self.camera!r}')
            return np.asarray(observation[key], dtype=np.uint8)
        return np.asarray(observation[keys[0]], dtype=np.uint8) if keys else None

    def _decode(self, status: int, reason: str, data: bytes):
        """
        Return the reply's JSON, refusing HTTP errors.

        Oversize bodies and the `"error"` body.
        """
        if status != 200:
            raise PolicyFault(f'HTTP {status} {one_line(reason)}')
        if len(data) > MAX_REPLY_BYTES:
            raise PolicyFault(f'reply larger than {MAX_REPLY_BYTES} bytes')
        try:
            reply = json_numpy.loads(data.decode('utf-8'))
        except Exception as exc:  # noqa: BLE001 - any decoding error means a malformed body
            raise PolicyFault(f'malformed JSON reply ({_why(exc)})') from None
        if isinstance(reply, str):
            raise PolicyFault(f'server answered {json.dumps(one_line(reply))}')
        return reply
