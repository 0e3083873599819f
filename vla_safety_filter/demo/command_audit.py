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
The demos' contract audit of what the observer saw, in one place for both demos.

Bounds and finiteness are judged on what reached the controller. Rate, velocity and
acceleration over elapsed time are judged on /vla/safe_action at its header stamps, the guard's
own tick times: arrival times add DDS delivery jitter the filter cannot see (under a loaded CI
machine, more than a control period), which would blame the filter for the transport.
"""
from __future__ import annotations

import numpy as np

from .observer import Observed
from ..core.contract import audit

#: arrival-time audit window, in control periods (reported, not judged: delivery jitter)
ARRIVAL_WINDOW_PERIODS = 5
#: The filter publishes every tick while active (holds included); a silence longer than this many
#: periods is a watchdog stop or a deactivation, after which the guard re-seeds from the measured
#: /joint_states, so the rate limit restarts there (a stall is shorter; its step is capped anyway).
SILENCE_PERIODS = 5


def audit_observed(contract, seed, seen: Observed, since: float = -np.inf,
                   until: float = np.inf) -> dict:
    """Audit the commands seen in [since, until) observer time (see the module docstring)."""
    times = np.asarray(seen.command_times, dtype=float)
    sent = np.array(seen.commands, dtype=float).reshape(-1, contract.dim)
    chosen = (times >= since) & (times < until)
    sent, times = sent[chosen], times[chosen]
    arrived = np.asarray(seen.safe_times, dtype=float)
    chosen = (arrived >= since) & (arrived < until)
    safe = np.array(seen.safe, dtype=float).reshape(-1, contract.dim)[chosen]
    stamps = np.asarray(seen.safe_stamps, dtype=float)[chosen]
    seed = seed if seed is not None else (safe[0] if len(safe) else np.zeros(contract.dim))
    report = _audit_segments(contract, seed, safe, stamps)
    controller = audit(contract, seed, sent)
    report.update(commands=controller['commands'], non_finite=controller['non_finite'],
                  outside_bounds=controller['outside_bounds'], guard_commands=len(safe))
    if len(sent) > 1:
        dt = contract.dt
        on_arrival = audit(contract, seed, sent, times, window=ARRIVAL_WINDOW_PERIODS * dt,
                           time_slack=dt)
        report['max_arrival_speed_ratio'] = on_arrival['max_speed_ratio']
    return report


def _audit_segments(contract, seed, safe: np.ndarray, stamps: np.ndarray) -> dict:
    """Audit the stamped stream one publishing segment at a time (see SILENCE_PERIODS)."""
    cuts = np.flatnonzero(np.diff(stamps) > SILENCE_PERIODS * contract.dt) + 1
    reports = []
    for rows, times in zip(np.split(safe, cuts), np.split(stamps, cuts)):
        start = seed if not reports else rows[0]     # later segments start re-seeded
        reports.append(audit(contract, start, rows, times if len(rows) > 1 else None))
    return {**merge_audits(reports), 'segments': len(reports)}


def merge_audits(reports) -> dict:
    """Merge audit reports of parts of a stream: counts add up, `max_*` ratios take the largest."""
    total: dict = {}
    for report in reports:
        for key, value in report.items():
            merge = max if key.startswith('max_') else (lambda a, b: a + b)
            total[key] = merge(total[key], value) if key in total else value
    return total
