"""safety_filter: guards /vla/raw_action against the contract and commands the ros2_control controller.

A thin shell over core.executive: messages in, one Executive.tick() per control period, messages out.
"""
from __future__ import annotations

import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..core.errors import InputError
from ..core.executive import HOLDING, LATCHED, RUNNING, STOPPED, Executive
from ..core.joints import JointMap
from ..core.params import contract_from_params
from .common import (GatedLifecycleNode, COMMAND_QOS, ERROR, LATCHED_QOS, OK, STALE, STATE_QOS, WARN,
                     Diagnostics, declare, duration, monotonic, require_valid_parameters, run, status)

OUTPUTS = ('forward_command', 'joint_trajectory')
LEVEL_OF_STATE = {RUNNING: OK, HOLDING: WARN, STOPPED: ERROR, LATCHED: ERROR}


class SafetyFilter(GatedLifecycleNode):
    """Lifecycle node: configure reads the contract, activate seeds from /joint_states."""

    def __init__(self, name: str = 'safety_filter', **kwargs):
        super().__init__(name, **kwargs)
        ro = dict(read_only=True)
        self.p = {
            'joint_names': declare(self, 'joint_names', Parameter.Type.STRING_ARRAY,
                                   'contract joint order', **ro),
            'lower': declare(self, 'lower', Parameter.Type.DOUBLE_ARRAY, 'lower bounds', **ro),
            'upper': declare(self, 'upper', Parameter.Type.DOUBLE_ARRAY, 'upper bounds', **ro),
            'max_velocity': declare(self, 'max_velocity', Parameter.Type.DOUBLE_ARRAY,
                                    'per-joint velocity limit (units/s)', **ro),
            'max_acceleration': declare(self, 'max_acceleration', Parameter.Type.DOUBLE_ARRAY,
                                        'optional per-joint acceleration limit', **ro),
            'control_rate_hz': declare(self, 'control_rate_hz', 100.0, 'guard/command rate', **ro),
            'velocity_scaling': declare(self, 'velocity_scaling', 'per_joint',
                                        'per_joint clamps each joint; uniform keeps direction', **ro),
            'mode': declare(self, 'mode', 'enforce', 'enforce or monitor_only (dry run)', **ro),
        }
        self.controller = declare(self, 'controller_name', 'forward_position_controller',
                                  'ros2_control controller to command')
        self.output = declare(self, 'output', 'forward_command',
                              'forward_command (Float64MultiArray) or joint_trajectory')
        self.controller_joints = declare(self, 'controller_joints', Parameter.Type.STRING_ARRAY,
                                         'controller joint order (default: joint_names)')
        self.command_timeout = declare(self, 'command_timeout', 0.1,
                                       'no fresh action for this long -> hold; twice -> stop (s)')
        self.state_timeout = declare(self, 'joint_states_timeout', 0.5,
                                     'activation needs /joint_states younger than this (s)')
        declare(self, 'calibration_file', '', 'calibration file of the contract (for the monitor)')
        self._lock = threading.Lock()
        self._executive: Executive | None = None
        self._last_state = STOPPED
        self._joint_state = None  # (monotonic time, names, positions, velocities)
        self._entities: list = []
        self._refusal = ''
        self._diagnostics = Diagnostics(self, 1.0, self.diagnostic_status)
        self._state_sub = self.create_subscription(JointState, '/joint_states', self._on_joint_state,
                                                   STATE_QOS)

    # ---- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            require_valid_parameters(self)
            params = {k: v for k, v in self.p.items() if v is not None}
            contract = contract_from_params(params, source=f'{self.get_name()} parameters')
            if self.output not in OUTPUTS:
                raise InputError(f'output must be one of {OUTPUTS}, got {self.output!r}')
            self._executive = Executive(contract, float(self.command_timeout))
            self._contract_map = JointMap(contract.joint_names)
            out_names = tuple(self.controller_joints or contract.joint_names)
            self._out_names = out_names
            self._out_index = JointMap(out_names).indices(contract.joint_names)
        except InputError as exc:
            return self._refuse_transition(f'configure refused: {exc}')
        self._refusal = ''
        if self.output == 'forward_command':
            self._cmd_pub = self.create_lifecycle_publisher(
                Float64MultiArray, f'/{self.controller}/commands', COMMAND_QOS)
        else:
            self._cmd_pub = self.create_lifecycle_publisher(
                JointTrajectory, f'/{self.controller}/joint_trajectory', COMMAND_QOS)
        self._safe_pub = self.create_lifecycle_publisher(JointTrajectory, '/vla/safe_action',
                                                         COMMAND_QOS)
        self._event_pub = self.create_publisher(DiagnosticArray, '/vla/filter_events', 100)
        self._entities = [
            self.create_subscription(JointTrajectory, '/vla/raw_action', self._on_raw_action,
                                     COMMAND_QOS),
            self.create_subscription(Bool, '/vla/safety_stop', self._on_stop, LATCHED_QOS),
            self.create_service(Trigger, '~/reset', self._on_reset),
            self.create_timer(contract.dt, self._on_tick,
                              callback_group=MutuallyExclusiveCallbackGroup()),
        ]
        self.get_logger().info(
            f'configured: {contract.dim} joints at {1 / contract.dt:g} Hz, mode {contract.mode}, '
            f'output {self.output} on /{self.controller}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        js = self._joint_state
        if js is None or monotonic() - js[0] > self.state_timeout:
            return self._refuse_transition('activation refused: no recent /joint_states '
                                           f'(need one younger than {self.state_timeout:g} s)')
        try:
            idx = self._contract_map.indices(js[1], allow_extra=True)
            velocity = js[3][idx] if len(js[3]) == len(js[1]) else None
            with self._lock:
                self._executive.start(js[2][idx], monotonic(), velocity)
        except InputError as exc:
            return self._refuse_transition(f'activation refused: /joint_states {exc}')
        self._refusal = ''
        self.get_logger().info('active: seeded from /joint_states')
        return super().on_activate(state)

    def _refuse_transition(self, why: str) -> TransitionCallbackReturn:
        """Log and report (ERROR on /diagnostics until the next success) a refused transition."""
        self._refusal = why
        self.get_logger().error(why)
        self._diagnostics.publish()
        return TransitionCallbackReturn.FAILURE

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.active = False
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        for entity in self._entities:
            entity.destroy()
        self._entities = []
        self._executive = None

    # ---- inputs ----------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        self._joint_state = (monotonic(), tuple(msg.name), np.asarray(msg.position, dtype=float),
                             np.asarray(msg.velocity, dtype=float))

    def _on_raw_action(self, msg: JointTrajectory) -> None:
        if not self.active:
            return
        now = monotonic()
        try:
            idx = self._contract_map.indices(msg.joint_names)
        except InputError as exc:
            self._refuse('unknown_joint', exc, now)
            return
        if any(len(p.positions) != len(msg.joint_names) for p in msg.points):
            self._refuse('shape', 'a point has a positions length different from joint_names', now)
            return
        targets = np.array([p.positions for p in msg.points], dtype=float).reshape(
            len(msg.points), len(msg.joint_names))[:, idx]
        offsets = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
        with self._lock:
            events = self._executive.on_chunk(targets, offsets, now)
        if events:
            self.get_logger().warning(f'/vla/raw_action refused ({events[0].reason}), holding',
                                   throttle_duration_sec=1.0)
            self._publish_events(events)

    def _refuse(self, reason: str, why, now: float) -> None:
        with self._lock:
            event = self._executive.reject(reason, now)
        self.get_logger().warning(f'/vla/raw_action refused, holding: {why}', throttle_duration_sec=1.0)
        self._publish_events((event,))

    def _on_stop(self, msg: Bool) -> None:
        if msg.data and self._executive is not None:
            with self._lock:
                self._executive.latch('/vla/safety_stop')
            self.get_logger().error('latched stop from /vla/safety_stop: call ~/reset to resume')

    def _on_reset(self, request, response):
        if self._executive is None:
            response.success, response.message = False, 'not configured'
            return response
        with self._lock:
            was = self._executive.reset_latch()
        response.success = True
        response.message = 'latched stop cleared' if was else 'no latched stop'
        self.get_logger().info(response.message)
        return response

    # ---- control tick ----------------------------------------------------------------------
    def _on_tick(self) -> None:
        if not self.active:
            return
        with self._lock:
            tick = self._executive.tick(monotonic())
        if tick.command is not None:
            self._publish_command(tick.command)
        if tick.events:
            self._publish_events(tick.events)
        if tick.state != self._last_state:
            if tick.state == RUNNING:
                self.get_logger().info(f'filter state {self._last_state} -> {tick.state}')
            else:
                self.get_logger().warning(f'filter state {self._last_state} -> {tick.state}')
            self._last_state = tick.state
            self._publish_status()

    def _publish_command(self, command: np.ndarray) -> None:
        ordered = command[self._out_index].tolist()
        dt = self._executive.contract.dt
        if self.output == 'forward_command':
            self._cmd_pub.publish(Float64MultiArray(data=ordered))
        else:
            self._cmd_pub.publish(_trajectory(self._out_names, ordered, dt))
        self._safe_pub.publish(_trajectory(self._executive.contract.joint_names, command.tolist(), dt))

    def _publish_events(self, events) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status('vla_safety/filter/event', WARN, e.reason, self.get_name(), {
            'step': e.step, 'joint': e.joint, 'reason': e.reason, 'requested': e.requested,
            'executed': e.executed, 'magnitude': e.magnitude}) for e in events]
        self._event_pub.publish(msg)

    def _publish_status(self) -> None:
        self._diagnostics.publish()

    def diagnostic_status(self) -> DiagnosticStatus:
        """The `vla_safety/filter` status (the one function both /diagnostics paths publish)."""
        ex = self._executive
        if ex is None:
            level, text = (ERROR, self._refusal) if self._refusal else (STALE, 'unconfigured')
            return status('vla_safety/filter', level, text, self.get_name(), {'state': 'unconfigured'})
        level = LEVEL_OF_STATE[ex.state] if self.active else OK
        text = ex.state if self.active else 'inactive'
        if ex.state == LATCHED:
            text = f'latched stop ({ex.latched_reason}); call ~/reset'
        if self._refusal and not self.active:
            level, text = ERROR, self._refusal
        values = {'state': ex.state if self.active else 'inactive',
                  **{f'interventions.{k}': v for k, v in ex.guard.counts.items()}}
        return status('vla_safety/filter', level, text, self.get_name(), values)


def _trajectory(names, positions, dt: float) -> JointTrajectory:
    """One-point trajectory reached after dt (time_from_start 0 would make a JTC jump)."""
    return JointTrajectory(joint_names=list(names), points=[
        JointTrajectoryPoint(positions=positions, time_from_start=duration(dt))])


def main() -> None:
    run(SafetyFilter)
