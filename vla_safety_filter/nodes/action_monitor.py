"""action_monitor: health metrics, conformal CUSUM and cost budget of the policy's actions on /diagnostics.

A thin shell over core.monitors.ActionMonitor: each /vla/raw_action's first point (the action due
now) is one update; /vla/filter_events charge the cost budget; /vla/episode resets the episode.
With `stop_on: alarm` every alarm onset latches /vla/safety_stop for the filter (again after a
`~/reset` of the filter); with `stop_on: budget` the first budget overrun of an episode does.
"""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from ..core.costs import ERROR as LEVEL_ERROR
from ..core.costs import CostModel
from ..core.errors import InputError
from ..core.joints import JointMap
from ..core.monitors import ActionMonitor
from ..core.params import CalibrationData
from ..core.profiles import profile_names
from .common import (COMMAND_QOS, ERROR, LATCHED_QOS, STALE, Diagnostics, GatedLifecycleNode, declare,
                     require_valid_parameters, run, status)

STOP_ON = ('none', 'alarm', 'budget')
STATUS_NAME = 'vla_safety/monitor'


class ActionMonitorNode(GatedLifecycleNode):
    """Lifecycle node: configure loads the calibration, activate starts monitoring."""

    def __init__(self, name: str = 'action_monitor', **kwargs):
        super().__init__(name, **kwargs)
        self.calibration_file = declare(self, 'calibration_file', '',
                                        'calibration .npz written by `vla-safety calibrate`')
        self.rate_hz = declare(self, 'rate_hz', 0.0, 'action rate; 0 = the calibration rate')
        self.profile = declare(self, 'profile', 'generic',
                               f'monitor profile: {", ".join(profile_names())}')
        self.budget = declare(self, 'cost_budget', 10.0, 'episode safety-cost budget')
        self.stop_on = declare(self, 'stop_on', 'none', 'latch /vla/safety_stop on: none, alarm, budget')
        self.period = declare(self, 'diagnostic_period', 1.0, '/diagnostics period (s)')
        self.hardware_id = declare(self, 'hardware_id', 'vla_policy', 'hardware_id in /diagnostics')
        self._lock = threading.Lock()
        self._monitor: ActionMonitor | None = None
        self._over_budget = False
        self._refusal = ''
        self._diagnostics = Diagnostics(self, self.period, self.diagnostic_status)

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            require_valid_parameters(self)
            if self.stop_on not in STOP_ON:
                raise InputError(f'stop_on must be one of {STOP_ON}, got {self.stop_on!r}')
            if not self.calibration_file:
                raise InputError('parameter calibration_file is required')
            cal = CalibrationData.load(self.calibration_file)
            dt = 1.0 / self.rate_hz if self.rate_hz > 0 else cal.dt
            self._monitor = ActionMonitor(cal, dt, self.profile, CostModel(budget=self.budget))
            self._map = JointMap(cal.joint_names)
        except InputError as exc:
            self._refusal = f'configure refused: {exc}'
            self.get_logger().error(self._refusal)
            self._diagnostics.publish()
            return TransitionCallbackReturn.FAILURE
        self._refusal = ''
        self._stop_pub = self.create_lifecycle_publisher(Bool, '/vla/safety_stop', LATCHED_QOS)
        self._subs = [
            self.create_subscription(JointTrajectory, '/vla/raw_action', self._on_action, COMMAND_QOS),
            self.create_subscription(DiagnosticArray, '/vla/filter_events', self._on_events, 100),
            self.create_subscription(String, '/vla/episode', self._on_episode, LATCHED_QOS),
        ]
        self.get_logger().info(f'configured: {len(cal.joint_names)} joints, profile {self.profile}, '
                               f'stop_on {self.stop_on}')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        for sub in self._subs:
            sub.destroy()
        self._subs, self._monitor = [], None
        return TransitionCallbackReturn.SUCCESS

    def _on_action(self, msg: JointTrajectory) -> None:
        if not self.active or not msg.points:
            return
        try:
            action = self._map.reorder(msg.joint_names, msg.points[0].positions)
        except InputError:
            action = ()  # counted by the monitor as a shape fault
        with self._lock:
            step = self._monitor.update(action)
        for alarm in step.alarms:
            self.get_logger().warning(f'alarm {alarm.kind} at step {alarm.step}')
            if self.stop_on == 'alarm':
                self._latch_stop(f'alarm {alarm.kind}')
        if self.stop_on == 'budget' and step.level == LEVEL_ERROR and not self._over_budget:
            self._over_budget = True
            self._latch_stop('cost budget exceeded')

    def _on_events(self, msg: DiagnosticArray) -> None:
        if self.active:
            with self._lock:
                self._monitor.record_interventions(s.message for s in msg.status)

    def _on_episode(self, msg: String) -> None:
        if self._monitor is None:
            return
        with self._lock:
            summary = self._monitor.episode_summary()
            self._monitor.reset_episode()
        self._over_budget = False
        if summary['n_steps']:
            self.get_logger().info(f'episode done: {summary["n_steps"]} steps, '
                                   f'{len(summary["alarms"])} alarms, cost {summary["cost"]:.3g}')
        self.get_logger().info(f'new episode: {msg.data}')

    def _latch_stop(self, why: str) -> None:
        self.get_logger().error(f'safety stop latched: {why}')
        self._stop_pub.publish(Bool(data=True))

    def diagnostic_status(self) -> DiagnosticStatus:
        """The `vla_safety/monitor` status (the one function both /diagnostics paths publish)."""
        if self._monitor is not None and self.active:
            with self._lock:
                level, message, values = self._monitor.status()
            return status(STATUS_NAME, bytes([level]), message, self.hardware_id, dict(values))
        if self._refusal:
            return status(STATUS_NAME, ERROR, self._refusal, self.hardware_id)
        return status(STATUS_NAME, STALE, 'inactive', self.hardware_id)


def main() -> None:
    run(ActionMonitorNode)
