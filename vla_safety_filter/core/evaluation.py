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
Offline evaluation of the action monitor on recorded episodes (what `vla-safety evaluate` reports).

Each episode is streamed through the `ActionMonitor` exactly as the node would (optionally
behind the contract's guard, whose interventions are charged to the cost budget). Clean episodes
(without injected faults, and not labelled as failures) give the false-alarm rate per hour of
in-control motion; injected faults give detection rate and delay; success labels give the AUROC
of each per-episode statistic for predicting failure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Contract, Guard
from .costs import budget_summary, CostModel
from .errors import InputError
from .faults import action_range, inject
from .monitors import ActionMonitor, METRIC_NAMES
from .params import CalibrationData
from .profiles import MonitorProfile
from .sequential import MotionCalibration

DETECTION_DEADLINE_S = 2.0


@dataclass(frozen=True)
class EvalSettings:
    """Everything that is the same for every episode of one evaluation."""

    calibration: CalibrationData
    dt: float
    profile: MonitorProfile
    costs: CostModel
    contract: Contract | None = None
    motion: MotionCalibration | None = None   # step scores; None = step alarms disarmed


def check_compatible(settings: EvalSettings, dim: int, joint_names, source: str) -> None:
    """Check that episodes have the calibration's dimension and, if named, its joint order."""
    cal_names = tuple(settings.calibration.joint_names)
    if dim != len(cal_names):
        raise InputError(f'{source}: actions have {dim} dimensions but the calibration has '
                         f'{len(cal_names)} joints {list(cal_names)}')
    names = tuple(joint_names or ())
    generic = tuple(f'joint_{i}' for i in range(dim))
    if names and names != generic and cal_names != generic and names != cal_names:
        raise InputError(f'{source}: joint order {list(names)} differs from the calibration '
                         f'{list(cal_names)}')


def run_episode(settings: EvalSettings, index: int, actions: np.ndarray,
                fault_step: int | None = None) -> dict:
    """Stream one episode through guard + monitor; the per-episode record of the report."""
    monitor = ActionMonitor(settings.calibration, settings.dt, settings.profile, settings.costs,
                            settings.motion)
    if actions.shape[0] < monitor.window:
        raise InputError(f'episode {index} has {actions.shape[0]} steps, fewer than the monitor '
                         f'window of {monitor.window} steps ({settings.profile.window_s} s)')
    guard = None
    if settings.contract is not None:
        guard = Guard(settings.contract)
        first = actions[np.isfinite(actions).all(axis=1)]
        guard.reset(settings.contract.project_into_bounds(first[0] if len(first) else
                                                          settings.calibration.mu))
    for action in actions:
        monitor.update(action)
        if guard is not None:
            _, events = guard.step(action)
            if events:
                monitor.record_interventions(e.reason for e in events)
    summary = monitor.episode_summary()
    summary = {'episode': int(index), 'duration_s': actions.shape[0] * settings.dt, **summary}
    if fault_step is not None:
        after = [a for a in summary['alarms'] if a['step'] >= fault_step]
        first = after[0] if after else None
        summary['false_alarms_before_fault'] = len(summary['alarms']) - len(after)
        summary['detection_step'] = first['step'] if first else None
        summary['detection_kind'] = first['kind'] if first else None
        summary['detection_delay_s'] = ((first['step'] - fault_step) * settings.dt
                                        if first else None)
        summary['detected'] = bool(first and summary['detection_delay_s'] <= DETECTION_DEADLINE_S)
    return summary


def auroc(scores, failed) -> float | None:
    """Probability that a failed episode scores higher than a successful one (ties count 1/2)."""
    scores, failed = np.asarray(scores, dtype=np.float64), np.asarray(failed, dtype=bool)
    pos, neg = scores[failed], scores[~failed]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def episode_statistics(record: dict) -> dict:
    """Length-normalized per-episode statistics used as failure predictors."""
    minutes = record['duration_s'] / 60.0
    stats = {f'{name}_mean': record['metric_mean'][name] for name in METRIC_NAMES}
    stats.update({f'{name}_max': record['metric_max'][name] for name in METRIC_NAMES})
    stats['momentum_coherence_mean'] = -stats['momentum_coherence_mean']  # low coherence = bad
    stats['spectral_low_ratio_mean'] = -stats['spectral_low_ratio_mean']
    stats['exceedance_rate'] = record['exceedance_rate']
    stats['step_exceedance_rate'] = record.get('step_exceedance_rate', 0.0)
    stats['step_score_max'] = record.get('step_score_max', 0.0)
    stats['window_exceedance_rate'] = record.get('window_exceedance_rate', 0.0)
    stats['window_score_max'] = record.get('window_score_max', 0.0)
    stats['alarms_per_minute'] = len(record['alarms']) / minutes
    stats['cost_per_minute'] = record['cost'] / minutes
    stats['episode_length_s'] = record['duration_s']  # a control: must not be what predicts
    return stats


def label_auroc(records: list[dict], labels: dict[int, bool]) -> dict:
    """AUROC per statistic for predicting failure, over the episodes that have a label."""
    labelled = [r for r in records if r['episode'] in labels]
    failed = [not labels[r['episode']] for r in labelled]
    stats = [episode_statistics(r) for r in labelled]
    result = {'n_labelled': len(labelled), 'n_failed': int(sum(failed))}
    if stats:
        result['auroc'] = {key: auroc([s[key] for s in stats], failed) for key in stats[0]}
    return result


def false_alarm_summary(records: list[dict], dt: float) -> dict:
    """Alarms on clean episodes per hour of in-control motion, overall and per kind."""
    hours = sum(r['n_steps'] for r in records) * dt / 3600.0
    by_kind: dict[str, int] = {}
    for record in records:
        for alarm in record['alarms']:
            by_kind[alarm['kind']] = by_kind.get(alarm['kind'], 0) + 1
    total = sum(by_kind.values())
    return {'false_alarms': total, 'in_control_hours': hours,
            'false_alarms_per_hour': total / hours if hours else None,
            'false_alarms_by_kind': by_kind,
            'episodes_with_false_alarm': sum(1 for r in records if r['alarms'])}


def detection_summary(records: list[dict]) -> dict:
    """Per fault family: share detected within the deadline, median delay, which alarm fired."""
    families: dict[str, list[dict]] = {}
    for record in records:
        families.setdefault(record['fault']['family'], []).append(record)
    out = {}
    for family, runs in families.items():
        delays = [r['detection_delay_s'] for r in runs if r['detection_delay_s'] is not None]
        kinds: dict[str, int] = {}
        for r in runs:
            if r['detected']:
                kinds[r['detection_kind']] = kinds.get(r['detection_kind'], 0) + 1
        out[family] = {
            'injections': len(runs),
            'detected_within_deadline': float(np.mean([r['detected'] for r in runs])),
            'detected_at_all': len(delays) / len(runs),
            'median_delay_s': float(np.median(delays)) if delays else None,
            'first_alarm_kinds': kinds,
        }
    return out


def fault_steps(n_steps: int, window: int, dt: float, repeats: int, at: int | None,
                rng: np.random.Generator) -> list[int]:
    """Fault onsets: `at` if given, else random steps after one window and before the last 2 s."""
    if at is not None:
        return [at] * repeats
    last = n_steps - round(DETECTION_DEADLINE_S / dt) - 1
    if last <= window:
        return [max(0, min(window, n_steps - 1))] * repeats
    return [int(s) for s in rng.integers(window, last, size=repeats)]


def evaluate(settings: EvalSettings, episodes: list[tuple[int, np.ndarray]],
             labels: dict[int, bool] | None = None, families: list[str] | None = None,
             at: int | None = None, seed: int = 0, repeats: int = 1,
             progress=None) -> dict:
    """
    Build the full report: clean episodes, false alarms, cost, AUROC, injected detections.

    `progress(done, total)`, if given, is called after every episode run (clean or injected).
    """
    total = len(episodes) * (1 + len(families or ()) * repeats)
    done = iter(range(1, total + 1))

    def ran(record: dict) -> dict:
        if progress is not None:
            progress(next(done), total)
        return record

    clean = [ran(run_episode(settings, index, actions)) for index, actions in episodes]
    # every alarm on an episode not labelled as a failure is a false alarm
    in_control = [r for r in clean if not labels or labels.get(r['episode'], True)]
    report = {
        'profile': settings.profile.name,
        'dt': settings.dt,
        'episodes': clean,
        'in_control_episodes': [r['episode'] for r in in_control],
        **false_alarm_summary(in_control, settings.dt),
        'cost_budget': budget_summary((r['cost'] for r in clean), settings.costs.budget),
    }
    if labels:
        report['labels'] = label_auroc(clean, labels)
    if families:
        cal = settings.calibration
        span = action_range(cal.sigma)
        rng = np.random.default_rng(seed)
        window = max(4, round(settings.profile.window_s / settings.dt))
        injected = []
        for index, actions in episodes:
            if at is not None and not 0 <= at < actions.shape[0]:
                raise InputError(f'--at {at} is outside episode {index} '
                                 f'(0..{actions.shape[0] - 1})')
            for family in families:
                for k, step in enumerate(fault_steps(actions.shape[0], window, settings.dt,
                                                     repeats, at, rng)):
                    faulty, fault = inject(actions, family, step, seed + k, span, cal.mu,
                                           settings.dt)
                    record = ran(run_episode(settings, index, faulty, fault_step=step))
                    record['fault'] = fault.to_dict()
                    injected.append(record)
        report['injections'] = injected
        report['detection'] = detection_summary(injected)
    return report
