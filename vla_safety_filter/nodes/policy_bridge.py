"""policy_bridge: a policy's actions on /vla/raw_action (JointTrajectory, one point or a chunk).

Source `replay` plays recorded episodes (npz, LeRobot dataset, csv) at their frame rate; with
`normalized_input` the recorded values are policy outputs in normalized units and are unnormalized
with the `unnormalizer.*` parameters. `faults` turns a replay into a drill: time-limited faults
(core.faults.parse_drill) are applied to every episode, to rehearse what the filter and the monitor
do about them. Never drill without the filter in the loop.

Configure loads the episodes and reads `normalized_input` and `unnormalizer.*` (other parameters
are read at construction); changes to those two take effect at the next configure.
`~/loaded_unnormalizer` (std_srvs/Trigger) answers with a JSON report of what the last configure
loaded (the `unnormalizer.*` values, `normalized_input`, the published joint order, a configure
`generation` counter, and `pending_changes`: parameters changed since), which execspec_check
verifies before activation. Each message carries the node-clock time
of publishing in `header.stamp` (for replay, the observation time) and `chunk <n>` in
`header.frame_id`. Configure creates the publishers and the timer; GatedLifecycleNode destroys
them through the node, once, at cleanup, shutdown or error, and turns any exception in a
transition into a refusal reported at ERROR.
"""
from __future__ import annotations

import json

import numpy as np
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..core.episodes import read_episodes
from ..core.errors import InputError
from ..core.execspec import PARAM_PREFIX, metadata_from_params, unnormalize
from ..core.faults import apply_drill, parse_drill
from .common import (GatedLifecycleNode, COMMAND_QOS, LATCHED_QOS, declare, duration,
                     require_valid_parameters, run)

SOURCES = ('replay',)
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

    def __init__(self, name: str = 'policy_bridge', **kwargs):
        super().__init__(name, **kwargs)
        self.source = declare(self, 'source', 'replay', f'action source: {", ".join(SOURCES)}')
        self.episodes_file = declare(self, 'episodes_file', '',
                                     'replay: npz, LeRobot dataset or csv')
        self.episode = declare(self, 'episode', -1, 'replay: episode index, -1 plays all in order')
        self.rate_hz = declare(self, 'rate_hz', 0.0, 'publish rate; 0 = the recording fps')
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
        self._pub = self._episode_pub = None
        self._queue: list[tuple[int, np.ndarray]] = []
        self._generation = 0
        self._loaded: dict | None = None
        self.create_service(Trigger, '~/loaded_unnormalizer', self._on_loaded_unnormalizer)

    def unnormalizer_params(self) -> dict:
        """The live unnormalizer parameters that are set."""
        values = {}
        for name in unnormalizer_parameter_names():
            param = self.get_parameter_or(name, None)   # typed parameters may be unset
            value = None if param is None else param.value
            if value is not None and value != '':
                values[name] = value if isinstance(value, (str, int)) else list(value)
        return values

    def configure_node(self) -> None:
        """Load the episodes and the unnormalizer; create (and own) the publishers and timer."""
        self._queue, self._dt, self._names, loaded = self._load()
        self._generation += 1
        self._loaded = {**loaded, 'generation': self._generation}
        self._chunks = 0
        self._pub = self.own(self.create_lifecycle_publisher(JointTrajectory, '/vla/raw_action',
                                                             COMMAND_QOS))
        self._episode_pub = self.own(self.create_lifecycle_publisher(String, '/vla/episode',
                                                                     LATCHED_QOS))
        self.own(self.create_timer(self._dt, self._on_timer))
        self.get_logger().info(f'configured: {len(self._queue)} episode(s) of {len(self._names)} '
                               f'joints at {1 / self._dt:g} Hz, chunk {self.chunk_size}')

    def _live_loaded_values(self) -> dict:
        """The live values of the parameters configure loads (unset ones left out)."""
        return {**self.unnormalizer_params(),
                'normalized_input': bool(self.get_parameter('normalized_input').value)}

    def _load(self):
        require_valid_parameters(self)
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
                  'joint_names': list(names)}
        return played, dt, names, loaded

    def activate_node(self) -> None:
        """Start from the first episode."""
        self._cursor = (0, 0)
        self._announced = False

    def cleanup_node(self) -> None:
        """Forget what was loaded (the base destroys the owned entities)."""
        self._loaded = None
        self._queue = []

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


def main() -> None:
    run(PolicyBridge)
