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
policy_bridge: a policy's actions on /vla/raw_action (JointTrajectory, one point or a chunk).

Source `replay` plays recorded episodes (npz, LeRobot dataset, csv) at their frame rate; with
`normalized_input` the recorded values are policy outputs in normalized units and are unnormalized
with the `unnormalizer.*` parameters. `faults` turns a replay into a drill: time-limited faults
(core.faults.parse_drill) are applied to every episode, to rehearse what the filter and the monitor
do about them. Never drill without the filter in the loop.

Sources `openpi` (websocket, ws://HOST:PORT) and `openvla_rest` (POST http://HOST:PORT/act) ask a
live policy server through core.remote_policies. At `rate_hz`, when no request is in flight, the
timer takes one observation snapshot: `observation.state` (the `state_joints` of the latest
JointState on `state_topic`, float32), `observation.images.<name>` (the latest image of each
`image_topics` entry `name=/topic`, as HxWx3 uint8) and `task` (openpi: renamed by
`observation_keys` entries `ours=theirs`, e.g. `task=prompt`, for the server's input transform). A
missing input, or one older than `request_timeout`, means no request and WARN. A worker thread
(never an executor callback) sends it; the reply's first `replan_every` actions go out 1 / (rate_hz
* replan_every) s apart, stamped with the observation's time (its oldest input's header stamp, else
arrival). A reply later than `request_timeout`, of the wrong dimension, with NaN, or a server error
is dropped: no actions and ERROR with the reason on /diagnostics (`vla_safety/bridge`, live sources
only); the next tick retries (the client backs off from a dead server). With `normalized_input`
replies are unnormalized exactly as replayed values are. Live parameters are read-only.

Configure loads the episodes and reads `normalized_input` and `unnormalizer.*` (other parameters
are read at construction); changes to those two take effect at the next configure.
`~/loaded_unnormalizer` (std_srvs/Trigger) answers with a JSON report of what the last configure
loaded (the `unnormalizer.*` values, `normalized_input`, the published joint order, a configure
`generation` counter, `pending_changes`: parameters changed since, and for live sources
`source_kind`, `server_uri` and the `server_unnorm_key` an openvla_rest bridge sends), which
execspec_check verifies before activation. A server that unnormalizes itself (openpi, OpenVLA
with `unnorm_key`) goes with `normalized_input` false and `unnormalizer.mode: identity`. Each
message carries the node-clock time
of publishing in `header.stamp` (for replay, the observation time) and `chunk <n>` in
`header.frame_id`. Configure creates the publishers and the timer; GatedLifecycleNode destroys
them through the node, once, at cleanup, shutdown or error, and turns any exception in a
transition into a refusal reported at ERROR.
"""
from __future__ import annotations

import json
import math
import queue
import re
import threading
from urllib.parse import urlsplit

import numpy as np
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from .common import (COMMAND_QOS, declare, Diagnostics, duration, ERROR, GatedLifecycleNode,
                     LATCHED_QOS, monotonic, OK, require_valid_parameters, run, STATE_QOS, status,
                     WARN)
from .. import names
from ..core.drill.policies import PolicyFault
from ..core.episodes import read_episodes
from ..core.errors import InputError
from ..core.execspec import metadata_from_params, PARAM_PREFIX, unnormalize
from ..core.faults import apply_drill, parse_drill
from ..core.observation import image_rgb, state_vector
from ..core.remote_policies import make_remote_policy, parse_key_map

LIVE_SOURCES = {'openpi': ('ws', 'wss'), 'openvla_rest': ('http', 'https')}
"""Live sources and the URI schemes their servers speak."""
SOURCES = ('replay', *LIVE_SOURCES)
DIAGNOSTIC_PERIOD = 1.0
IMAGE_NAME = re.compile(r'^[A-Za-z0-9_]+$')
UNNORMALIZER_PARAMS = {
    'mode': ('identity', 'quantile, min_max, mean_std or identity'),
    'key': ('', 'dataset key of the statistics (OpenVLA unnorm_key)'),
    'dim': (Parameter.Type.INTEGER, 'action dimension'),
    'mask': (Parameter.Type.BOOL_ARRAY, 'true where the dimension is unnormalized'),
    'names': (Parameter.Type.STRING_ARRAY, 'action dimension names'),
    'low': (Parameter.Type.DOUBLE_ARRAY, 'q01 (quantile) or min (min_max)'),
    'high': (Parameter.Type.DOUBLE_ARRAY, 'q99 (quantile) or max (min_max)'),
    'mean': (Parameter.Type.DOUBLE_ARRAY, 'mean (mean_std)'),
    'std': (Parameter.Type.DOUBLE_ARRAY, 'standard deviation (mean_std)'),
}


def unnormalizer_parameter_names() -> list[str]:
    """Fully qualified names of the unnormalizer parameters."""
    return [PARAM_PREFIX + name for name in UNNORMALIZER_PARAMS]


def loaded_parameter_names() -> list[str]:
    """Parameters that decide how actions are unnormalized (watched by execspec_check)."""
    return [*unnormalizer_parameter_names(), 'normalized_input']


class PolicyBridge(GatedLifecycleNode):
    """Lifecycle node: configure loads the source, activate starts publishing."""

    def __init__(self, name: str = names.POLICY_BRIDGE, **kwargs):
        super().__init__(name, **kwargs)
        self.source = declare(self, 'source', 'replay', f'action source: {", ".join(SOURCES)}')
        self.episodes_file = declare(self, 'episodes_file', '',
                                     'replay: npz, LeRobot dataset or csv')
        self.episode = declare(self, 'episode', -1, 'replay: episode index, -1 plays all in order')
        self.rate_hz = declare(self, 'rate_hz', 0.0, 'replay: publish rate, 0 = the recording '
                               'fps; live: policy queries per second', read_only=True)
        self.chunk_size = declare(self, 'chunk_size', 1, 'points per /vla/raw_action message')
        self.joint_names = declare(self, 'joint_names', Parameter.Type.STRING_ARRAY,
                                   'names to publish (default: the source names)')
        declare(self, 'normalized_input', False,
                'recorded values are normalized policy outputs (read at configure)')
        self.loop = declare(self, 'loop', False, 'start over after the last episode')
        self.faults = declare(self, 'faults', Parameter.Type.STRING_ARRAY,
                              'drill: faults family@start_s[+duration_s] applied to every episode')
        self.fault_seed = declare(self, 'fault_seed', 0, 'drill: seed of the injected faults')
        for name, (default, text) in UNNORMALIZER_PARAMS.items():
            declare(self, PARAM_PREFIX + name, default, text)
        self._declare_live_parameters()
        self._pub = self._episode_pub = None
        self._requests: _Requests | None = None
        self._lock = threading.Lock()   # the worker's publishing and status against transitions
        self._status = (OK, 'unconfigured')
        self._status_dirty = False
        self._failures = 0
        self._diagnostics = (Diagnostics(self, DIAGNOSTIC_PERIOD, self._bridge_status)
                             if self.source in LIVE_SOURCES else None)
        self._queue: list[tuple[int, np.ndarray]] = []
        self._generation = 0
        self._epoch = 0            # activations so far: a reply is delivered only in its own
        self._samples: dict[str, tuple] = {}
        self._loaded: dict | None = None
        self.create_service(Trigger, names.LOADED_UNNORMALIZER, self._on_loaded_unnormalizer)

    def _declare_live_parameters(self) -> None:
        """Parameters of the live sources (read-only: read once, at construction)."""
        def ro(name, default, text):
            return declare(self, name, default, text, read_only=True)
        self.server_uri = ro('server_uri', '', 'live: openpi ws://HOST:PORT, openvla_rest '
                             'http://HOST:PORT/act')
        self.request_timeout = ro('request_timeout', 1.0, 'live: seconds a reply may take; '
                                  'later ones are dropped')
        self.task = ro('task', '', 'live: the instruction sent with every observation')
        self.unnorm_key = ro('unnorm_key', '', 'openvla_rest: statistics key sent with every '
                             'request (the server unnormalizes with it)')
        self.observation_keys = ro('observation_keys', Parameter.Type.STRING_ARRAY,
                                   'openpi: OURS=THEIRS renames of observation keys (e.g. '
                                   "task=prompt) for the server's input transform")
        self.image_topics = ro('image_topics', Parameter.Type.STRING_ARRAY,
                               'live: NAME=/topic sensor_msgs/Image (rgb8, bgr8, mono8) sent as '
                               'observation.images.NAME')
        self.state_topic = ro('state_topic', names.JOINT_STATES, 'live: JointState topic of the '
                              'observation state')
        self.state_joints = ro('state_joints', Parameter.Type.STRING_ARRAY,
                               'live: joints read in this order into observation.state')
        self.replan_every = ro('replan_every', 1, 'live: actions of each chunk published (the '
                               'rest is replanned); points are 1 / (rate_hz * replan_every) apart')

    def unnormalizer_params(self) -> dict:
        """Return the live unnormalizer parameters that are set."""
        values = {}
        for name in unnormalizer_parameter_names():
            param = self.get_parameter_or(name, None)   # typed parameters may be unset
            value = None if param is None else param.value
            if value is not None and value != '':
                values[name] = value if isinstance(value, (str, int)) else list(value)
        return values

    def configure_node(self) -> None:
        """Load the source and the unnormalizer; create (and own) the publishers and timer."""
        require_valid_parameters(self)
        if self.source in LIVE_SOURCES:
            self._configure_live()
        else:
            self._configure_replay()

    def _configure_replay(self) -> None:
        """Load the episodes; create (and own) the publishers and the timer."""
        self._queue, self._dt, self._names, loaded = self._load()
        self._generation += 1
        self._loaded = {**loaded, 'generation': self._generation}
        self._chunks = 0
        self._pub = self.own(self.create_lifecycle_publisher(JointTrajectory, names.RAW_ACTION,
                                                             COMMAND_QOS))
        self._episode_pub = self.own(self.create_lifecycle_publisher(String, names.EPISODE,
                                                                     LATCHED_QOS))
        self.own(self.create_timer(self._dt, self._on_timer))
        self.get_logger().info(f'configured: {len(self._queue)} episode(s) of {len(self._names)} '
                               f'joints at {1 / self._dt:g} Hz, chunk {self.chunk_size}')

    def _live_loaded_values(self) -> dict:
        """Return the live values of the parameters configure loads (unset ones left out)."""
        return {**self.unnormalizer_params(),
                'normalized_input': bool(self.get_parameter('normalized_input').value)}

    def _load(self):
        if self.source not in SOURCES:
            raise InputError(f'source {self.source!r} is not available here; use one of {SOURCES}')
        if not self.episodes_file:
            raise InputError('parameter episodes_file is required for source replay')
        data = read_episodes(self.episodes_file)
        episodes = [e for e in data.episodes if self.episode in (-1, e.index)]
        if not episodes:
            raise InputError(f'{self.episodes_file}: no episode {self.episode}')
        names = tuple(self.joint_names or data.joint_names)
        if len(names) != data.dim:
            raise InputError(f'joint_names has {len(names)} names for {data.dim}-D actions')
        rate = self.rate_hz or data.fps
        if not rate or rate <= 0:
            raise InputError(f'{self.episodes_file}: no frame rate recorded; set rate_hz')
        if self.chunk_size < 1:
            raise InputError('chunk_size must be >= 1')
        dt = 1.0 / float(rate)
        live = self._live_loaded_values()
        params = {k: v for k, v in live.items() if k != 'normalized_input'}
        meta = metadata_from_params(params, f'{self.get_name()} parameters').require_valid() \
            if live['normalized_input'] else None
        played = []
        for e in episodes:
            normalized = None
            actions = e.actions
            if meta is not None:
                normalized, actions = actions, unnormalize(meta, actions)
            if self.faults:
                drill = parse_drill(self.faults, dt, len(actions))
                actions = apply_drill(actions, normalized, drill, dt, self.fault_seed)
                self.get_logger().warning(f'DRILL: episode {e.index} carries injected faults '
                                          f'{[f.to_dict() for f in drill]}')
            played.append((e.index, actions))
        loaded = {'configured': True, 'source': f'/{self.get_name()}', 'values': live,
                  'parameters': params, 'normalized_input': live['normalized_input'],
                  'joint_names': list(names), 'source_kind': 'replay'}
        return played, dt, names, loaded

    def activate_node(self) -> None:
        """
        Start from the first episode (replay) or the first query (live).

        Live: inputs received before activation are forgotten and a reply to a request sent
        before it is dropped, so nothing observed before a pause (e.g. an episode reset) acts
        after it.
        """
        self._cursor = (0, 0)
        self._announced = False
        with self._lock:
            self._epoch += 1
            self._samples = {}
        self._set_status(OK, 'active: waiting for the first reply')

    def deactivate_node(self) -> None:
        """Live: a reply still in flight is dropped (the worker checks `active`)."""
        self._set_status(OK, 'inactive')

    def cleanup_node(self) -> None:
        """Forget what was loaded and stop the worker (the base destroys the owned entities)."""
        with self._lock:
            requests, self._requests = self._requests, None
        if requests is not None:
            requests.stop()
        self._loaded = None
        self._queue = []
        self._set_status(OK, 'unconfigured')

    def report_state(self) -> None:
        """Live: publish the bridge status after every transition."""
        if self._diagnostics is not None:
            self._status_dirty = False
            self._diagnostics.publish()

    # ---- live sources ------------------------------------------------------------------------
    def _configure_live(self) -> None:
        """Check the live parameters, build the client and the worker, subscribe the inputs."""
        cameras = self._check_live_parameters()
        self._names = tuple(self.joint_names or self.state_joints)
        live = self._live_loaded_values()
        params = {k: v for k, v in live.items() if k != 'normalized_input'}
        self._meta = metadata_from_params(params, f'{self.get_name()} parameters') \
            .require_valid() if live['normalized_input'] else None
        if self._meta is not None and self._meta.dim != len(self._names):
            raise InputError(f'the unnormalizer has {self._meta.dim} dimensions for '
                             f'{len(self._names)} joints')
        options = self._client_options(cameras)
        policy = make_remote_policy(self.server_uri, self.request_timeout,
                                    action_dim=len(self._names), **options)
        policy.reset(0, self.task)
        self._dt = 1.0 / (self.rate_hz * self.replan_every)
        self._chunks = 0
        self._generation += 1
        self._loaded = {'configured': True, 'source': f'/{self.get_name()}', 'values': live,
                        'parameters': params, 'normalized_input': live['normalized_input'],
                        'joint_names': list(self._names), 'generation': self._generation,
                        'source_kind': self.source, 'server_uri': self.server_uri,
                        'server_unnorm_key': self.unnorm_key if 'unnorm_key' in options
                        else None}
        self._subscribe_inputs(cameras)
        self._pub = self.own(self.create_lifecycle_publisher(JointTrajectory, names.RAW_ACTION,
                                                             COMMAND_QOS))
        self._episode_pub = self.own(self.create_lifecycle_publisher(String, names.EPISODE,
                                                                     LATCHED_QOS))
        self.own(self.create_timer(1.0 / self.rate_hz, self._on_query_tick))
        with self._lock:
            self._requests = _Requests(policy, self.request_timeout, self._deliver, self._fail)
        self._set_status(OK, 'configured: waiting for activation')
        self.get_logger().info(f'configured: {self.source} at {self.server_uri}, '
                               f'{len(self._names)} joints, {self.rate_hz:g} queries/s')

    def _client_options(self, cameras: dict) -> dict:
        """Return the client's options: the REST unnorm_key, the openpi key renames."""
        if self.source == 'openvla_rest':
            if self.observation_keys:
                raise InputError('observation_keys applies to source openpi only (OpenVLA REST '
                                 'keys are fixed: image, instruction, unnorm_key)')
            return {'unnorm_key': self.unnorm_key} if self.unnorm_key else {}
        known = ['observation.state', 'task', *('observation.images.' + c for c in cameras)]
        return {'keys': parse_key_map(self.observation_keys or [], known)}

    def _check_live_parameters(self) -> dict[str, str]:
        """Refuse live parameters that cannot work; the cameras as {name: topic}."""
        schemes = LIVE_SOURCES[self.source]
        if urlsplit(self.server_uri).scheme not in schemes:
            raise InputError(f'server_uri {self.server_uri!r}: source {self.source} needs '
                             f'{" or ".join(s + "://" for s in schemes)}')
        for name in ('request_timeout', 'rate_hz'):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise InputError(f'{name} must be a positive number of seconds or Hz, '
                                 f'got {value}')
        if self.replan_every < 1:
            raise InputError(f'replan_every must be at least 1, got {self.replan_every}')
        if not self.state_joints:
            raise InputError('state_joints is required: the joints of observation.state')
        if not self.state_topic:
            raise InputError('state_topic is empty')
        if self.faults:
            raise InputError('faults drill replays only; never inject faults into a live policy')
        return _cameras(self.image_topics or [])

    def _subscribe_inputs(self, cameras: dict[str, str]) -> None:
        """Keep the latest state and image (with their arrival) for the next snapshot."""
        self.own(self.create_subscription(
            JointState, self.state_topic, lambda m: self._keep('state', m), STATE_QOS))
        for name, topic in cameras.items():
            self.own(self.create_subscription(
                Image, topic, lambda m, key=name: self._keep(key, m), STATE_QOS))
        self._cameras = cameras

    def _keep(self, key: str, msg) -> None:
        """
        Keep the latest message of an input.

        With its arrival on the steady and the node clock.
        """
        self._samples[key] = (msg, monotonic(), self.get_clock().now())

    def _on_query_tick(self) -> None:
        """Send one observation snapshot to the worker when it is idle; publish a new status."""
        if self._status_dirty:
            self.report_state()
        if not self.active:
            return
        if not self._announced:
            self._episode_pub.publish(String(data='episode live'))
            self._announced = True
            return
        requests = self._requests
        if requests is None or not requests.idle():
            return
        try:
            observation, stamp = self._snapshot()
        except InputError as exc:
            self._set_status(WARN, f'no request: {exc}')
            return
        requests.submit(observation, (stamp, self._epoch))

    def _snapshot(self) -> tuple[dict, Time]:
        """
        Return the observation now and its time (its oldest input's).

        InputError if an input is missing or older than request_timeout (its chunk would be
        stale).
        """
        observation = {'task': self.task}
        stamps = []
        inputs = [('state', self.state_topic), *self._cameras.items()]
        for key, topic in inputs:
            if key not in self._samples:
                raise InputError(f'nothing received on {topic} yet')
            msg, arrived, arrived_ros = self._samples[key]
            age = monotonic() - arrived
            if age > self.request_timeout:
                raise InputError(f'{topic} is {age:.2f} s old (more than request_timeout)')
            stamp = Time.from_msg(msg.header.stamp, clock_type=arrived_ros.clock_type)
            stamps.append(stamp if stamp.nanoseconds > 0 else arrived_ros)
            try:
                self._observe(observation, key, msg)
            except InputError as exc:
                raise InputError(f'{topic}: {exc}') from None
        return observation, min(stamps, key=lambda t: t.nanoseconds)

    def _observe(self, observation: dict, key: str, msg) -> None:
        """Add one input message to the observation."""
        if key == 'state':
            observation['observation.state'] = state_vector(self.state_joints, msg.name,
                                                            msg.position)
        else:
            observation['observation.images.' + key] = image_rgb(
                msg.height, msg.width, msg.encoding, msg.step, msg.data)

    def _deliver(self, requests, chunk: np.ndarray, tag: tuple, elapsed: float) -> None:
        """
        Worker: publish a reply's chunk, unless the bridge moved on meanwhile.

        TAG is (observation time, activation epoch of the request): a reply to a request of an
        earlier activation is dropped.
        """
        stamp, epoch = tag
        try:
            actions = unnormalize(self._meta, chunk) if self._meta is not None else chunk
        except InputError as exc:
            self._fail(requests, f'reply refused: {exc}')
            return
        message = _chunk_message(self._names, actions[:self.replan_every], self._dt)
        message.header.stamp = stamp.to_msg()
        with self._lock:
            if not self.active or requests is not self._requests or epoch != self._epoch:
                return
            message.header.frame_id = f'chunk {self._chunks}'
            self._chunks += 1
            self._pub.publish(message)
            self._status = (OK, f'{message.header.frame_id}: {len(chunk)} actions in '
                                f'{elapsed:.3f} s')
            self._status_dirty = True

    def _fail(self, requests, reason: str) -> None:
        """Worker: a request gave no chunk; ERROR with the reason (the next tick retries)."""
        with self._lock:
            if requests is not self._requests:
                return
            self._failures += 1
            if self._status != (ERROR, reason):
                self.get_logger().error(f'no actions: {reason}')
            self._status = (ERROR, reason)
            self._status_dirty = True

    def _set_status(self, level: bytes, message: str) -> None:
        """Set the bridge status; the next tick (or transition) publishes it."""
        with self._lock:
            if level == WARN and self._status != (level, message):
                self.get_logger().warning(message)
            self._status = (level, message)
            self._status_dirty = True

    def _bridge_status(self):
        """Return the bridge's /diagnostics status: a refused transition, else the last outcome."""
        level, message = self._status
        if self.refusal:
            level, message = ERROR, self.refusal
        return status(names.BRIDGE_STATUS, level, message, self.get_name(), {
            'source': self.source, 'server_uri': self.server_uri,
            'chunks': getattr(self, '_chunks', 0), 'failures': self._failures})

    def _on_loaded_unnormalizer(self, request, response):
        """Report what the last configure loaded, and which of those parameters changed since."""
        if self._loaded is None:
            report = {'configured': False, 'source': f'/{self.get_name()}',
                      'generation': self._generation}
        else:
            live = self._live_loaded_values()
            names = sorted(set(live) | set(self._loaded['values']))
            pending = [n for n in names if live.get(n) != self._loaded['values'].get(n)]
            report = {k: v for k, v in self._loaded.items() if k != 'values'}
            report['pending_changes'] = pending
        response.success = bool(report['configured'])
        response.message = json.dumps(report)
        return response

    def _on_timer(self) -> None:
        if not self.active:
            return
        ep, t = self._cursor
        if ep >= len(self._queue):
            return
        index, actions = self._queue[ep]
        if t == 0 and not self._announced:
            # one tick between the announcement and the first action: subscribers reset first
            self._episode_pub.publish(String(data=f'episode {index}'))
            self._announced = True
            return
        chunk = actions[t:t + self.chunk_size]
        message = _chunk_message(self._names, chunk, self._dt)
        message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = f'chunk {self._chunks}'
        self._chunks += 1
        self._pub.publish(message)
        t += 1
        if t >= len(actions):
            ep, t = ep + 1, 0
            self._announced = False
            if ep >= len(self._queue) and self.loop:
                ep = 0
            if ep >= len(self._queue):
                self._episode_pub.publish(String(data='done'))
                self.get_logger().info('replay finished')
        self._cursor = (ep, t)


def _chunk_message(names, chunk: np.ndarray, dt: float) -> JointTrajectory:
    """Points k = 0..K-1 due at (k + 1) * dt."""
    return JointTrajectory(joint_names=list(names), points=[
        JointTrajectoryPoint(positions=row.tolist(), time_from_start=duration((k + 1) * dt))
        for k, row in enumerate(chunk)])


def _cameras(specs) -> dict[str, str]:
    """image_topics entries NAME=/topic as {NAME: topic}, refusing malformed or repeated names."""
    cameras = {}
    for spec in specs:
        name, sep, topic = spec.partition('=')
        if not sep or not IMAGE_NAME.match(name) or not topic:
            raise InputError(f'image_topics entry {spec!r}: use NAME=/topic (NAME of letters, '
                             'digits and _)')
        if name in cameras:
            raise InputError(f'image_topics names {name!r} twice')
        cameras[name] = topic
    return cameras


class _Requests:
    """
    The worker thread of a live source: one request at a time, never in an executor callback.

    The executor's timer `submit`s an observation when the worker is `idle`; the worker calls
    the policy (bounded by its timeout), drops replies later than `timeout` and hands the chunk
    to `deliver` or the one-line reason to `fail`, each called with this object so the bridge
    can ignore a worker it has replaced.
    """

    def __init__(self, policy, timeout: float, deliver, fail):
        self._policy, self._timeout = policy, timeout
        self._deliver, self._fail = deliver, fail
        self._jobs: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name='policy_requests', daemon=True)
        self._thread.start()

    def idle(self) -> bool:
        """No request in flight."""
        return self._idle.is_set()

    def submit(self, observation: dict, tag) -> None:
        """Queue one request (taken at once: callers submit only when idle); TAG goes back."""
        self._idle.clear()
        self._jobs.put((observation, tag, monotonic()))

    def stop(self) -> None:
        """Stop after the request in flight (its reply is ignored); closes the connection."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._request(*job)
            finally:
                self._idle.set()
        self._policy.close()

    def _request(self, observation: dict, tag, start: float) -> None:
        try:
            chunk = self._policy.act(observation)
        except PolicyFault as fault:
            self._fail(self, str(fault))
            return
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any client bug
            self._fail(self, f'{type(exc).__name__}: {exc}')
            return
        elapsed = monotonic() - start
        if elapsed > self._timeout:
            self._fail(self, f'reply after {elapsed:.2f} s, later than request_timeout '
                             f'{self._timeout:g} s: dropped')
            return
        self._deliver(self, chunk, tag, elapsed)


def main() -> None:
    run(PolicyBridge)
