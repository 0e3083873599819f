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
The demo's files: checkpoint, policy outputs, contract, calibration and one ROS parameter file.

The bundled ALOHA insertion episode is turned into the normalized outputs an ACT/OpenVLA-OFT
policy trained on ALOHA insertion would emit (min/max bounds of the 50-episode dataset), so the
bridge must unnormalize them with the checkpoint's statistics. `wrong_metadata` configures the
bridge with the sibling key's statistics (transfer cube), the deployment slip ExecSpec exists to
refuse.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
import shutil

import numpy as np
import yaml

from ..core.calibration import calibrate
from ..core.checkpoints import load_metadata
from ..core.contract import Contract
from ..core.episodes import read_episodes
from ..core.execspec import check_metadata, metadata_to_params, normalize
from ..core.faults import DrillFault, parse_drill
from ..core.limits import HardwareLimits
from ..core.params import contract_to_params
from ..names import DEFAULT_CONTROLLER

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
EPISODES = os.path.join(DATA, 'aloha_sim_4ep.npz')
STATISTICS = os.path.join(DATA, 'aloha_action_stats.json')
KEY = 'aloha_sim_insertion_human'
SIBLING_KEY = 'aloha_sim_transfer_cube_human'
NORMALIZATION = 'BOUNDS'   # OpenVLA-OFT's min/max normalization
DRILL = ('unnormalized@2.0', 'oscillation@5.0', 'nan@8.0')
ALPHA = 0.01
ALOHA_JOINTS = tuple(f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper'))


@dataclass
class Scenario:
    """What the demo runs: parameter file, contract, seed pose, drill and where things go."""

    params_file: str
    record_dir: str
    contract: Contract
    seed_pose: np.ndarray
    drill: list[DrillFault]
    dt: float
    n_steps: int
    episode: int
    key: str
    certificate: dict   # core.execspec's report for the bridge's unnormalizer vs the checkpoint


def prepare(output: str, wrong_metadata: bool = False, drill=DRILL, seed: int = 0) -> Scenario:
    """Write the demo's inputs under `output` and return the scenario."""
    os.makedirs(output, exist_ok=True)
    data = read_episodes(EPISODES)
    dt = 1.0 / data.fps
    episode = data.episodes[0]   # episode 0 of aloha_sim_insertion_human
    names = ALOHA_JOINTS

    checkpoint = os.path.join(output, 'checkpoint')
    os.makedirs(checkpoint, exist_ok=True)
    shutil.copyfile(STATISTICS, os.path.join(checkpoint, 'dataset_statistics.json'))
    reference = load_metadata(checkpoint, 'openvla-oft', KEY, NORMALIZATION)
    key = SIBLING_KEY if wrong_metadata else KEY
    deployed = load_metadata(checkpoint, 'openvla-oft', key, NORMALIZATION)

    outputs = normalize(reference, episode.actions)
    policy_file = os.path.join(output, 'policy_outputs.npz')
    np.savez(policy_file, actions=outputs.astype(np.float32),
             episode_index=np.zeros(len(outputs), dtype=np.int64),
             timestamps=np.arange(len(outputs)) * dt)

    # Contract: conformal over the four bundled episodes (the replayed one among them), inside the
    # 50-episode dataset's action range as the hardware-ish limit.
    none = np.full(len(names), np.nan)
    hardware = HardwareLimits(reference.low, reference.high, none, none, source=f'{KEY} min/max')
    result = calibrate([e.actions for e in data.episodes], names, dt, alpha=ALPHA, holdout=0.0,
                       hardware=hardware)
    contract = result.contract
    calibration_file = os.path.abspath(os.path.join(output, 'aloha_calibration.npz'))
    result.data.save(calibration_file)
    start = episode.state[0] if episode.state is not None else episode.actions[0]
    seed_pose = contract.project_into_bounds(start)

    record_dir = os.path.abspath(os.path.join(output, 'record'))
    shutil.rmtree(record_dir, ignore_errors=True)   # the recorder refuses to overwrite a record
    faults = list(drill)
    nodes = {
        'sim_arm': {'joint_names': list(names), 'initial_positions': seed_pose.tolist(),
                    'rate_hz': 100.0, 'controller_name': DEFAULT_CONTROLLER},
        'safety_filter': {**contract_to_params(contract, calibration_file),
                          'controller_name': DEFAULT_CONTROLLER, 'output': 'forward_command',
                          'command_timeout': 0.1},
        'action_monitor': {'calibration_file': calibration_file, 'profile': 'generic',
                           'stop_on': 'none', 'diagnostic_period': 0.2},
        'policy_bridge': {'source': 'replay', 'episodes_file': os.path.abspath(policy_file),
                          'episode': 0, 'joint_names': list(names), 'normalized_input': True,
                          **({'faults': faults, 'fault_seed': seed} if faults else {}),
                          **nested(metadata_to_params(deployed))},
        'execspec_check': {'checkpoint': os.path.abspath(checkpoint), 'format': 'openvla-oft',
                           'normalization_type': NORMALIZATION, 'unnorm_key': KEY},
        'flight_recorder': {'output': record_dir, 'controller_name': DEFAULT_CONTROLLER},
    }
    params_file = os.path.join(output, 'demo_params.yaml')
    with open(params_file, 'w') as fh:
        fh.write('# Written by `vla-safety demo`; run it yourself with\n'
                 f'#   vla-safety bringup --params {params_file} --with-sim-arm\n')
        yaml.safe_dump({node: {'ros__parameters': p} for node, p in nodes.items()}, fh,
                       sort_keys=False, default_flow_style=None, width=100)
    return Scenario(params_file=params_file, record_dir=record_dir, contract=contract,
                    seed_pose=seed_pose, drill=parse_drill(faults, dt, len(outputs)), dt=dt,
                    n_steps=len(outputs), episode=episode.index, key=key,
                    certificate=check_metadata(reference, deployed).to_report())


def nested(dotted: dict) -> dict:
    """`unnormalizer.low` style names -> the nested map a ROS parameter file uses."""
    nested: dict = {}
    for name, value in dotted.items():
        head, _, tail = name.partition('.')
        nested.setdefault(head, {})[tail] = value
    return nested
