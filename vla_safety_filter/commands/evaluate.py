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

"""`vla-safety evaluate`: stream recorded episodes through the action monitor, report alarms."""
from __future__ import annotations

from dataclasses import replace
import json
import math
import os
import sys

from ..core.errors import InputError


def register(subparsers) -> None:
    from ..core.faults import EVALUATE_FAMILIES
    from ..core.profiles import DEFAULT_PROFILE, profile_names

    p = subparsers.add_parser(
        'evaluate', help='measure the action monitor on recorded episodes (false alarms, '
                         'fault detection, cost budget, AUROC)',
        description='Run the action monitor (behind the calibrated guard) over recorded episodes '
                    'as the ROS node would, and report per-episode metrics and alarms, false '
                    'alarms per hour, the safety cost budget, detection of injected faults and, '
                    'with success labels, the AUROC of each metric. See doc/monitoring.md.')
    p.add_argument('inputs', nargs='+', metavar='INPUT', help='episode source(s) (.npz, .csv, '
                   'LeRobot dataset directory); evaluate episodes the calibration did not use')
    p.add_argument('--calibration', required=True, metavar='CAL',
                   help='parameter YAML written by `vla-safety calibrate` (names its '
                        'calibration file)')
    p.add_argument('--profile', default=DEFAULT_PROFILE,
                   help=f'monitor preset per policy family: {", ".join(profile_names())} '
                        f'(default {DEFAULT_PROFILE})')
    p.add_argument('--holdout-from', metavar='CAL_REPORT.json',
                   help='evaluate only the episodes this calibration report lists as held out')
    p.add_argument('--no-motion', action='store_true',
                   help='disarm the motion scores (step_spike, motion_cusum, window_spike); by '
                        'default they are calibrated on the input episodes that --holdout-from '
                        'does not hold out, else taken from the calibration file if it has them')
    p.add_argument('--labels', metavar='SUCCESS.json',
                   help='episode success labels: a JSON object '
                   '{"<episode>": true/false} or a list indexed by episode (-1/null = unknown)')
    p.add_argument('--inject', metavar='FAMILY', help=f'inject faults: one or more of '
                   f'{",".join(EVALUATE_FAMILIES)} (comma-separated) or all')
    p.add_argument('--at', type=int, metavar='STEP',
                   help='fault onset step (default: random after one window, per injection)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of fault onsets and signs (default 0)')
    p.add_argument('--repeats', type=int, default=1,
                   help='injections per episode and family (default 1)')
    p.add_argument('--budget', type=float, help='episode cost budget (default 10)')
    p.add_argument('--fps', type=float, help='episode rate in Hz if the input does not carry it')
    p.add_argument('--report', required=True, metavar='REPORT.json',
                   help='write the JSON report here')
    p.set_defaults(func=run)


def parse_labels(path: str) -> dict[int, bool]:
    """Success labels from JSON: {episode: bool|0|1|-1|null} or a list indexed by episode."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise InputError(f'{path}: labels file not found') from None
    except (OSError, ValueError) as exc:
        raise InputError(f'{path}: not a JSON labels file ({exc})') from None
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict):
        raise InputError(f'{path}: labels must be a JSON object or list')
    labels = {}
    for key, value in raw.items():
        try:
            index = int(key)
        except ValueError:
            raise InputError(f'{path}: label key {key!r} is not an episode index') from None
        if value is None or value == -1:
            continue
        if value not in (True, False, 0, 1):
            raise InputError(f'{path}: label of episode {index} must be true/false/0/1/-1, '
                             f'got {value!r}')
        labels[index] = bool(value)
    return labels


def holdout_episodes(path: str) -> set[int]:
    try:
        with open(path) as fh:
            report = json.load(fh)
        return {int(i) for i in report['holdout_episodes']}
    except FileNotFoundError:
        raise InputError(f'{path}: calibration report not found') from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f'{path}: not a calibration report with holdout_episodes '
                         f'({exc})') from None


def _settings(args, fps: float | None):
    from ..core.costs import CostModel
    from ..core.evaluation import EvalSettings
    from ..core.params import load_calibration_for
    from ..core.profiles import get_profile

    contract, cal = load_calibration_for(args.calibration)
    if fps is not None and not math.isclose(fps * contract.dt, 1.0, rel_tol=0.01):
        raise InputError(f'{args.inputs[0]}: episodes run at {fps:g} Hz but {args.calibration} '
                         f'was calibrated at {1.0 / contract.dt:g} Hz')
    costs = CostModel() if args.budget is None else CostModel(budget=args.budget)
    return EvalSettings(cal, contract.dt, get_profile(args.profile), costs, contract)


def run(args) -> int:
    from ..core.episodes import read_many
    from ..core.evaluation import check_compatible, evaluate
    from ..core.faults import parse_families
    from ..core.sequential import MotionCalibration

    if args.repeats < 1:
        raise InputError(f'--repeats must be >= 1, got {args.repeats}')
    families = parse_families(args.inject) if args.inject else None
    if args.at is not None and not families:
        raise InputError('--at needs --inject')
    labels = parse_labels(args.labels) if args.labels else None
    report_dir = os.path.dirname(os.path.abspath(args.report))
    if not os.path.isdir(report_dir):
        raise InputError(f'{args.report}: directory {report_dir} does not exist')
    episode_set = read_many(args.inputs, args.fps)
    settings = _settings(args, episode_set.fps)
    check_compatible(settings, episode_set.dim, episode_set.joint_names, episode_set.source)
    episodes = [(ep.index, ep.actions) for ep in episode_set.episodes]
    motion_episodes = 0
    if args.holdout_from:
        keep = holdout_episodes(args.holdout_from)
        seen = [a for i, a in episodes if i not in keep]
        episodes = [(i, a) for i, a in episodes if i in keep]
        if not episodes:
            raise InputError(f'{args.holdout_from}: none of its held-out episodes is in the input')
        if seen and not args.no_motion:
            profile = settings.profile
            settings = replace(settings, motion=MotionCalibration.from_episodes(
                seen, settings.calibration.sigma, dt=settings.dt,
                alpha=settings.calibration.alpha, rho=profile.cusum_rho,
                target_per_hour=1.0 / profile.cusum_arl0_hours, seed=args.seed,
                velocity_scale=settings.calibration.velocity_scale))
            if settings.calibration.motion is not None:   # measured with the file's mu, sigma
                settings = replace(settings, motion=replace(
                    settings.motion, position_cusum=settings.calibration.motion.position_cusum))
            motion_episodes = len(seen)
    elif settings.calibration.motion is not None and not args.no_motion:
        settings = replace(settings, motion=settings.calibration.motion)
        motion_episodes = None
    report = _with_progress(lambda progress: evaluate(
        settings, episodes, labels=labels, families=families, at=args.at, seed=args.seed,
        repeats=args.repeats, progress=progress))
    report['inputs'] = list(args.inputs)
    report['calibration'] = args.calibration
    report['motion_calibration'] = _motion_summary(settings.motion, motion_episodes,
                                                   settings.calibration.alpha)
    with open(args.report, 'w') as fh:
        json.dump(report, fh, indent=1)
    _print_summary(report)
    return 0


def _with_progress(work):
    """Run `work(progress)` with a rich progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return work(None)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task('evaluating episodes', total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def _motion_summary(motion, n_episodes: int | None, alpha: float) -> dict | None:
    """
    Report what the motion scores were calibrated on (None when disarmed), warnings when weak.

    A new exchangeable episode beats every one of K episodes' largest step score with
    probability 1/(K+1) (before the spike margin), so few episodes make a weak spike threshold.
    `n_episodes` None: the calibration file's own motion calibration.
    """
    from ..core.calibration import motion_report

    if motion is None:
        return None
    summary = motion_report(motion, n_episodes or 0, alpha)
    summary['n_episodes'] = n_episodes
    if n_episodes is None:
        summary['warnings'] = [w for w in summary['warnings'] if 'rest on' not in w]
    if summary['warnings']:
        summary['warning'] = '; '.join(summary['warnings'])
    return summary


def _fmt(value, digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}g}'


def _print_summary(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f'action monitor ({report["profile"]} profile) on '
                        f'{len(report["episodes"])} '
                        f'episode(s)')
    for column in ('episode', 'steps', 'first alarm', 'alarms', 'reversal', 'jerk_rms',
                   'coherence', 'cost', 'level'):
        table.add_column(column, justify='right')
    for ep in report['episodes']:
        kinds = ', '.join(f'{k}×{n}' for k, n in sorted(ep['alarm_counts'].items())) or '-'
        m = ep['metric_mean']
        table.add_row(str(ep['episode']), str(ep['n_steps']), _fmt(ep['first_alarm_step']), kinds,
                      _fmt(m['reversal_rate']), _fmt(m['jerk_rms']), _fmt(m['momentum_coherence']),
                      _fmt(ep['cost']), ep['level'])
    console.print(table)
    by_kind = ', '.join(f'{k} {n}' for k, n in sorted(report['false_alarms_by_kind'].items()))
    console.print(f'false alarms: {report["false_alarms"]} in '
                  f'{report["in_control_hours"] * 60:.1f} min of clean motion = '
                  f'{_fmt(report["false_alarms_per_hour"])} per hour ({by_kind or "none"})')
    budget = report['cost_budget']
    console.print(f'cost: mean {_fmt(budget["mean_cost"])}, max {_fmt(budget["max_cost"])}, '
                  f'{budget["share_over_budget"]:.0%} of episodes over budget '
                  f'{budget["budget"]:g}')
    cusum = (report.get('motion_calibration') or {}).get('cusum')
    if cusum:
        console.print(f'motion CUSUM fed every step: h {cusum["h"]:.3g} from run lengths on '
                      f'{cusum["n_episodes"]} held-out calibration episodes '
                      f'({cusum["hours"] * 60:.1f} min): {_fmt(cusum["measured_per_hour"])} '
                      f'false alarms/h there; the i.i.d. design h {cusum["h_iid"]:.3g} '
                      f'(designed {cusum["iid_design_per_hour"]:g}/h) gave '
                      f'{_fmt(cusum["measured_iid_per_hour"])}/h')
    warning = (report.get('motion_calibration') or {}).get('warning')
    if warning:
        console.print(f'[yellow]warning:[/yellow] {warning}')
    if 'detection' in report:
        det = Table(title='injected faults')
        for column in ('family', 'injections', 'detected ≤ 2 s', 'median delay s', 'first alarm'):
            det.add_column(column, justify='right')
        for family, d in report['detection'].items():
            det.add_row(family, str(d['injections']), f'{d["detected_within_deadline"]:.0%}',
                        _fmt(d['median_delay_s']),
                        ', '.join(f'{k}×{n}' for k, n in d['first_alarm_kinds'].items()) or '-')
        console.print(det)
    if 'labels' in report and 'auroc' in report['labels']:
        lab = report['labels']
        scores = ', '.join(f'{k} {_fmt(v, 2)}' for k, v in lab['auroc'].items() if v is not None)
        console.print(f'AUROC for failure ({lab["n_failed"]} failed of {lab["n_labelled"]}): '
                      f'{scores}')
