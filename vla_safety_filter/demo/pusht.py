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
`vla-safety demo --world pusht`: the closed loop over ROS 2, policy server to PushT world.

The built-in nearest-neighbour policy (the drills' `nn:DEMOS`) is served over the openpi protocol
on 127.0.0.1 (or the user's server is used); policy_bridge (`source: openpi`) sends it the
world's state, and its chunks pass execspec_check, the safety_filter (a contract calibrated on the
demonstrations, as the drill calibrates) and the action_monitor to sim_world, which steps PushT.
Each episode starts with sim_world's `~/reset`; the optional fault stops the policy server
mid-episode and restarts it, so the filter must hold and the bridge must recover.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
import re
import shutil
import threading
import time

import numpy as np
import yaml

from .scenario import nested
from .. import names
from ..core.calibration import calibrate
from ..core.checkpoints import write_params_yaml
from ..core.drill.policies import episode_ends, load_demos
from ..core.execspec import Metadata, metadata_to_params
from ..core.params import contract_to_params

JOINTS = ('pusher_x', 'pusher_y')
STATE_JOINTS = ('agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle')
CONTROLLER = 'forward_position_controller'
DT = 0.1                      # PushT's control period (10 Hz)
REPLAN_EVERY = 4              # actions of each chunk executed before the bridge asks again
DEMOS = 'pusht_cchi_v7_replay.npz'
#: the fault: the policy server is down for this long, starting at this share of an episode
OUTAGE_S = 1.5
OUTAGE_AT = 0.3
BRINGUP_ATTEMPTS = 3          # bringups asked for if the autostart did not activate
BRINGUP_WAIT_S = 8.0          # seconds to wait for the first command before asking again
DONE = re.compile(r'done success=(\w+) steps=(\d+) seed=(\d+) coverage=([\d.naif]+)')


@dataclass(frozen=True)
class PushtScenario:
    """The demo's files and settings: parameter file, record, contract, episodes, fault."""

    params_file: str
    record_dir: str
    contract: object
    server_uri: str
    episodes: int
    max_steps: int
    fault: bool
    dt: float = DT


@dataclass
class Run:
    """What the runner did: per-episode outcome and reset times, the outage, activation."""

    resets: list = field(default_factory=list)     # observer time of each ~/reset
    outcomes: list = field(default_factory=list)   # parsed 'done ...' of each episode (or None)
    ends: list = field(default_factory=list)       # observer time of each 'done' (or None)
    outage: tuple | None = None                    # (stop, restart) observer times


def default_demos() -> str:
    """Return the PushT demonstrations beside the repository (or in $VLA_SAFETY_DATA)."""
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.environ.get('VLA_SAFETY_DATA') or os.path.join(here, '..', '..', '..', 'shared',
                                                             'data')
    return os.path.abspath(os.path.join(data, DEMOS))


def calibrate_pusher(demos: str):
    """Contract and calibration data of the pusher's 2 joints on the demonstrations' episodes."""
    actions, _, episodes = load_demos(demos)
    starts = np.flatnonzero(np.r_[True, np.diff(episodes) != 0])
    ends = episode_ends(episodes)[starts]
    return calibrate([actions[s:e] for s, e in zip(starts, ends)], JOINTS, DT)


def prepare(output: str, demos: str, server_uri: str, episodes: int, max_steps: int,
            fault: bool, seed: int = 0) -> PushtScenario:
    """Calibrate, write the identity checkpoint and one ROS parameter file under OUTPUT."""
    os.makedirs(output, exist_ok=True)
    result = calibrate_pusher(demos)
    calibration_file = os.path.abspath(os.path.join(output, 'pusht_calibration.npz'))
    result.data.save(calibration_file)
    # The nn policy answers in pixels: the checkpoint's unnormalizer is the identity.
    identity = Metadata('identity', np.zeros(len(JOINTS), dtype=bool), source='nn policy')
    checkpoint = os.path.abspath(os.path.join(output, 'pusht_checkpoint.yaml'))
    write_params_yaml(checkpoint, identity)
    record_dir = os.path.abspath(os.path.join(output, 'record'))
    shutil.rmtree(record_dir, ignore_errors=True)   # the recorder refuses to overwrite a record
    nodes = _node_params(result.contract, calibration_file, checkpoint, server_uri, max_steps,
                         seed, record_dir)
    nodes['policy_bridge'].update(nested(metadata_to_params(identity)))
    params_file = os.path.abspath(os.path.join(output, 'demo_params.yaml'))
    with open(params_file, 'w') as fh:
        fh.write('# Written by `vla-safety demo --world pusht`\n')
        yaml.safe_dump({node: {'ros__parameters': p} for node, p in nodes.items()}, fh,
                       sort_keys=False, default_flow_style=None, width=100)
    return PushtScenario(params_file, record_dir, result.contract, server_uri, episodes,
                         max_steps, fault)


def _node_params(contract, calibration_file, checkpoint, server_uri, max_steps, seed,
                 record_dir) -> dict:
    """Every node's ROS parameters (the bridge's unnormalizer is added by the caller)."""
    return {
        'sim_world': {'world': 'pusht', 'joint_names': list(JOINTS), 'seed': seed,
                      'max_steps': max_steps, 'controller_name': CONTROLLER,
                      'wait_for_command': True},
        'safety_filter': {**contract_to_params(contract, calibration_file),
                          'controller_name': CONTROLLER, 'output': 'forward_command',
                          'command_timeout': 0.5},
        'action_monitor': {'calibration_file': calibration_file, 'profile': 'generic',
                           'stop_on': 'none', 'diagnostic_period': 0.2},
        'policy_bridge': {'source': 'openpi', 'server_uri': server_uri,
                          'state_topic': names.WORLD_STATE, 'state_joints': list(STATE_JOINTS),
                          'joint_names': list(JOINTS), 'rate_hz': 1.0 / (DT * REPLAN_EVERY),
                          'replan_every': REPLAN_EVERY, 'request_timeout': 1.0},
        'execspec_check': {'checkpoint': checkpoint, 'format': 'yaml',
                           'policy_outputs_normalized': False},
        'flight_recorder': {'output': record_dir, 'controller_name': CONTROLLER},
    }


class LocalServer:
    """The built-in nn policy over openpi on 127.0.0.1; can be stopped and restarted in place."""

    def __init__(self, demos: str, port: int = 0):
        from ..core.drill.policies import NearestNeighbourPolicy

        self._policy = NearestNeighbourPolicy(demos)
        self._server = None
        self.port = port
        self.start()

    @property
    def uri(self) -> str:
        return f'ws://127.0.0.1:{self.port}'

    def start(self) -> None:
        """Serve (again) on the same port, so the bridge's server_uri stays right."""
        from ..core.policy_server import make_server

        self._server = make_server('openpi', self._policy, '127.0.0.1', self.port,
                                   {'server': 'vla-safety demo', 'policy': 'nn'}).start()
        self.port = self._server.address[1]

    def stop(self) -> None:
        """Stop serving and drop every connection (the fault the bridge must survive)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def close(self) -> None:
        self.stop()
        self._policy.close()


def parse_done(text: str) -> dict | None:
    """sim_world's `done success=.. steps=.. seed=.. coverage=..` as a dict (None otherwise)."""
    match = DONE.match(text)
    if match is None:
        return None
    success, steps, seed, coverage = match.groups()
    return {'success': success == 'true', 'steps': int(steps), 'seed': int(seed),
            'coverage': float(coverage)}


def run_graph(scenario: PushtScenario, domain_id: int, timeout: float, server=None,
              record: bool = True):
    """Start the graph, run the episodes (with the outage), return (observed, run)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    import rclpy.logging

    from ..nodes.common import spin_until_shutdown
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    context = Context()
    level = rclpy.logging.get_logger_effective_level('')
    rclpy.init(args=['vla-safety-demo', '--ros-args', '--params-file', scenario.params_file,
                     '--log-level', 'error'], context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    nodes = _nodes(context, record)
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor, context), daemon=True)
    spinner.start()
    try:
        done = _episodes(nodes[0], scenario, time.monotonic() + timeout, server)
    finally:
        context.try_shutdown()
        # --log-level is process-wide and outlives the context: give the process its level back
        rclpy.logging.set_logger_level('', level)
        spinner.join(timeout=5)
        for node in reversed(nodes):
            node.destroy_node()
    return nodes[0].snapshot(), done


def _nodes(context, record: bool) -> list:
    """Observer first, then recorder, world, monitor, filter, bridge and the manager last."""
    from ..nodes.action_monitor import ActionMonitorNode
    from ..nodes.execspec_check import ExecSpecCheck
    from ..nodes.policy_bridge import PolicyBridge
    from ..nodes.safety_filter import SafetyFilter
    from ..nodes.sim_world import SimWorld
    from .pusht_observer import PushtObserver
    nodes = [PushtObserver(JOINTS, CONTROLLER, context=context)]
    if record:
        from ..nodes.flight_recorder import FlightRecorder
        nodes.append(FlightRecorder(context=context))
    classes = (SimWorld, ActionMonitorNode, SafetyFilter, PolicyBridge, ExecSpecCheck)
    return nodes + [cls(context=context) for cls in classes]


def _episodes(observer, scenario: PushtScenario, deadline: float, server) -> Run:
    """Wait for the first command, then start and run each episode until sim_world says done."""
    run = Run()
    if not _first_command(observer, deadline):
        return run     # never activated (refused, or no server): the summary says so
    for k in range(scenario.episodes):
        start = _next_episode(observer, scenario, deadline)
        if start is None:
            break
        run.resets.append(start)
        if k == 0 and scenario.fault and server is not None:
            run.outage = _outage(observer, server, scenario, deadline)
        done = _wait(lambda: observer.done_after(run.resets[-1]), deadline)
        run.outcomes.append(parse_done(done[1]) if done else None)
        run.ends.append(done[0] if done else None)
        if done is None:
            break
    time.sleep(0.5)   # the last diagnostics and events
    return run


def _first_command(observer, deadline: float) -> bool:
    """
    Wait for the pipeline's first command, asking the manager to bring it up again if needed.

    The manager's autostart can come before DDS discovery has brought sim_world's /joint_states
    to the filter (which then refuses to activate); `~/bringup` is the documented retry. A
    refusal that persists (wrong metadata, no server) still ends with no command.
    """
    for _ in range(BRINGUP_ATTEMPTS):
        attempt_end = min(deadline, time.monotonic() + BRINGUP_WAIT_S)
        if _wait(lambda: observer.snapshot().commands, attempt_end):
            return True
        if time.monotonic() >= deadline:
            return False
        observer.trigger('/execspec_check/bringup', deadline)
    return bool(_wait(lambda: observer.snapshot().commands, deadline))


def _next_episode(observer, scenario: PushtScenario, deadline: float) -> float | None:
    """
    Pause the pipeline, reset the world to the next seed, resume; None if a step failed.

    Returns the episode's start in observer time: after the reset, before the bringup, so every
    command of the new activation (some may arrive before the bringup call returns) is after it
    and every braking row of the last one before it.

    Nothing of the last episode may act in the next, as in the drill: the manager's teardown
    drops the bridge's reply in flight and stops the filter (its braking rows are waited out
    before the reset), and bringup re-checks the bridge and re-seeds the filter from the new
    episode's /joint_states (two world periods after the reset).
    """
    if not observer.trigger('/execspec_check/teardown', deadline):
        return None
    quiet = 3 * scenario.dt
    _wait(lambda: observer.now() - (observer.last_command_time() or 0.0) > quiet, deadline)
    if not observer.trigger('/sim_world/reset', deadline):
        return None
    time.sleep(2 * scenario.dt)
    start = observer.now()
    return start if observer.trigger('/execspec_check/bringup', deadline) else None


def _outage(observer, server, scenario: PushtScenario, deadline: float) -> tuple:
    """Stop the policy server part-way through the episode and restart it OUTAGE_S later."""
    start = observer.now()
    _wait(lambda: observer.now() - start >= OUTAGE_AT * scenario.max_steps * scenario.dt
          or observer.done_after(start), deadline)
    server.stop()
    stopped = observer.now()
    time.sleep(OUTAGE_S)
    server.start()
    return stopped, observer.now()


def _wait(predicate, deadline: float, period: float = 0.05):
    """Poll until PREDICATE is truthy (its value) or the deadline passes (None)."""
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return None
