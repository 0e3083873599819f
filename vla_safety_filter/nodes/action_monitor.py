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
action_monitor: health metrics, CUSUMs and cost budget of the policy's actions on /diagnostics.

A thin shell over core.monitors: each /vla/raw_action's first point (the action due now) is one
update; a chunk (two or more points) first has its seam scored against the last executed command
on /vla/safe_action (`ActionMonitor.check_seam`); /vla/filter_events charge the cost budget;
/vla/episode resets the episode (and forgets the executed command).
core.monitors.SafetyStop decides /vla/safety_stop: `true` at each alarm onset (`stop_on: alarm`)
or budget overrun (`stop_on: budget`), `false` once that condition has cleared; the filter refuses
its `~/reset` while the stop is asserted.

Parameters: `calibration_file`, `rate_hz`, `profile`, `diagnostic_period` and `stop_clear_s` shape
what configure builds and are read-only (set them at startup). `cost_budget`, `stop_on` and
`hardware_id` may be set at any time: validated in a parameter callback and applied at once.
"""
from __future__ import annotations

import math
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from .common import (COMMAND_QOS, declare, Diagnostics, ERROR, GatedLifecycleNode, LATCHED_QOS,
                     require_valid_parameters, run, STALE, status)
from .. import names
from ..core.costs import CostModel
from ..core.errors import InputError
from ..core.joints import JointMap
from ..core.monitors import ActionMonitor, check_stop_on, SafetyStop
from ..core.params import CalibrationData
from ..core.profiles import get_profile, profile_names

DEFAULT_DIAGNOSTIC_PERIOD = 1.0


def _positive_finite(name: str, value) -> float:
    if not (isinstance(value, float) and math.isfinite(value) and value > 0):
        raise InputError(f'{name} must be a finite number > 0, got {value!r}')
    return value


class ActionMonitorNode(GatedLifecycleNode):
    """Lifecycle node: configure loads the calibration, activate starts monitoring."""

    def __init__(self, name: str = names.ACTION_MONITOR, **kwargs):
        super().__init__(name, **kwargs)
        self.calibration_file = declare(self, 'calibration_file', '',
                                        'calibration .npz written by `vla-safety calibrate`', True)
        self.rate_hz = declare(self, 'rate_hz', 0.0, 'action rate; 0 = the calibration rate', True)
        self.profile = declare(self, 'profile', 'generic',
                               f'monitor profile: {", ".join(profile_names())}', True)
        self.period = declare(self, 'diagnostic_period', DEFAULT_DIAGNOSTIC_PERIOD,
                              '/diagnostics period (s)', True)
        self.clear_s = declare(self, 'stop_clear_s', 0.3, 'alarm-free time (s) before the '
                               'monitor withdraws an alarm stop', True)
        self.budget = declare(self, 'cost_budget', 10.0, 'episode safety-cost budget (live)')
        self.stop_on = declare(self, 'stop_on', 'none',
                               'assert /vla/safety_stop on: none, alarm, budget (live)')
        self.hardware_id = declare(self, 'hardware_id', 'vla_policy',
                                   'hardware_id in /diagnostics (live)')
        self._lock = threading.Lock()
        self._monitor: ActionMonitor | None = None
        self._stop: SafetyStop | None = None
        self._stop_reason = ''  # an asserted stop outlives cleanup: withdrawn only once cleared
        self._executed = None   # last executed command (/vla/safe_action), for chunk seams
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = Diagnostics(self, self._usable_period(), self.diagnostic_status)

    def _usable_period(self) -> float:
        """diagnostic_period if valid; else the default, and configure refuses with the reason."""
        try:
            return _positive_finite('diagnostic_period', self.period)
        except InputError as exc:
            self.parameter_errors = [*getattr(self, 'parameter_errors', []), str(exc)]
            return DEFAULT_DIAGNOSTIC_PERIOD

    # ---- parameters ----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate-and-apply the live parameters (read-only ones are refused by rclpy)."""
        try:
            updates = {p.name: p.value for p in params}
            if 'stop_on' in updates:
                check_stop_on(updates['stop_on'])
            if 'cost_budget' in updates:
                CostModel(budget=_positive_finite('cost_budget', updates['cost_budget']))
        except InputError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.stop_on = updates.get('stop_on', self.stop_on)
            self.budget = updates.get('cost_budget', self.budget)
            self.hardware_id = updates.get('hardware_id', self.hardware_id)
            if self._stop is not None:
                self._stop.mode = self.stop_on
            if self._monitor is not None:
                self._monitor.set_budget(self.budget)
        return SetParametersResult(successful=True)

    def _validated(self) -> CalibrationData:
        """Check every parameter range and load the calibration (InputError on the first fault)."""
        require_valid_parameters(self)
        check_stop_on(self.stop_on)
        get_profile(self.profile)
        _positive_finite('cost_budget', self.budget)
        if not (math.isfinite(self.rate_hz) and self.rate_hz >= 0):
            raise InputError(f'rate_hz must be a finite number >= 0, got {self.rate_hz!r}')
        if not (math.isfinite(self.clear_s) and self.clear_s >= 0):
            raise InputError(f'stop_clear_s must be a finite number >= 0, got {self.clear_s!r}')
        if not self.calibration_file:
            raise InputError('parameter calibration_file is required')
        return CalibrationData.load(self.calibration_file)

    # ---- lifecycle (GatedLifecycleNode hooks: every exception is a refusal) ----------------
    def configure_node(self) -> None:
        cal = self._validated()
        dt = 1.0 / self.rate_hz if self.rate_hz > 0 else cal.dt
        monitor = ActionMonitor(cal, dt, self.profile, CostModel(budget=self.budget),
                                motion=cal.motion)
        stop = SafetyStop(self.stop_on, max(1, math.ceil(self.clear_s / dt)), self._stop_reason)
        self._map = JointMap(cal.joint_names)
        self._stop_pub = self.own(self.create_lifecycle_publisher(Bool, names.SAFETY_STOP,
                                                                  LATCHED_QOS))
        self.own(self.create_subscription(JointTrajectory, names.RAW_ACTION, self._on_action,
                                          COMMAND_QOS))
        self.own(self.create_subscription(JointTrajectory, names.SAFE_ACTION, self._on_executed,
                                          COMMAND_QOS))
        self.own(self.create_subscription(DiagnosticArray, names.FILTER_EVENTS, self._on_events,
                                          100))
        self.own(self.create_subscription(String, names.EPISODE, self._on_episode, LATCHED_QOS))
        with self._lock:
            self._monitor, self._stop = monitor, stop
            self._executed = None
        self.get_logger().info(f'configured: {len(cal.joint_names)} joints, '
                               f'profile {self.profile}, '
                               f'stop_on {self.stop_on}')

    def on_activate(self, state):
        result = super().on_activate(state)
        if self.active and self._stop.asserted:   # re-announce a stop carried over a cleanup
            self._stop_pub.publish(Bool(data=True))
        return result

    def cleanup_node(self) -> None:
        with self._lock:
            if self._stop is not None:
                self._stop_reason = self._stop.reason
            self._monitor, self._stop = None, None

    def report_state(self) -> None:
        self._diagnostics.publish()

    # ---- callbacks -----------------------------------------------------------------------
    def _on_action(self, msg: JointTrajectory) -> None:
        if not self.active or not msg.points:
            return
        try:
            action = self._map.reorder(msg.joint_names, msg.points[0].positions)
        except InputError:
            action = ()  # counted by the monitor as a shape fault
        with self._lock:
            seam = ()
            if len(msg.points) > 1 and self._executed is not None:
                seam = self._monitor.check_seam(action, self._executed)
            step = self._monitor.update(action)
            decision = self._stop.after_step(self._monitor, step._replace(
                alarms=seam + step.alarms))
            reason = self._stop.reason
        for alarm in seam + step.alarms:
            self.get_logger().warning(f'alarm {alarm.kind} at step {alarm.step}')
        self._announce(decision, reason)

    def _on_executed(self, msg: JointTrajectory) -> None:
        """Keep the last executed command (the filter's output) for the next chunk's seam."""
        if not self.active or not msg.points:
            return
        try:
            executed = self._map.reorder(msg.joint_names, msg.points[0].positions)
        except InputError:
            return
        with self._lock:
            self._executed = executed

    def _on_events(self, msg: DiagnosticArray) -> None:
        if not self.active:
            return
        with self._lock:
            self._monitor.record_interventions(s.message for s in msg.status)
            decision = self._stop.after_charge(self._monitor)
            reason = self._stop.reason
        self._announce(decision, reason)

    def _on_episode(self, msg: String) -> None:
        if not self.active:
            return
        with self._lock:
            summary = self._monitor.episode_summary()
            self._monitor.reset_episode()
            self._executed = None
            decision = self._stop.on_episode()
        if summary['n_steps']:
            self.get_logger().info(f'episode done: {summary["n_steps"]} steps, '
                                   f'{len(summary["alarms"])} alarms, cost {summary["cost"]:.3g}')
        self.get_logger().info(f'new episode: {msg.data}')
        self._announce(decision, '')

    def _announce(self, decision: bool | None, reason: str) -> None:
        """Publish a SafetyStop decision on /vla/safety_stop (None: nothing changed)."""
        if decision is None:
            return
        if decision:
            self.get_logger().error(f'safety stop asserted: {reason}')
        else:
            self.get_logger().info('safety stop withdrawn: the alarm condition has cleared')
        self._stop_pub.publish(Bool(data=decision))
        self._diagnostics.publish()

    def diagnostic_status(self) -> DiagnosticStatus:
        """Build the `vla_safety/monitor` status (one function for both /diagnostics paths)."""
        with self._lock:
            monitor, stop = self._monitor, self._stop
            reason = stop.reason if stop is not None else self._stop_reason
            stop_values = {'safety_stop': 'asserted' if reason else 'clear',
                           'stop_reason': reason or 'none', 'stop_on': self.stop_on}
            if monitor is not None and self.active:
                level, message, values = monitor.status()
                values = {**dict(values), **stop_values}
                if reason:
                    return status(names.MONITOR_STATUS, ERROR, f'safety stop asserted: {reason}',
                                  self.hardware_id, values)
                return status(names.MONITOR_STATUS, bytes([level]), message, self.hardware_id,
                              values)
        if self.refusal:
            return status(names.MONITOR_STATUS, ERROR, self.refusal, self.hardware_id, stop_values)
        text = 'inactive' if monitor is not None else 'unconfigured'
        return status(names.MONITOR_STATUS, STALE, text, self.hardware_id, stop_values)


def main() -> None:
    run(ActionMonitorNode)
