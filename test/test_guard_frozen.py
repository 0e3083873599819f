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
The guard's outputs pinned bit for bit on real recorded streams with injected faults.

test/data/guard_frozen.npz holds, per stream, the contract, the faulted requests, the elapsed
times and a digest of all the guard answered (commands, events, feasibility, counts) with every
optional limit combination (and the answers themselves for the fault-free runs), generated with
the guard as it was before it was made faster (commit 7a718c1). Regenerate only on a deliberate
change of the guard's behaviour: `python test/test_guard_frozen.py --write`.
"""
import hashlib
import os
import sys

import numpy as np
import pytest

from vla_safety_filter.core.contract import Contract, Guard, REASONS, REFUSALS
from vla_safety_filter.core.faults import action_range, FAULT_FAMILIES, inject

FROZEN = os.path.join(os.path.dirname(__file__), 'data', 'guard_frozen.npz')
#: name: (file, fps, replayed episode, first step, steps, first episode of the statistics);
#: LIBERO episode 0 is the raw model output that skipped unnormalization, its limits come from
#: the properly unnormalized episodes 4-6
STREAMS = {
    'aloha': ('aloha_sim_lerobot_4ep.npz', 50.0, 1, 40, 90, 0),
    'so101': ('so101_record_test_4ep.npz', 30.0, 2, 30, 90, 0),
    'libero_raw': ('libero_smolvla_rollouts_7ep.npz', 20.0, 0, 10, 90, 4),
}
FAULT_AT = 15
FAMILIES = ('none',) + FAULT_FAMILIES
VARIANTS = ('position_velocity', 'acceleration', 'deceleration', 'soft', 'jerk', 'uniform',
            'all', 'all_uniform', 'monitor_only')
EVENT_REASONS = REASONS + REFUSALS
#: steps replaced by holds, the step before which the speed scale drops, the reset step
HOLDS, SCALE_AT, RESET_AT = (30, 31), 50, 70


def _stream(name: str) -> tuple[np.ndarray, float]:
    """Return the stream's whole file of actions and its control period."""
    from data_paths import DATA      # only `--write` reads the recordings; tests read FROZEN
    path, fps, _, _, _, first_episode = STREAMS[name]
    with np.load(os.path.join(DATA, path), allow_pickle=False) as z:
        return z['actions'][z['episode_index'] >= first_episode].astype(np.float64), 1.0 / fps


def _window(name: str) -> np.ndarray:
    """Return the stream's window of real actions the runs replay."""
    from data_paths import DATA
    path, _, episode, first, steps, _ = STREAMS[name]
    with np.load(os.path.join(DATA, path), allow_pickle=False) as z:
        actions = z['actions'].astype(np.float64)[z['episode_index'] == episode]
    return actions[first:first + steps]


def _limits(name: str) -> dict:
    """Return contract arrays from the stream's statistics (tight enough to intervene)."""
    actions, dt = _stream(name)
    rate = [np.percentile(np.abs(np.diff(actions, n, axis=0)), 95, axis=0) / dt ** n + 1e-3
            for n in (1, 2, 3)]
    lower, upper = np.percentile(actions, 3, axis=0), np.percentile(actions, 97, axis=0)
    inset = 0.1 * (upper - lower)
    soft_lower = lower + inset
    soft_lower[0] = -np.inf          # one side without a soft bound
    return {'lower': lower, 'upper': upper, 'max_velocity': rate[0], 'dt': np.array(dt),
            'max_acceleration': rate[1], 'max_jerk': rate[2], 'soft_lower': soft_lower,
            'soft_upper': upper - inset, 'k_position': np.full(len(lower), 0.25 / dt),
            'sigma': np.std(actions, axis=0), 'centre': np.mean(actions, axis=0)}


def _contract(limits: dict, variant: str) -> Contract:
    """Return the contract of one variant from the stored arrays."""
    acc, soft = limits['max_acceleration'], {
        key: limits[key] for key in ('soft_lower', 'soft_upper', 'k_position')}
    every = {'max_acceleration': acc, 'max_deceleration': 2.0 * acc,
             'max_jerk': limits['max_jerk'], **soft}
    fields = {
        'position_velocity': {}, 'acceleration': {'max_acceleration': acc},
        'deceleration': {'max_acceleration': acc, 'max_deceleration': 0.5 * acc},
        'soft': soft, 'jerk': {'max_acceleration': acc, 'max_jerk': limits['max_jerk']},
        'uniform': {'velocity_scaling': 'uniform', 'max_acceleration': acc},
        'all': every, 'all_uniform': {**every, 'velocity_scaling': 'uniform'},
        'monitor_only': {'mode': 'monitor_only', 'max_acceleration': acc},
    }[variant]
    d = len(limits['lower'])
    return Contract(tuple(f'j{i}' for i in range(d)), limits['lower'], limits['upper'],
                    limits['max_velocity'], float(limits['dt']), **fields)


def _requests(name: str, limits: dict) -> dict:
    """Return the window with each fault family injected at FAULT_AT (and without)."""
    window = _window(name)
    span, dt = action_range(limits['sigma']), float(limits['dt'])
    out = {'none': window}
    for k, family in enumerate(FAULT_FAMILIES):
        out[family] = inject(window, family, FAULT_AT, k, span, limits['centre'], dt)[0]
    return out


def _elapsed(n: int, dt: float, seed: int) -> np.ndarray:
    """Return jittered elapsed times: mostly near dt, some back to back, some stalls (NaN: dt)."""
    rng = np.random.default_rng(seed)
    elapsed = dt * rng.uniform(0.6, 1.5, size=n)
    elapsed[rng.random(n) < 0.08] = 0.0
    elapsed[rng.random(n) < 0.08] = 4.0 * dt
    elapsed[rng.random(n) < 0.3] = np.nan
    return elapsed


def replay(contract: Contract, requests: np.ndarray, elapsed: np.ndarray) -> dict:
    """Run the guard's whole public surface over a stream; return everything it answered."""
    guard = Guard(contract)
    guard.reset(contract.project_into_bounds(requests[0]))
    out, feasible, events = np.empty_like(requests), np.zeros(len(requests), bool), []
    for t, action in enumerate(requests):
        h = None if np.isnan(elapsed[t]) else float(elapsed[t])
        if t == SCALE_AT:
            guard.set_speed_scale(0.6)
        if t == RESET_AT:
            guard.reset(guard.prev, guard.velocity)
        feasible[t] = guard.feasible(action, h)
        if t in HOLDS:
            out[t] = guard.hold(h)
            continue
        out[t], ev = guard.step(action, h)
        events.extend(ev)
    names = list(contract.joint_names)
    which = np.array([[e.step, names.index(e.joint) if e.joint in names else -1,
                       EVENT_REASONS.index(e.reason)] for e in events], np.int16).reshape(-1, 3)
    values = np.array([e[3:] for e in events], dtype=np.float64).reshape(-1, 3)
    counts = np.array([guard.counts[r] for r in EVENT_REASONS])
    return {'out': out, 'feasible': feasible, 'events': which, 'event_values': values,
            'counts': counts}


def _digest(answers: dict) -> str:
    """Return the SHA-256 of every answer's bytes (bit for bit), in a fixed order."""
    sha = hashlib.sha256()
    for key in sorted(answers):
        sha.update(key.encode() + np.ascontiguousarray(answers[key]).tobytes())
    return sha.hexdigest()


def runs():
    """Yield (key, contract, requests, elapsed, stored) of every pinned run from the file."""
    with np.load(FROZEN, allow_pickle=False) as z:
        stored = dict(z)
    for name in STREAMS:
        prefix = f'{name}/limits/'
        limits = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
        for i, family in enumerate(FAMILIES):
            requests = stored[f'{name}/requests/{family}']
            for j, variant in enumerate(VARIANTS):
                jitter = (i + j) % 2 == 1
                elapsed = stored[f'{name}/elapsed'] if jitter else np.full(len(requests), np.nan)
                yield f'{name}/{family}/{variant}', _contract(limits, variant), requests, \
                    elapsed, stored


def write() -> None:
    """Store the inputs and today's guard's answers (run before any change to the guard)."""
    stored = {}
    for name in STREAMS:
        limits = _limits(name)
        stored.update({f'{name}/limits/{k}': v for k, v in limits.items()})
        for family, requests in _requests(name, limits).items():
            stored[f'{name}/requests/{family}'] = requests
        stored[f'{name}/elapsed'] = _elapsed(STREAMS[name][4], float(limits['dt']), 7)
    np.savez_compressed(FROZEN, **stored)
    for key, contract, requests, elapsed, _ in list(runs()):
        answers = replay(contract, requests, elapsed)
        stored[f'{key}/sha256'] = np.array(_digest(answers))
        if '/none/' in key:     # whole answers of the fault-free runs, to see what changed
            stored.update({f'{key}/{k}': v for k, v in answers.items()})
    np.savez_compressed(FROZEN, **stored)


def _cases():
    """Return the pinned runs as pytest parameters (none when the frozen file is missing)."""
    if not os.path.exists(FROZEN):
        return []
    return [pytest.param(*case, id=case[0]) for case in runs()]


@pytest.mark.parametrize('key, contract, requests, elapsed, stored', _cases())
def test_guard_answers_are_unchanged_bit_for_bit(key, contract, requests, elapsed, stored):
    got = replay(contract, requests, elapsed)
    for part, value in got.items():
        if f'{key}/{part}' in stored:
            np.testing.assert_array_equal(value, stored[f'{key}/{part}'], err_msg=f'{key} {part}')
    assert _digest(got) == str(stored[f'{key}/sha256'])


def test_the_pinned_runs_exercise_every_limit_and_refusal():
    reasons = set()
    for key, contract, requests, elapsed, _ in runs():
        table = replay(contract, requests, elapsed)['events']
        reasons |= {EVENT_REASONS[int(r)] for r in table[:, 2]}
    assert reasons >= {'position', 'velocity', 'acceleration', 'soft_limit', 'jerk', 'nonfinite'}


if __name__ == '__main__':
    if sys.argv[1:] == ['--write']:
        write()
