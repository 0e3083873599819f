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
Real policy servers on 127.0.0.1 for the tests: openpi over websockets, OpenVLA-style REST.

A plain helper module like ros_harness.py: test modules import it (they never import each other);
conftest.py wraps the servers in the fixtures `openpi`, `make_openpi`, `rest`, `wire`, `chunk`.
"""
import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import threading

import numpy as np

HOST = '127.0.0.1'


def pack(obj) -> bytes:
    """Pack with msgpack, numpy arrays as openpi's {__ndarray__, data, dtype, shape} maps."""
    import msgpack

    def default(value):
        if isinstance(value, np.ndarray):
            return {b'__ndarray__': True, b'data': value.tobytes(), b'dtype': value.dtype.str,
                    b'shape': list(value.shape)}
        raise TypeError(type(value))
    return msgpack.packb(obj, default=default)


def unpack(data: bytes):
    """Invert pack."""
    import msgpack

    def hook(obj):
        if b'__ndarray__' in obj:
            return np.frombuffer(obj[b'data'], np.dtype(obj[b'dtype'])).reshape(obj[b'shape'])
        return obj
    return msgpack.unpackb(data, object_hook=hook)


def encode(array):
    """Return json-numpy's map for an array: base64 bytes, dtype descr, shape."""
    array = np.ascontiguousarray(array)
    return {'__numpy__': base64.b64encode(array.tobytes()).decode(), 'dtype': array.dtype.str,
            'shape': list(array.shape)}


def decode(obj):
    """Invert encode, as a json object hook."""
    if '__numpy__' in obj:
        data = np.frombuffer(base64.b64decode(obj['__numpy__']), np.dtype(obj['dtype']))
        return data.reshape(obj['shape'])
    return obj


def chunk(h=4, d=2, start=0.0):
    """Return a recognisable action chunk [H, D]."""
    return (start + np.arange(h * d, dtype=np.float32)).reshape(h, d)


class OpenpiServer:
    """A websocket server speaking openpi: metadata frame first, one reply per observation."""

    pack = staticmethod(pack)

    def __init__(self, port=0, metadata=True):
        from websockets.sync.server import serve

        self.received = []
        self.respond = lambda obs: pack({'actions': chunk()})
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
                conn.send(pack({'server': 'test', 'action_horizon': 4}))
            for message in conn:
                obs = unpack(message)
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

    encode = staticmethod(encode)

    def __init__(self):
        self.received = []
        self.respond = lambda payload: (200, json.dumps(encode(chunk()[0])))
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
                payload = json.loads(self.rfile.read(length), object_hook=decode)
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
