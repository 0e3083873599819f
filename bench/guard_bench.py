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

Run by hand: `python bench/guard_bench.py [--json] [--repeat N] [--baseline REV]`. Prints the
median and p99 µs per guarded action at D = 7, 14 and 28 for feasible requests (the guard's own
executed stream replayed: every request passes) and clipped ones (the stream x 3: every action
intervened), the same with jittered elapsed times (as the ROS filter calls it), the floor of the
fast path (a bare loop of its numpy calls), the cost of each optional limit at D = 14 (ratio to
the position/velocity-only guard), the executive's cost per control step (a chunk every H steps,
a measured position and a tick per step, as the drill and the safety_filter node drive it) on
real PushT demos at 10 Hz (the drill's pattern) and real ALOHA at 50 Hz with chunks of 8 and 50
and a timer's jitter, seconds to calibrate 1,000,000 x 14 frames, and the load average. With
`--baseline REV` the guard and executive of that revision (a `git worktree` in a temp dir) run in
the same process, passes interleaved with the current ones so machine load hits both alike, and
every figure gets its ratio baseline / current. The workspace box (pinocchio forward kinematics)
is reported apart, outside the 3 µs target.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from vla_safety_filter.core import contract as current
from vla_safety_filter.core.calibration import calibrate

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
DATA = os.path.join(ROOT, 'vla_safety_filter', 'data', 'aloha_sim_4ep.npz')
SHARED = os.environ.get('VLA_SAFETY_DATA') or os.path.join(ROOT, '..', 'shared', 'data')
PUSHT = os.path.join(SHARED, 'pusht_cchi_v7_replay.npz')
PUSHT_EPISODES = 20
#: issue 11: filter + monitor <= 10 % of PushT's ~250 µs world step; the filter's share
TARGET_EXECUTIVE_US = 10.0
ARM7 = os.path.join(ROOT, 'test', 'data', 'arm7.urdf')
FPS = 50.0
#: the public SafeContract toolkit's guard, enforcement only, D = 14 (README, an earlier session
#: on these machines; the toolkit is not in this repository, so it is not re-run here)
SEED_TOOLKIT_US_D14 = 45.0
TARGET_US_D14 = 3.0


def aloha_actions() -> np.ndarray:
    """Return the real ALOHA action stream [1700, 14]."""
    with np.load(DATA, allow_pickle=False) as z:
        return z['actions'].astype(np.float64)


def stream(dim: int) -> np.ndarray:
    """Return D columns of real motion: ALOHA, and for D > 14 a second arm 400 steps later."""
    actions = aloha_actions()
    if dim > actions.shape[1]:
        actions = np.hstack([actions, np.roll(actions, 400, axis=0)])
    return actions[:, :dim]


def contract_for(actions: np.ndarray) -> current.Contract:
    """Return the contract `calibrate` derives from the same real episodes (in distribution)."""
    with np.load(DATA, allow_pickle=False) as z:
        index = z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    names = tuple(f'j{i}' for i in range(actions.shape[1]))
    return calibrate(episodes, names, dt=1.0 / FPS, holdout=0.0).contract


def executed(contract: current.Contract, actions: np.ndarray) -> np.ndarray:
    """Return what the guard executes for `actions`: replayed, every request is feasible."""
    guard = current.Guard(contract)
    guard.reset(contract.project_into_bounds(actions[0]))
    return guard.run(actions)[0]


def time_guard(module, contract, actions: np.ndarray, repeat: int,
               elapsed: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """
    Return per-action wall times (µs) of `module`.Guard.step, interventions per action, CPU µs.

    The CPU time (this thread's, over whole passes, so time the scheduler gave to other
    processes is left out) is a mean per action; it includes reading the wall clock twice.
    """
    guard = module.Guard(contract)
    rows = list(actions)
    times = [None] * len(rows) if elapsed is None else [float(e) for e in elapsed]
    samples = np.empty(repeat * len(rows))
    clock = time.perf_counter_ns
    k, cpu = 0, 0
    for _ in range(repeat):
        guard.reset(contract.project_into_bounds(rows[0]))
        start = time.thread_time_ns()
        for a, h in zip(rows, times):
            t0 = clock()
            guard.step(a, h)
            samples[k] = clock() - t0
            k += 1
        cpu += time.thread_time_ns() - start
    changed = sum(guard.counts.values()) / (repeat * len(rows))
    return samples / 1000.0, changed, cpu / 1000.0 / len(samples)


def load_baseline(rev: str, workdir: str):
    """Return the contract module of revision `rev`, checked out as a git worktree in workdir."""
    subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '--quiet', workdir, rev],
                   check=True)
    package = os.path.join(workdir, 'vla_safety_filter')
    spec = importlib.util.spec_from_file_location(
        'guard_baseline', os.path.join(package, '__init__.py'),
        submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules['guard_baseline'] = module
    spec.loader.exec_module(module)
    return importlib.import_module('guard_baseline.core.contract')


@contextlib.contextmanager
def baseline(rev: str | None):
    """Yield the baseline's contract module (None without a revision); remove its worktree."""
    if rev is None:
        yield None
        return
    workdir = tempfile.mkdtemp(prefix='guard_baseline_')
    try:
        yield load_baseline(rev, workdir)
    finally:
        subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', workdir],
                       check=False)


def as_module_contract(module, contract: current.Contract):
    """Return `contract` as `module`'s Contract (fields the baseline lacks must be unset)."""
    if module is current:
        return contract
    known = {f.name for f in dataclasses.fields(module.Contract)}
    fields = {f.name: getattr(contract, f.name) for f in dataclasses.fields(contract)}
    extra = [k for k, v in fields.items() if k not in known and v is not None]
    if extra:
        raise ValueError(f'baseline has no {extra}')
    return module.Contract(**{k: v for k, v in fields.items() if k in known})


def compare(cases: dict, modules: dict, repeat: int) -> dict:
    """
    Time every case with every guard module, passes interleaved; return figures per case.

    `cases` maps a name to (contract, actions, elapsed or None); each figure has the median
    and p99 µs per step, the mean CPU µs per step, interventions per action and, with a
    baseline, its median / ours and its CPU time / ours.
    """
    samples = {(case, mod): [] for case in cases for mod in modules}
    changed, cpu = dict.fromkeys(samples, 0.0), dict.fromkeys(samples, 0.0)
    for _ in range(repeat):
        for case, (contract, actions, elapsed) in cases.items():
            for mod, module in modules.items():
                try:
                    c = as_module_contract(module, contract)
                except ValueError:
                    continue
                us, rate, cpu_us = time_guard(module, c, actions, 1, elapsed)
                samples[case, mod].append(us)
                changed[case, mod] += rate / repeat
                cpu[case, mod] += cpu_us / repeat
    result = {}
    for case in cases:
        us = np.concatenate(samples[case, 'current'])
        row = {'median_us': round(float(np.median(us)), 3),
               'p99_us': round(float(np.percentile(us, 99)), 3),
               'cpu_mean_us': round(cpu[case, 'current'], 3),
               'interventions_per_action': round(changed[case, 'current'], 4)}
        if samples.get((case, 'baseline')):
            base = np.concatenate(samples[case, 'baseline'])
            row['baseline_median_us'] = round(float(np.median(base)), 3)
            row['speedup_vs_baseline'] = round(float(np.median(base) / np.median(us)), 2)
            row['baseline_cpu_mean_us'] = round(cpu[case, 'baseline'], 3)
            row['cpu_speedup_vs_baseline'] = round(cpu[case, 'baseline'] / cpu[case, 'current'],
                                                   2)
        result[case] = row
    return result


def executive_of(contract_module):
    """Return the executive module beside a contract module (current or baseline)."""
    return importlib.import_module(contract_module.__name__.rsplit('.', 1)[0] + '.executive')


def replay_executive(module, contract, episodes: list, horizon: int,
                     jitter: float) -> tuple[float, int]:
    """
    Drive `module`.Executive over episodes; return this thread's CPU µs and the steps.

    A chunk of the next `horizon` actions every `horizon` steps, then per step the measured
    position (the last command: a tracking arm) and a tick at k dt, off by up to `jitter`
    periods (a timer's jitter; 0: the drill's exact times).
    """
    dt, steps, cpu = contract.dt, 0, 0
    rng = np.random.default_rng(0)
    for actions in episodes:
        times = (np.arange(len(actions)) + rng.uniform(-jitter, jitter, len(actions))) * dt
        offsets = dt * np.arange(1, horizon + 1)
        executive = module.Executive(contract)
        executive.observe(actions[0], times[0])
        executive.start(times[0])
        position = actions[0]
        start = time.thread_time_ns()
        for k, now in enumerate(times.tolist()):
            if k % horizon == 0:
                chunk = actions[k:k + horizon]
                executive.on_chunk(chunk, offsets[:len(chunk)], now)
            executive.observe(position, now)
            command = executive.tick(now).command
            if command is not None:
                position = command
        cpu += time.thread_time_ns() - start
        steps += len(actions)
    return cpu / 1000.0, steps


def pusht_episodes() -> tuple[current.Contract, list]:
    """Return the contract calibrated on the real PushT demos and their first episodes."""
    with np.load(PUSHT, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    episodes = [actions[index == i] for i in np.unique(index)]
    contract = calibrate(episodes, ('x', 'y'), dt=0.1, holdout=0.0).contract
    return contract, episodes[:PUSHT_EPISODES]


def executive_cases() -> dict:
    """Return name: (contract, episodes, horizon, jitter) of the executive's figures."""
    cases = {}
    if os.path.exists(PUSHT):
        contract, episodes = pusht_episodes()
        cases['pusht_10hz_chunk8_drill'] = (contract, episodes, 8, 0.0)
    else:
        print(f'executive on PushT not timed: {PUSHT} not found', file=sys.stderr)
    actions = stream(14)
    with np.load(DATA, allow_pickle=False) as z:
        index = z['episode_index']
    aloha = [actions[index == i] for i in np.unique(index)]
    contract = contract_for(actions)
    for horizon in (8, 50):
        cases[f'aloha_50hz_chunk{horizon}_jitter'] = (contract, aloha, horizon, 0.05)
    return cases


def compare_executive(cases: dict, modules: dict, repeat: int) -> dict:
    """Return per case the median CPU µs per control step over passes (and the baseline's)."""
    samples = {(case, mod): [] for case in cases for mod in modules}
    for _ in range(repeat):
        for case, (contract, episodes, horizon, jitter) in cases.items():
            for mod, module in modules.items():
                try:
                    c = as_module_contract(module, contract)
                except ValueError:
                    continue
                cpu, steps = replay_executive(executive_of(module), c, episodes, horizon, jitter)
                samples[case, mod].append(cpu / steps)
    result = {}
    for case in cases:
        row = {'us_per_step': round(float(np.median(samples[case, 'current'])), 3),
               'best_us_per_step': round(float(np.min(samples[case, 'current'])), 3)}
        if samples.get((case, 'baseline')):
            base = float(np.median(samples[case, 'baseline']))
            row['baseline_us_per_step'] = round(base, 3)
            row['speedup_vs_baseline'] = round(base / row['us_per_step'], 2)
        result[case] = row
    return result


def fast_path_floor(dim: int = 14, steps: int = 20000) -> float:
    """
    Return the median µs of a bare loop of the guard's fast-path numpy calls (D = dim).

    What a feasible step cannot go below in Python: the copy of the request, [a | -a | a | -a]
    built in place, one comparison with the box and its bytes, the next box's one addition.
    """
    a = np.linspace(-1.0, 1.0, dim)
    buf, box, off = np.empty(4 * dim), np.full(4 * dim, -10.0), np.full(2 * dim, -0.1)
    mask = np.empty(4 * dim, dtype=bool)
    pair, head, tail, again, reach = buf[:2 * dim], buf[:dim], buf[dim:2 * dim], \
        buf[2 * dim:], box[2 * dim:]
    samples = np.empty(steps)
    clock = time.perf_counter_ns
    for k in range(steps):
        t0 = clock()
        request = a.copy()
        head[:] = request
        np.negative(request, tail)
        again[:] = pair
        np.greater_equal(buf, box, mask).tobytes()
        np.add(pair, off, reach)
        samples[k] = clock() - t0
    return float(np.median(samples)) / 1000.0


def jittered(n: int, seed: int = 0) -> np.ndarray:
    """Return elapsed times of dt +- 5 % (a timer's jitter): the ROS filter passes them."""
    return (1.0 + np.random.default_rng(seed).uniform(-0.05, 0.05, n)) / FPS


def core_cases() -> dict:
    """Return feasible / clipped / jittered cases at D = 7, 14, 28, position/velocity only."""
    cases = {}
    for dim in (7, 14, 28):
        actions = stream(dim)
        contract = contract_for(actions)
        cases[f'd{dim}_feasible'] = (contract, executed(contract, actions), None)
        cases[f'd{dim}_clipped'] = (contract, actions * 3.0, None)
        if dim == 14:
            cases['d14_real'] = (contract, actions, None)
            cases['d14_real_jittered_elapsed'] = (contract, actions, jittered(len(actions)))
    return cases


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


def optional_contracts(base: current.Contract, actions: np.ndarray) -> dict:
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
        'all': {'max_acceleration': acc, 'max_deceleration': 2.0 * acc, 'max_jerk': jerk, **soft},
    }
    try:
        variants['workspace'] = {'workspace': workspace(base.joint_names, 10.0)}
        variants['workspace_cutting'] = {'workspace': workspace(base.joint_names, 0.02)}
    except Exception as exc:   # no pinocchio: report the rest
        print(f'workspace not timed: {exc}', file=sys.stderr)
    return {name: dataclasses.replace(base, **fields) for name, fields in variants.items()}


def limit_cases(actions: np.ndarray, base: current.Contract) -> dict:
    """Return the real D = 14 stream under each optional limit (see optional_contracts)."""
    return {name: (contract, actions, None)
            for name, contract in optional_contracts(base, actions).items()}


def summary(result: dict) -> dict:
    """Return the headline figures: D = 14 feasible median against 3 µs and the seed toolkit."""
    feasible = result['guard']['d14_feasible']['median_us']
    drill = result['executive'].get('pusht_10hz_chunk8_drill', {}).get('us_per_step')
    return {'target_guard_us_median_d14': TARGET_US_D14,
            'guard_fast_path_floor_us_d14': result['guard_floor_us_d14'],
            'target_executive_us_per_step': TARGET_EXECUTIVE_US,
            'ratio_executive_drill_vs_target': None if drill is None else
            round(drill / TARGET_EXECUTIVE_US, 2),
            'ratio_guard_vs_target': round(feasible / TARGET_US_D14, 2),
            'seed_toolkit_us_d14_stored': SEED_TOOLKIT_US_D14,
            'speedup_vs_seed_toolkit_stored': round(SEED_TOOLKIT_US_D14 / feasible, 1),
            'target_calibration_s_1m_x14': 2.0,
            'ratio_calibration_vs_target': round(result['calibration_s_1m_x14'] / 2.0, 2)}


def print_table(title: str, rows: dict) -> None:
    """Print one table of figures per case."""
    print(title)
    for name, row in rows.items():
        line = (f'  {name:26s} median {row["median_us"]:7.2f} p99 {row["p99_us"]:8.2f} '
                f'cpu {row["cpu_mean_us"]:7.2f} '
                f'changed/step {row["interventions_per_action"]:.3f}')
        if 'speedup_vs_baseline' in row:
            line += (f'  baseline median {row["baseline_median_us"]:7.2f} '
                     f'x{row["speedup_vs_baseline"]:.2f} cpu {row["baseline_cpu_mean_us"]:7.2f} '
                     f'x{row["cpu_speedup_vs_baseline"]:.2f}')
        if 'ratio' in row:
            line += f'  x{row["ratio"]:.2f} of position/velocity'
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--repeat', type=int, default=10, help='passes over the 1,700-step stream')
    parser.add_argument('--baseline', metavar='REV', help='git revision to compare against')
    parser.add_argument('--no-calibration', action='store_true', help='skip the calibration')
    args = parser.parse_args()
    result = {'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
                         f'Python {platform.python_version()}, numpy {np.__version__}',
              'load_average_start': [round(x, 2) for x in os.getloadavg()],
              'baseline': args.baseline}
    with baseline(args.baseline) as base_module:
        modules = {'current': current}
        if base_module is not None:
            modules['baseline'] = base_module
        result['guard'] = compare(core_cases(), modules, args.repeat)
        result['guard_floor_us_d14'] = round(fast_path_floor(), 3)
        result['executive'] = compare_executive(executive_cases(), modules,
                                                max(3, args.repeat // 2))
        actions = stream(14)
        limits = compare(limit_cases(actions, contract_for(actions)), modules, args.repeat)
    base_us = limits['position_velocity']['median_us']
    for row in limits.values():
        row['ratio'] = round(row['median_us'] / base_us, 2)
    result['optional_limits_d14'] = limits
    if not args.no_calibration:
        result['calibration_s_1m_x14'] = round(time_calibration(1_000_000, 14), 3)
        result.update(summary(result))
    result['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result))
        return
    print_table('guard, position/velocity only (µs per step):', result.pop('guard'))
    print('executive, CPU µs per control step (chunk + measured position + tick):')
    for name, row in result.pop('executive').items():
        line = f'  {name:26s} median {row["us_per_step"]:7.2f} best {row["best_us_per_step"]:7.2f}'
        if 'speedup_vs_baseline' in row:
            line += (f'  baseline {row["baseline_us_per_step"]:7.2f} '
                     f'x{row["speedup_vs_baseline"]:.2f}')
        print(line)
    print_table('optional limits at D = 14, real stream (the workspace box is FK, apart from '
                'the 3 µs target):', result.pop('optional_limits_d14'))
    for key, value in result.items():
        print(f'{key:34s} {value}')


if __name__ == '__main__':
    main()
