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

"""`vla-safety filter`: run the contract's guard offline over recorded episodes; save it all."""
from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np

from ..core.errors import InputError
from ..core.executive import Executive


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'filter', help='run the safety guard offline over recorded episodes',
        description='Replay every episode of INPUT through the safety guard of a calibrated '
                    'contract (the same per-step guard the safety_filter node runs) and save what '
                    'would have been executed, with the interventions counted per reason. Each '
                    "action is one control period of the contract, run through the node's "
                    'executive in simulated time: a non-finite row is held, counted and listed.')
    p.add_argument('input', metavar='INPUT', help='.npz, .csv or LeRobot dataset directory')
    p.add_argument('--params', required=True, metavar='PARAMS.yaml',
                   help='parameter YAML written by `vla-safety calibrate`')
    p.add_argument('--output', required=True, metavar='OUT.npz',
                   help='writes executed [T, D], requested [T, D], episode_index [T], state [T], '
                        'event_row/event_joint/event_reason [E], joint_names and count_<reason> '
                        'scalars')
    p.set_defaults(func=run)


def column_order(input_names, contract_names, source: str, params_path: str):
    """
    Column indices putting the input in contract joint order (None: already in order).

    Generic input names (joint_0..) are taken positionally; otherwise names must match as a set.
    """
    from ..core.episodes import generic_names

    input_names, contract_names = tuple(input_names), tuple(contract_names)
    if len(input_names) != len(contract_names):
        raise InputError(f'{source} has {len(input_names)} action dimensions but {params_path} '
                         f'has {len(contract_names)} joints')
    if input_names == contract_names or input_names == generic_names(len(input_names)):
        return None
    unknown = [n for n in input_names if n not in contract_names]
    if unknown:
        raise InputError(f'{source}: joints {unknown} are not in {params_path} '
                         f'{list(contract_names)}')
    return [input_names.index(n) for n in contract_names]


def run(args) -> int:

    from ..core.contract import REASONS, REFUSALS
    from ..core.episodes import read_episodes
    from ..core.params import load_filter_params

    contract, params = load_filter_params(args.params)
    episodes = read_episodes(args.input, allow_nonfinite=True)
    order = column_order(episodes.joint_names, contract.joint_names, episodes.source, args.params)
    if episodes.fps is not None and not np.isclose(episodes.fps, 1.0 / contract.dt, rtol=1e-3):
        print(f'vla-safety filter: note: {args.input} was recorded at {episodes.fps:g} fps but '
              f'the contract runs at {1.0 / contract.dt:g} Hz; each action is treated as one '
              'control period', file=sys.stderr)
    timeout = params.get('command_timeout', DEFAULT_COMMAND_TIMEOUT)
    replays, row0 = [], 0
    for ep in episodes.episodes:
        actions = ep.actions if order is None else ep.actions[:, order]
        replays.append(replay(contract, timeout, actions, _states(ep, actions, order, contract),
                              row0))
        row0 += len(actions)
    events = [event for r in replays for event in r.events]
    counts = dict.fromkeys(REASONS + REFUSALS, 0)
    for _, _, reason in events:
        counts[reason] = counts.get(reason, 0) + 1
    arrays = {'executed': np.concatenate([r.executed for r in replays]),
              'requested': np.concatenate([ep.actions if order is None else ep.actions[:, order]
                                           for ep in episodes.episodes]),
              'episode_index': np.concatenate([np.full(len(ep.actions), ep.index, dtype=np.int64)
                                               for ep in episodes.episodes]),
              'state': np.concatenate([r.states for r in replays]),
              'event_row': np.array([row for row, _, _ in events], dtype=np.int64),
              'event_joint': np.array([joint for _, joint, _ in events], dtype=str),
              'event_reason': np.array([reason for _, _, reason in events], dtype=str),
              'joint_names': np.array(contract.joint_names)}
    arrays.update({f'count_{reason}': np.int64(count) for reason, count in counts.items()})
    try:
        np.savez(args.output, **arrays)
    except OSError as exc:
        raise InputError(f'{args.output}: cannot write ({exc})') from None
    _summary(args, contract, events, counts, arrays, len(episodes.episodes))
    return 0


DEFAULT_COMMAND_TIMEOUT = 0.1   # the safety_filter node's default


class Replay(NamedTuple):
    """One episode through the executive: executed [T, D], tick state [T], (row, joint, reason)."""

    executed: np.ndarray
    states: np.ndarray
    events: list


def replay(contract, command_timeout: float, actions, measured, row0: int = 0) -> Replay:
    """
    Run the node's executive over one episode in simulated time.

    Row t is a one-point chunk arriving at t * dt, due one control period later, and the tick at
    t * dt publishes the plan one period ahead: that row, guarded. A refused row (non-finite,
    wrong shape) is a hold with its event, as in the node. `measured` [T, D] is the arm position
    the executive sees (for seeding and resumes). A tick that publishes nothing (stopped) leaves
    the controller at its last command, which is what `executed` records.
    """
    executive = Executive(contract, command_timeout)
    dt = contract.dt
    executed = np.empty_like(actions, dtype=np.float64)
    states, events = [], []
    last = np.asarray(measured[0], dtype=np.float64)
    for t, row in enumerate(actions):
        now = t * dt
        executive.observe(measured[t] if measured is not None else last, now)
        if t == 0:
            executive.start(now)
        refused = executive.on_chunk(row[None, :], [dt], now)
        tick = executive.tick(now)
        if tick.command is not None:
            last = np.array(tick.command, dtype=np.float64)
        executed[t] = last
        states.append(tick.state)
        events += [(row0 + t, e.joint, e.reason) for e in refused + tuple(tick.events)]
    return Replay(executed, np.array(states, dtype=str), events)


def _states(ep, actions, order, contract):
    """
    Return measured positions [T, D]: observation.state when it has D values.

    Otherwise the first action projected into the bounds, held (an arm that tracks its commands
    exactly).
    """
    if ep.state is not None and ep.state.shape[1] == contract.dim:
        return ep.state if order is None else ep.state[:, order]
    first = actions[0] if np.all(np.isfinite(actions[0])) else contract.lower + 0.5 * (
        contract.upper - contract.lower)
    return np.repeat(contract.project_into_bounds(first)[None, :], len(actions), axis=0)


MAX_ROWS_LISTED = 10


def _summary(args, contract, events, counts, arrays, n_episodes) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    steps = len(arrays['episode_index'])
    per_joint = {name: dict.fromkeys(REASON_COLUMNS, 0) for name in contract.joint_names}
    for _, joint, reason in events:
        if joint in per_joint and reason in REASON_COLUMNS:
            per_joint[joint][reason] += 1
    table = Table(title=f'interventions over {n_episodes} episodes, {steps} steps')
    table.add_column('joint')
    for reason in REASON_COLUMNS:
        table.add_column(reason, justify='right')
    for name in contract.joint_names:
        table.add_row(Text(name), *(str(per_joint[name][r]) for r in REASON_COLUMNS))
    console.print(table)
    for reason, count in counts.items():
        if reason in REASON_COLUMNS or not count:
            continue
        rows = sorted({row for row, _, r in events if r == reason})
        listed = ', '.join(f'{arrays["episode_index"][row]}:{row}'
                           for row in rows[:MAX_ROWS_LISTED])
        more = f' and {len(rows) - MAX_ROWS_LISTED} more' if len(rows) > MAX_ROWS_LISTED else ''
        console.print(f'refused/held ({reason}): {count} at rows (episode:row) {listed}{more}',
                      markup=False, highlight=False)
    touched = len({row for row, _, _ in events})
    share = touched / steps if steps else 0.0
    console.print(f'rows with any event: {touched} of {steps} ({share:.1%}); mode {contract.mode}',
                  highlight=False)
    console.print(f'wrote {args.output}', markup=False, highlight=False)


REASON_COLUMNS = ('position', 'velocity', 'acceleration')
