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
Cost of the per-step guard on the real ALOHA stream and of calibrating 1 M x 14 steps.

Run by hand: `python bench/guard_bench.py [--json] [--repeat N]`. Prints median and p99 µs per
guarded action at D = 7 and 14, seconds to calibrate 1,000,000 x 14 frames, and the cost of each
optional limit at D = 14 (median µs and ratio to the position/velocity-only guard, measured in the
same run, passes interleaved so machine load hits every variant alike).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np

from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.contract import Contract, Guard

DATA = os.path.join(os.path.dirname(__file__), '..', 'vla_safety_filter', 'data',
                    'aloha_sim_4ep.npz')
ARM7 = os.path.join(os.path.dirname(__file__), '..', 'test', 'data', 'arm7.urdf')
FPS = 50.0


def aloha_actions() -> np.ndarray:
    """Return the real ALOHA action stream [1700, 14]."""
    with np.load(DATA, allow_pickle=False) as z:
        return z['actions'].astype(np.float64)


def contract_for(actions: np.ndarray) -> Contract:
    """Return the contract `calibrate` derives from the same real episodes (in distribution)."""
    with np.load(DATA, allow_pickle=False) as z:
        index = z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    names = tuple(f'j{i}' for i in range(actions.shape[1]))
    return calibrate(episodes, names, dt=1.0 / FPS, holdout=0.0).contract


def time_guard(actions: np.ndarray, contract: Contract, repeat: int) -> tuple[np.ndarray, float]:
    """Per-action wall time (µs) of Guard.step and interventions per action."""
    guard = Guard(contract)
    rows = list(actions)
    samples = np.empty(repeat * len(rows))
    clock = time.perf_counter_ns
    k = 0
    for _ in range(repeat):
        guard.reset(guard.contract.project_into_bounds(rows[0]))
        for a in rows:
            t0 = clock()
            guard.step(a)
            samples[k] = clock() - t0
            k += 1
    changed = sum(guard.counts.values()) / (repeat * len(rows))
    return samples / 1000.0, changed


def time_calibration(n_frames: int, dim: int) -> float:
    """Seconds to calibrate n_frames x dim steps of resampled real motion in 1,000 episodes."""
    base = aloha_actions()[:, :dim]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(base) - 1, size=n_frames)
    frames = base[idx] + rng.normal(0, 1e-3, size=(n_frames, dim))
    episodes = np.array_split(frames, 1000)
    t0 = time.perf_counter()
    calibrate(episodes, tuple(f'j{i}' for i in range(dim)), dt=1.0 / FPS)
    return time.perf_counter() - t0


def rate_limits(actions: np.ndarray, order: int) -> np.ndarray:
    """Return 1.5 x the 99th percentile of the stream's |d^order a / dt^order| per joint."""
    rates = np.diff(actions, n=order, axis=0) * FPS ** order
    return 1.5 * np.percentile(np.abs(rates), 99, axis=0) + 1e-6


def workspace(names: tuple, size: float):
    """Return a Workspace on the first seven joints (a 7-joint arm URDF), a box of `size` m."""
    from vla_safety_filter.core.kinematics import UrdfKinematics
    from vla_safety_filter.core.workspace import Workspace
    urdf_names = tuple(f'joint{i}' for i in range(1, 8)) + names[7:]
    fk = UrdfKinematics(ARM7, 'tool', urdf_names)
    centre = fk(np.zeros(len(names)))
    return Workspace(centre - size, centre + size, fk)


def optional_contracts(base: Contract, actions: np.ndarray) -> dict:
    """Return the D = 14 contract with each optional limit alone, and with all of them."""
    acc, jerk = rate_limits(actions, 2), rate_limits(actions, 3)
    inset = 0.05 * (base.upper - base.lower)
    soft = {'soft_lower': base.lower + inset, 'soft_upper': base.upper - inset,
            'k_position': np.full(base.dim, 10.0)}
    variants = {
        'position_velocity': {},
        'braking_acceleration': {'max_acceleration': acc},
        'deceleration': {'max_acceleration': acc, 'max_deceleration': 2.0 * acc},
        'soft_limits': soft,
        'jerk': {'max_acceleration': acc, 'max_jerk': jerk},
        'uniform_scaling': {'velocity_scaling': 'uniform'},
    }
    try:
        variants['workspace'] = {'workspace': workspace(base.joint_names, 10.0)}
        variants['workspace_cutting'] = {'workspace': workspace(base.joint_names, 0.02)}
    except Exception as exc:   # no pinocchio: report the rest
        print(f'workspace not timed: {exc}')
    every = {'max_acceleration': acc, 'max_deceleration': 2.0 * acc, 'max_jerk': jerk, **soft}
    if 'workspace' in variants:
        every['workspace'] = variants['workspace']['workspace']
    variants['all'] = every
    return {name: dataclasses.replace(base, **fields) for name, fields in variants.items()}


def time_optional_limits(actions: np.ndarray, base: Contract, rounds: int) -> dict:
    """Return median µs, ratio to position/velocity only and interventions per action by limit."""
    contracts = optional_contracts(base, actions)
    samples = {name: [] for name in contracts}
    changed = dict.fromkeys(contracts, 0.0)
    for _ in range(rounds):
        for name, contract in contracts.items():
            us, rate = time_guard(actions, contract, 1)
            samples[name].append(us)
            changed[name] += rate / rounds
    medians = {name: float(np.median(np.concatenate(s))) for name, s in samples.items()}
    base_us = medians['position_velocity']
    return {name: {'median_us': round(us, 3), 'ratio': round(us / base_us, 2),
                   'interventions_per_action': round(changed[name], 4)}
            for name, us in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--repeat', type=int, default=20, help='passes over the 1,700-step stream')
    args = parser.parse_args()
    actions = aloha_actions()
    result = {'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
                         f'Python {platform.python_version()}, numpy {np.__version__}'}
    for d in (7, 14):
        contract = contract_for(actions[:, :d])
        us, changed = time_guard(actions[:, :d], contract, args.repeat)
        result[f'guard_us_median_d{d}'] = round(float(np.median(us)), 3)
        result[f'guard_us_p99_d{d}'] = round(float(np.percentile(us, 99)), 3)
        result[f'guard_interventions_per_action_d{d}'] = round(changed, 4)
    # every action far outside the contract: the intervention path with its event records
    us, changed = time_guard(actions * 3.0, contract, max(1, args.repeat // 4))
    result['guard_us_median_d14_all_intervened'] = round(float(np.median(us)), 3)
    result['optional_limits_d14'] = time_optional_limits(actions, contract, args.repeat)
    result['calibration_s_1m_x14'] = round(time_calibration(1_000_000, 14), 3)
    result['target_guard_us_median_d14'] = 3.0
    result['target_calibration_s_1m_x14'] = 2.0
    result['ratio_guard_vs_target'] = round(result['guard_us_median_d14'] / 3.0, 2)
    result['ratio_calibration_vs_target'] = round(result['calibration_s_1m_x14'] / 2.0, 2)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key == 'optional_limits_d14':
            print('optional limits at D = 14 (median µs, ratio to position/velocity only, '
                  'interventions per action):')
            for name, row in value.items():
                print(f'  {name:22s} {row["median_us"]:8.3f} {row["ratio"]:6.2f}x '
                      f'{row["interventions_per_action"]:.4f}')
            continue
        print(f'{key:34s} {value}')


if __name__ == '__main__':
    main()
