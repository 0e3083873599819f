"""`vla-safety demo`: calibrate on bundled real ALOHA episodes, then guard and monitor a faulty replay.

Offline (no ROS graph): the same core the nodes run. Faults seen in real VLA deployments are
injected into a real episode: a burst that skipped unnormalization, an oscillation and a NaN burst.
"""
from __future__ import annotations

import json
import os

import numpy as np

BUNDLED = os.path.join(os.path.dirname(__file__), '..', 'data', 'aloha_sim_4ep.npz')
SIDES = ('left', 'right')
ALOHA_JOINTS = tuple(f'{side}_{j}' for side in SIDES for j in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper'))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'demo', help='calibrate on real ALOHA demonstrations, then filter a faulty replay',
        description='Calibrates a contract on three bundled real ALOHA episodes, replays the fourth '
                    'with injected faults (a burst of unnormalized outputs, an oscillation, a NaN '
                    'burst) through the guard and the monitor, and prints what was caught.')
    p.add_argument('--output', default='out/demo', metavar='DIR', help='where files are written')
    p.add_argument('--seed', type=int, default=0, help='seed of the injected faults')
    p.set_defaults(func=run)


def _inject_faults(actions: np.ndarray, cal, contract, seed: int):
    """Faulty copy of one episode and the fault schedule (family, first step, last step)."""
    from ..core.faults import inject
    t_len = len(actions)
    faulty = actions.copy()
    span = contract.upper - contract.lower
    schedule = []
    burst = slice(t_len // 5, t_len // 5 + 10)
    faulty[burst] = (actions[burst] - cal.mu) / cal.sigma      # normalized output, unnormalizer skipped
    schedule.append(('unnormalized_burst', burst.start, burst.stop))
    at = t_len // 2
    osc, _ = inject(actions, 'oscillation', at, seed, span, cal.mu, contract.dt)
    faulty[at:at + 50] = osc[at:at + 50]
    schedule.append(('oscillation', at, at + 50))
    at = (4 * t_len) // 5
    nan, _ = inject(actions, 'nan', at, seed, span, cal.mu, contract.dt)
    faulty[at:at + 3] = nan[at:at + 3]
    schedule.append(('nan_burst', at, at + 3))
    return faulty, schedule


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..core.calibration import calibrate
    from ..core.contract import Guard
    from ..core.episodes import read_episodes
    from ..core.monitors import ActionMonitor
    from ..core.params import write_filter_params

    console = Console()
    os.makedirs(args.output, exist_ok=True)
    data = read_episodes(BUNDLED)
    dt = 1.0 / data.fps
    calib_eps, replay = data.episodes[:3], data.episodes[3]
    result = calibrate([e.actions for e in calib_eps], ALOHA_JOINTS, dt, holdout=0.0)
    contract, cal = result.contract, result.data
    cal_path = os.path.join(args.output, 'aloha_calibration.npz')
    cal.save(cal_path)
    write_filter_params(os.path.join(args.output, 'aloha_params.yaml'), contract,
                        'aloha_calibration.npz')

    faulty, schedule = _inject_faults(replay.actions, cal, contract, args.seed)
    guard = Guard(contract)
    guard.reset(contract.project_into_bounds(replay.state[0] if replay.state is not None
                                             else replay.actions[0]))
    monitor = ActionMonitor(cal, dt, 'generic')
    executed = np.empty_like(faulty)
    events_at: list[int] = []
    for t, action in enumerate(faulty):
        executed[t], events = guard.step(action)
        if events:
            events_at.append(t)
            monitor.record_interventions(e.reason for e in events)
        monitor.update(action)
    summary = monitor.episode_summary()

    inside = bool(np.all(executed >= contract.lower - 1e-9) and np.all(executed <= contract.upper + 1e-9))
    rate_ok = bool(np.all(np.abs(np.diff(executed, axis=0)) <= contract.max_step() + 1e-9))
    caught = []
    for family, start, stop in schedule:
        holds = [t for t in events_at if start <= t < stop + 25]
        alarms = [a['step'] for a in summary['alarms'] if start <= a['step'] < stop + 100]
        first = min(holds + alarms) if holds or alarms else None
        caught.append({'fault': family, 'step': start,
                       'first_response_step': first,
                       'delay_s': None if first is None else round((first - start) * dt, 3),
                       'interventions': len(holds), 'alarms': len(alarms)})

    table = Table(title=f'Injected faults in real ALOHA episode {replay.index} ({len(faulty)} steps, {data.fps:g} Hz)')
    for col in ('fault', 'at step', 'caught after', 'interventions', 'alarms'):
        table.add_column(col)
    for c in caught:
        table.add_row(c['fault'], str(c['step']),
                      'missed' if c['delay_s'] is None else f'{c["delay_s"]:.2f} s',
                      str(c['interventions']), str(c['alarms']))
    console.print(table)
    console.print(f'commands executed: {len(executed)}; interventions by reason: '
                  f'{ {k: v for k, v in guard.counts.items() if v} }')
    console.print(f'every command inside the bounds: {inside}; every step within the rate limit: {rate_ok}')
    console.print(f'episode safety cost {summary["cost"]:.3g} (budget {monitor.budget.model.budget:g}): '
                  f'level {summary["level"]}')
    report = {'faults': caught, 'interventions': guard.counts, 'inside_bounds': inside,
              'rate_limited': rate_ok, 'monitor': summary, 'calibration': result.report}
    report_path = os.path.join(args.output, 'demo_report.json')
    with open(report_path, 'w') as fh:
        json.dump(report, fh, indent=2, default=lambda v: None)
    np.savez(os.path.join(args.output, 'demo_record.npz'), requested=faulty, executed=executed)
    console.print(f'wrote {args.output}/aloha_params.yaml (filter parameters), {report_path}, '
                  f'{args.output}/demo_record.npz')
    return 0 if inside and rate_ok and all(c['delay_s'] is not None for c in caught) else 1
