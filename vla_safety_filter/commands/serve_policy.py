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

"""`vla-safety serve-policy`: the built-in nearest-neighbour policy as an openpi or REST server."""
from __future__ import annotations

import ipaddress
import socket
import sys

from ..core.errors import InputError

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 8000


def register(subparsers) -> None:
    from ..core.drill.policies import DEFAULT_HORIZON

    p = subparsers.add_parser(
        'serve-policy', help='serve the built-in nn:DATA policy over the openpi websocket '
                             'protocol or OpenVLA-style REST (127.0.0.1 by default)',
        description='Serve the nearest-neighbour policy on demonstrations over the openpi '
                    'websocket protocol (ws://HOST:PORT) or OpenVLA-style REST '
                    '(POST http://HOST:PORT/act, json-numpy), so the drill, the policy_bridge '
                    'or any openpi/OpenVLA client can be tried without a GPU server. The '
                    'protocols have no authentication: keep the default loopback address. '
                    'Serves until Ctrl-C.')
    p.add_argument('--policy', required=True, metavar='nn:DEMOS.npz',
                   help='the policy to serve: nn:DEMOS.npz (nearest neighbour on the '
                        "demonstrations' observation.state)")
    p.add_argument('--protocol', choices=('openpi', 'rest'), default='openpi',
                   help='openpi websocket (default) or rest (POST /act)')
    p.add_argument('--host', default=DEFAULT_HOST,
                   help=f'address to bind (default {DEFAULT_HOST}; anything else exposes the '
                        'policy to the network)')
    p.add_argument('--port', type=int, default=DEFAULT_PORT,
                   help=f'port to bind (default {DEFAULT_PORT}; 0 lets the OS choose)')
    p.add_argument('--chunk', type=int, default=DEFAULT_HORIZON, metavar='H',
                   help=f'actions per reply (default {DEFAULT_HORIZON})')
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    """
    Return True if HOST names only this machine.

    (a loopback address, or a name resolving to one).
    """
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split('%')[0]).is_loopback
                               for info in infos)


def _policy(spec: str, chunk: int):
    """Return the nn:DATA policy with chunk length CHUNK, and the metadata the server announces."""
    from ..core.drill.policies import NearestNeighbourPolicy

    kind, sep, path = spec.partition(':')
    if kind != 'nn' or not sep or not path:
        raise InputError(f'cannot serve {spec!r}: serve-policy serves nn:DEMOS.npz')
    if chunk < 1:
        raise InputError(f'--chunk must be >= 1, got {chunk}')
    policy = NearestNeighbourPolicy(path, chunk)
    metadata = {'server': 'vla-safety serve-policy', 'policy': spec,
                'action_horizon': chunk, 'action_dim': int(policy.actions.shape[1])}
    return policy, metadata


def _warn_if_exposed(host: str) -> None:
    """Say loudly on stderr when the server will be reachable from other machines."""
    if not is_loopback(host):
        print(f'vla-safety serve-policy: WARNING: binding {host!r}, not a loopback address: '
              'anyone who can reach this machine can query the policy (the protocols have '
              'no authentication or encryption)', file=sys.stderr, flush=True)


def run(args) -> int:
    from ..core.policy_server import make_server

    if not 0 <= args.port <= 65535:
        raise InputError(f'--port must be 0..65535, got {args.port}')
    policy, metadata = _policy(args.policy, args.chunk)
    _warn_if_exposed(args.host)
    try:
        server = make_server(args.protocol, policy, args.host, args.port, metadata)
    except OSError as exc:
        raise InputError(f'cannot bind {args.host}:{args.port} '
                         f'({exc.strerror or exc})') from None
    print(f'serving {args.policy} over {args.protocol} at {server.uri} (Ctrl-C to stop)',
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('vla-safety serve-policy: stopped', file=sys.stderr)
    finally:
        server.stop()
        policy.close()
    return 0
