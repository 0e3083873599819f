"""`vla-safety filter`: run the contract's guard offline over recorded episodes and save the result."""
from __future__ import annotations

import sys

from ..core.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'filter', help='run the safety guard offline over recorded episodes',
        description='Replay every episode of INPUT through the safety guard of a calibrated '
                    'contract (the same per-step guard the safety_filter node runs) and save what '
                    'would have been executed, with the interventions counted per reason. Each '
                    'action is treated as one control period of the contract.')
    p.add_argument('input', metavar='INPUT', help='.npz, .csv or LeRobot dataset directory')
    p.add_argument('--params', required=True, metavar='PARAMS.yaml',
                   help='parameter YAML written by `vla-safety calibrate`')
    p.add_argument('--output', required=True, metavar='OUT.npz',
                   help='writes executed [T, D], requested [T, D], episode_index [T], joint_names '
                        'and count_<reason> scalars')
    p.set_defaults(func=run)


def column_order(input_names, contract_names, source: str, params_path: str):
    """Column indices putting the input in contract joint order (None: already in order).

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
    import numpy as np

    from ..core.contract import REASONS, Guard
    from ..core.episodes import read_episodes
    from ..core.params import load_filter_params

    contract, _ = load_filter_params(args.params)
    episodes = read_episodes(args.input)
    order = column_order(episodes.joint_names, contract.joint_names, episodes.source, args.params)
    if episodes.fps is not None and not np.isclose(episodes.fps, 1.0 / contract.dt, rtol=1e-3):
        print(f'vla-safety filter: note: {args.input} was recorded at {episodes.fps:g} fps but the '
              f'contract runs at {1.0 / contract.dt:g} Hz; each action is treated as one control '
              f'period', file=sys.stderr)
    totals = dict.fromkeys(REASONS, 0)
    per_joint = {name: dict.fromkeys(REASONS, 0) for name in contract.joint_names + ('*',)}
    executed, requested, index = [], [], []
    steps_touched = 0
    for ep in episodes.episodes:
        actions = ep.actions if order is None else ep.actions[:, order]
        guard = Guard(contract)
        guard.reset(_seed(ep, actions, order, contract))
        out, events = guard.run(actions)
        for reason, count in guard.counts.items():
            totals[reason] += count
        for event in events:
            per_joint[event.joint][event.reason] += 1
        steps_touched += len({event.step for event in events})
        executed.append(out)
        requested.append(actions)
        index.append(np.full(len(actions), ep.index, dtype=np.int64))
    arrays = {'executed': np.concatenate(executed), 'requested': np.concatenate(requested),
              'episode_index': np.concatenate(index),
              'joint_names': np.array(contract.joint_names)}
    arrays.update({f'count_{reason}': np.int64(totals[reason]) for reason in REASONS})
    try:
        np.savez(args.output, **arrays)
    except OSError as exc:
        raise InputError(f'{args.output}: cannot write ({exc})') from None
    _summary(args, contract, per_joint, totals, steps_touched, len(arrays['episode_index']),
             len(episodes.episodes))
    return 0


def _seed(ep, actions, order, contract):
    """First executed command: observation.state at step 0 if it has D values, else the first
    action projected into the bounds."""
    if ep.state is not None and ep.state.shape[1] == contract.dim:
        return ep.state[0] if order is None else ep.state[0, order]
    return contract.project_into_bounds(actions[0])


def _summary(args, contract, per_joint, totals, steps_touched, steps, n_episodes) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(title=f'interventions over {n_episodes} episodes, {steps} steps')
    table.add_column('joint')
    for reason in ('position', 'velocity', 'acceleration'):
        table.add_column(reason, justify='right')
    for name in contract.joint_names:
        counts = per_joint[name]
        table.add_row(Text(name), *(str(counts[r]) for r in ('position', 'velocity', 'acceleration')))
    console.print(table)
    console.print(f'rejected inputs: shape {totals["shape"]}, nonfinite {totals["nonfinite"]}')
    share = steps_touched / steps if steps else 0.0
    console.print(f'steps with any intervention: {steps_touched} of {steps} ({share:.1%}); '
                  f'mode {contract.mode}', highlight=False)
    console.print(f'wrote {args.output}', markup=False, highlight=False)
