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

"""`vla-safety calibrate`: demonstration episodes -> filter parameters, calibration, report."""
from __future__ import annotations

from contextlib import contextmanager
import json
import os
import sys

from ..core.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'calibrate', help='calibrate the safety contract from demonstration episodes',
        description='Calibrate position bounds and velocity limits from demonstration episodes '
                    '(split-conformal, split by episode) and write the safety_filter parameter '
                    'YAML plus the calibration file the monitor needs. Inputs: .npz streams, .csv '
                    'files or LeRobot dataset directories (v2.x, v3.0); see doc/calibration.md.')
    p.add_argument('inputs', nargs='+', metavar='INPUT',
                   help='episode source(s); several are concatenated')
    p.add_argument('--fps', type=float,
                   help='control rate of the episodes in Hz (default: from the '
                        'input: LeRobot info.json or timestamps)')
    p.add_argument('--alpha', type=float, default=0.05,
                   help='allowed miss rate: a new demonstration stays entirely inside with '
                        'probability >= 1 - alpha (default 0.05)')
    p.add_argument('--coverage', choices=('episode', 'frame'), default='episode',
                   help='episode (default): whole new episodes stay inside with probability '
                        ">= 1 - alpha; frame: >= 1 - alpha of a new episode's frames on "
                        'average (narrower bounds, clips some expert frames)')
    p.add_argument('--holdout', type=float, default=0.2,
                   help='share of episodes held out to measure coverage (default 0.2)')
    p.add_argument('--seed', type=int, default=0, help='seed of the episode split (default 0)')
    p.add_argument('--hardware-limits', metavar='FILE',
                   help='URDF or ros2_control joint_limits YAML; bounds never exceed these')
    p.add_argument('--joint-names', metavar='NAMES',
                   help="rename the contract's joints to the names /joint_states carries: "
                        'either every name in order (a,b,c) or old=new pairs '
                        '(shoulder_pan.pos=shoulder_pan,...); hardware limits are looked up by '
                        'the new names')
    p.add_argument('--output', required=True, metavar='PARAMS.yaml',
                   help='parameter YAML to write; the calibration file goes next to it as '
                        '<stem>_calibration.npz')
    p.add_argument('--report', metavar='REPORT.json', help='write the full calibration report')
    p.add_argument('--plot', metavar='PLOT.png',
                   help='plot per-joint data with the calibrated limits')
    p.add_argument('--progress', action='store_true',
                   help='show progress on stderr even when it is not a terminal (shown on a '
                        'terminal anyway)')
    p.set_defaults(func=run)


@contextmanager
def _progress(show: bool):
    """
    Yield `report(stage, done, total)` drawing one rich bar per stage on stderr, or None.

    On a terminal the bars vanish when done; elsewhere (--progress into a log) they stay.
    """
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    tasks = {}
    columns = (SpinnerColumn(), TextColumn('{task.description}'), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True),
                  transient=sys.stderr.isatty()) as bars:
        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)
        yield report


def _read(inputs: list[str], fps: float | None, report):
    """Read the inputs, reporting the data files read as steps of 'reading <input>'."""
    from ..core.episodes import read_many

    if report is None:
        return read_many(inputs, fps)
    return read_many(inputs, fps, progress=lambda path, done, total: report(
        f'reading {os.path.basename(os.path.normpath(path))}', done, total))


def rename_joints(names, spec: str | None) -> tuple[str, ...]:
    """Return the joint names after `--joint-names`: a full ordered list, or old=new pairs."""
    names = tuple(names)
    if spec is None:
        return names
    items = [item.strip() for item in spec.split(',')]
    if any('=' in item for item in items):
        mapping = dict(_pair(item) for item in items)
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise InputError(f'--joint-names: {unknown} are not joints of the input {list(names)}')
        renamed = tuple(mapping.get(n, n) for n in names)
    elif len(items) != len(names):
        raise InputError(f'--joint-names gives {len(items)} names but the input has {len(names)} '
                         f'joints {list(names)}')
    else:
        renamed = tuple(items)
    if not all(renamed) or len(set(renamed)) != len(renamed):
        raise InputError(f'--joint-names: names must be unique and non-empty, got {list(renamed)}')
    return renamed


def _pair(item: str) -> tuple[str, str]:
    old, sep, new = item.partition('=')
    if not (sep and old.strip() and new.strip()):
        raise InputError(f'--joint-names: {item!r} is not an old=new pair')
    return old.strip(), new.strip()


def calibration_path(output: str) -> tuple[str, str]:
    """(name written into the YAML, path on disk) of the calibration file next to PARAMS.yaml."""
    name = os.path.splitext(os.path.basename(output))[0] + '_calibration.npz'
    return name, os.path.join(os.path.dirname(os.path.abspath(output)), name)


def run(args) -> int:
    from ..core.calibration import calibrate
    from ..core.limits import read_hardware_limits
    from ..core.params import write_filter_params

    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise InputError(f'{args.output}: directory {out_dir} does not exist')
    with _progress(args.progress or sys.stderr.isatty()) as report:
        episodes = _read(args.inputs, args.fps, report)
        if episodes.fps is None:
            raise InputError(f'{episodes.source}: the input carries no frame rate; pass --fps')
        names = rename_joints(episodes.joint_names, args.joint_names)
        hardware = (read_hardware_limits(args.hardware_limits, names)
                    if args.hardware_limits else None)
        # Per-step timestamps, where core/episodes.py carries them on the Episode.
        stamps = [getattr(ep, 'timestamps', None) for ep in episodes.episodes]
        result = calibrate([ep.actions for ep in episodes.episodes], names, 1.0 / episodes.fps,
                           alpha=args.alpha, holdout=args.holdout, seed=args.seed,
                           hardware=hardware, coverage=args.coverage, timestamps=stamps,
                           progress=report)
    report = dict(result.report)
    report['inputs'] = list(args.inputs)
    report['fps'] = episodes.fps
    if names != episodes.joint_names:
        report['input_joint_names'] = list(episodes.joint_names)
    for key in ('calibration_episodes', 'fit_episodes', 'holdout_episodes'):
        report[key] = [episodes.episodes[i].index for i in report[key]]

    cal_name, cal_path = calibration_path(args.output)
    try:
        result.data.save(cal_path)
        write_filter_params(args.output, result.contract, calibration_file=cal_name)
        if args.report:
            with open(args.report, 'w') as fh:
                json.dump(report, fh, indent=2)
    except OSError as exc:
        raise InputError(f'cannot write output ({exc})') from None
    if args.plot:
        _plot(args.plot, episodes, result)
    _summary(args, report, cal_path)
    return 0


def _summary(args, report: dict, cal_path: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(title=f'calibrated contract (alpha {report["alpha"]:g}, q {report["q"]:.3f})')
    for column in ('joint', 'lower', 'upper', 'max_velocity', 'tightness'):
        table.add_column(column, justify='left' if column == 'joint' else 'right')
    tight = report['tightness_vs_heuristic']['per_joint']
    for j, name in enumerate(report['joint_names']):
        ratio = tight[name]
        table.add_row(Text(name), f'{report["lower"][j]:.4g}', f'{report["upper"][j]:.4g}',
                      f'{report["max_velocity"][j]:.4g}', '-' if ratio is None else f'{ratio:.2f}')
    console.print(table)
    console.print(f'episodes: {report["n_calibration_episodes"]} calibration '
                  f'({report["n_fit_episodes"]} fit mu/sigma, {report["n_score_episodes"]} '
                  f'score episodes = K), {report["n_holdout_episodes"]} held out; '
                  f'{report["coverage"]}-level coverage '
                  f'{"claimed" if report["coverage_claimed"] else "NOT claimed"}', highlight=False)
    if report['holdout_position_coverage'] is None:
        console.print('held-out coverage: no held-out episodes (--holdout 0 or too few episodes)')
    else:
        console.print(f'held-out position coverage: {report["holdout_position_coverage"]:.3f}   '
                      f'velocity coverage: {report["holdout_velocity_coverage"]:.3f}   '
                      f'(share of frames)', highlight=False)
        console.print(f'held-out episodes entirely inside: position '
                      f'{report["holdout_position_episode_coverage"]:.3f}   velocity '
                      f'{report["holdout_velocity_episode_coverage"]:.3f}   (target >= '
                      f'{1 - report["alpha"]:.3f} for {report["coverage"]}s)', highlight=False)
    mean_tight = report['tightness_vs_heuristic']['mean']
    if mean_tight is not None:
        console.print(f'tightness vs min/max ± 10 %: {mean_tight:.2f} '
                      f'(mean width ratio, < 1 is tighter)')
    hardware = report.get('hardware')
    if hardware and hardware['missing_joints']:
        console.print(f'no hardware limits for: {", ".join(hardware["missing_joints"])}')
    for line in (hardware['clipped'] + hardware['notes'] if hardware else []):
        console.print(f'hardware: {line}', markup=False)
    for line in report['repairs'] + report['notes']:
        console.print(f'note: {line}', markup=False)
    cusum = (report.get('motion') or {}).get('cusum')
    if cusum:
        console.print(f'motion CUSUM (fed every step): h {cusum["h"]:.3g} from in-control run '
                      f'lengths of {cusum["n_episodes"]} calibration episodes, out of fold '
                      f'({cusum["hours"] * 60:.1f} min): {cusum["measured_per_hour"]:.3g} '
                      f'false alarms/h there; the i.i.d. design h {cusum["h_iid"]:.3g} '
                      f'(promises {cusum["iid_design_per_hour"]:g}/h) gave '
                      f'{cusum["measured_iid_per_hour"]:.3g}/h', highlight=False)
    holds = (report.get('motion') or {}).get('holds')
    if holds:
        alarms = [f'{kind} after {holds[f"{kind}_threshold_s"]:.3g} s'
                  if kind in holds['armed'] else f'{kind} not armed (not earlier than stall)'
                  for kind in ('freeze', 'stall')]
        console.print(f'holds ({holds["n_episodes"]} episodes, '
                      f'{"calibrated" if holds["calibrated"] else "the fixed values"}; longest '
                      f'exact repeat {holds["freeze_longest_run_steps"]} steps, longest below '
                      f'the deadband {holds["stall_longest_run_steps"]}): {", ".join(alarms)}',
                      highlight=False)
    for line in report['warnings']:
        console.print(f'[bold yellow]warning:[/] {line}', highlight=False)
    written = [args.output, cal_path] + [p for p in (args.report, args.plot) if p]
    console.print('wrote ' + ', '.join(written), markup=False, highlight=False)


def _plot(path: str, episodes, result) -> None:
    """Per joint: histogram of positions and of |velocity| with the calibrated limits."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    contract = result.contract
    frames = np.concatenate([ep.actions for ep in episodes.episodes])
    speed = np.abs(np.concatenate([np.diff(ep.actions, axis=0) for ep in episodes.episodes]))
    speed /= contract.dt
    dim = contract.dim
    fig, axes = plt.subplots(dim, 2, figsize=(10, 1.8 * dim + 1), squeeze=False)
    for j, name in enumerate(contract.joint_names):
        pos_ax, vel_ax = axes[j]
        pos_ax.hist(frames[:, j], bins=60, color='tab:blue')
        for x in (contract.lower[j], contract.upper[j]):
            pos_ax.axvline(x, color='tab:red')
        pos_ax.set_ylabel(name, fontsize=8)
        vel_ax.hist(speed[:, j], bins=60, color='tab:green')
        vel_ax.axvline(contract.max_velocity[j], color='tab:red')
    axes[0, 0].set_title('position (red: calibrated bounds)')
    axes[0, 1].set_title('|velocity| (red: max_velocity)')
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=80)
    except (OSError, ValueError) as exc:
        raise InputError(f'{path}: cannot write plot ({exc})') from None
    finally:
        plt.close(fig)
