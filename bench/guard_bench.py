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

"""Cost of the per-step guard on the real ALOHA stream and of calibrating 1 M x 14 steps.

Run by hand: `python bench/guard_bench.py [--json] [--repeat N]`. Prints median and p99 µs per
guarded action at D = 7 and 14 and seconds to calibrate 1,000,000 x 14 frames.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.contract import Contract, Guard

DATA = os.path.join(os.path.dirname(__file__), '..', 'vla_safety_filter', 'data', 'aloha_sim_4ep.npz')
FPS = 50.0


def aloha_actions() -> np.ndarray:
    with np.load(DATA, allow_pickle=False) as z:
        return z['actions'].astype(np.float64)


def contract_for(actions: np.ndarray) -> Contract:
    """The contract `calibrate` derives from the same real episodes (in-distribution stream)."""
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
    result['calibration_s_1m_x14'] = round(time_calibration(1_000_000, 14), 3)
    result['target_guard_us_median_d14'] = 3.0
    result['target_calibration_s_1m_x14'] = 2.0
    result['ratio_guard_vs_target'] = round(result['guard_us_median_d14'] / 3.0, 2)
    result['ratio_calibration_vs_target'] = round(result['calibration_s_1m_x14'] / 2.0, 2)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f'{key:34s} {value}')


if __name__ == '__main__':
    main()
