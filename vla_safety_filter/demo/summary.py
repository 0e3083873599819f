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

"""What the demo proves, from what the observer saw: faults answered, contract kept, cost spent."""
from __future__ import annotations

from collections import Counter

from .command_audit import audit_observed
from .observer import Observed
from .. import names

#: a response later than this after a fault's last step is not counted as answering it (s)
GRACE_S = 2.0


def summarize(seen: Observed, scenario) -> dict:
    """Return the demo's verdict as a JSON-able dict (see `ok` for the pass/fail line)."""
    check = audit_observed(scenario.contract, scenario.seed_pose, seen)
    faults = [_fault_response(seen, scenario, k) for k in range(len(scenario.drill))]
    answered = sum(f['holds'] for f in faults)
    execspec = seen.statuses.get(names.EXECSPEC_STATUS, (names.STALE, 'no verdict seen', {}))
    costs = [cost for _, _, _, cost in seen.monitor_history]
    monitor = seen.statuses.get(names.MONITOR_STATUS, (names.STALE, '', {}))[2]
    activated = bool(seen.raw)
    summary = {
        'episode_steps': scenario.n_steps, 'key': scenario.key,
        'execspec': {'level': names.level_name(execspec[0]), 'message': execspec[1],
                     **{k: execspec[2].get(k)
                        for k in ('verdict', 'mean_drift', 'max_drift', 'reasons')}},
        'pipeline_activated': activated,
        'certificate': _certificate(scenario),
        'raw_actions': len(seen.raw), 'commands_sent': check['commands'], 'contract_audit': check,
        'interventions_by_reason': dict(Counter(reason for _, reason, _ in seen.events)),
        'interventions_outside_faults': len(seen.events) - answered,
        'faults': faults,
        'alarms': [{'kind': kind, 'step': step} for _, kind, step in seen.alarms],
        'max_episode_cost': max(costs) if costs else 0.0,
        'cost_budget': float(monitor.get('cost_budget', 'nan')),
    }
    contract_kept = check['outside_bounds'] == 0 and check['over_rate_limit'] == 0 \
        and check['non_finite'] == 0 and check.get('over_speed', 0) == 0
    if activated:
        summary['ok'] = contract_kept and all(f['answered'] for f in faults)
    else:   # refused: the proof is that nothing moved
        summary['ok'] = check['commands'] == 0 and execspec[0] == names.ERROR
    return summary


def _fault_response(seen: Observed, scenario, k: int) -> dict:
    """
    Return the filter interventions and monitor alarms that answer fault k.

    Those after its first faulty action, before the next fault starts and at most GRACE_S after
    its last faulty action.

    Hold delays are wall time from the faulty action's arrival; alarm delays are stream time
    (monitor steps after the fault's first step).
    """
    drill, dt = scenario.drill, scenario.dt
    fault = drill[k]
    grace = int(round(GRACE_S / dt))
    next_start = drill[k + 1].start if k + 1 < len(drill) else fault.stop + grace
    stop_step = min(fault.stop + grace, next_start)
    result = {'fault': fault.family, 'start_s': round(fault.start * dt, 3),
              'steps': fault.stop - fault.start, 'first_hold_s': None, 'holds': 0,
              'first_alarm_s': None, 'alarm': None}
    times = seen.raw_times
    if fault.start < len(times):
        onset = times[fault.start]
        until = times[stop_step] if stop_step < len(times) else float('inf')
        delays = [t - onset for t, _, _ in seen.events if onset <= t < until]
        result['holds'] = len(delays)
        result['first_hold_s'] = round(delays[0], 3) if delays else None
    for _, kind, step in seen.alarms:
        if fault.start <= step < stop_step:
            result['alarm'], result['first_alarm_s'] = kind, round((step - fault.start) * dt, 3)
            break
    result['answered'] = result['holds'] > 0 or result['alarm'] is not None
    return result


def _certificate(scenario) -> list[dict]:
    """Return the per-joint drift of the bridge's unnormalizer from the checkpoint's (or [])."""
    report = scenario.certificate
    if report['verdict'] == 'identical' or report['per_dim_drift_abs'] is None:
        return []
    return [{'joint': name, 'drift': report['per_dim_drift_abs'][j],
             'relative_drift': report['per_dim_drift'][j], 'scale': report['scale'][j],
             'shift': report['shift'][j]}
            for j, name in enumerate(scenario.contract.joint_names)]
