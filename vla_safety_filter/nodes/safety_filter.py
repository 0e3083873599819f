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
safety_filter: guard /vla/raw_action with the contract and command the ros2_control controller.

A thin shell over core.executive: messages in, Executive calls out. A chunk whose first point is
due executes on arrival (`Executive.on_arrival`); the control timer, on a steady clock (also
under use_sim_time), fills the gaps (`Executive.on_timer`). Outgoing messages are serialized
once and each command is written into their bytes (rclpy's per-publish conversion skipped).
Achieved timing (core.timing) is on /diagnostics. Every parameter is read-only: what the filter
enforces cannot change under a running arm. In `mode: monitor_only`
nothing is ever published on the controller topic; the guarded stream goes to /vla/safe_action
only (a shadow run). /vla/safety_stop is asserted while any live publisher's last value is true
(core.stop_sources, publishers told apart by the GID rclpy >= 9 gives each message; where no GID
is given, a `false` releases only once every latched publisher's value is re-read:
core.stop_reread).
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidTopicNameException
from rclpy.executors import Executor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
import rclpy.subscription
from rclpy.time import Time
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from .common import (ANY_PUBLISHER_QOS, check_realtime_priority, COMMAND_QOS, declare,
                     Diagnostics, duration, ERROR, FilledMessage, GatedLifecycleNode, GcPolicy,
                     LATCHED_QOS, monotonic, OK, realtime_thread, require_valid_parameters, run,
                     SerializedMessage, STALE, STATE_QOS, status, WARN)
from .. import names
from ..core.contract import speed_scale_value
from ..core.errors import InputError
from ..core.escalation import Escalation, NORMAL
from ..core.executive import Executive, HOLDING, IDLE, LATCHED, RUNNING, STOPPED
from ..core.joints import JointMap
from ..core.params import contract_from_params
from ..core.stop_reread import (LATCHED_PUBLISHERS, UnidentifiedStops,
                                VOLATILE_PUBLISHERS)
from ..core.stop_sources import StopSources
from ..core.timing import ControlTiming, GcPauses

OUTPUTS = ('forward_command', 'joint_trajectory')
LEVEL_OF_STATE = {RUNNING: OK, IDLE: OK, HOLDING: WARN, STOPPED: ERROR, LATCHED: ERROR}
#: /vla/episode value (alone, or followed by details after a space, as sim_world sends) that says
#: the episode has finished: the filter then idles.
EPISODE_DONE = 'done'
#: Time allowed for the last braking command to be delivered before a process exits (s).
DELIVERY_S = 0.1
#: The /vla/safety_stop readers keep this many samples until taken: on a keyless topic a depth of
#: 1 would let one publisher's `false` overwrite another's `true` before the callback runs.
STOP_DEPTH = 100
#: Source of /vla/safety_stop messages when rclpy does not give the publisher's GID (rclpy < 9,
#: Jazzy): all of them are one source, the last value wins.
UNIDENTIFIED = 'unidentified'
#: How long a probe re-reading the latched /vla/safety_stop publishers runs (s): those matched
#: half-way have had half of it to send their value.
PROBE_TIMEOUT_S = 1.0
#: How often the sources of /vla/safety_stop are checked against the ROS graph (s).
STOP_SOURCES_PERIOD = 1.0
#: Whether this rclpy gives a subscription callback each message's publisher GID (rclpy >= 9).
GID_IN_MESSAGE_INFO = 'publisher_gid' in getattr(
    getattr(rclpy.subscription, 'MessageInfo', None), '__annotations__', {})


class SafetyFilter(GatedLifecycleNode):
    """Lifecycle node: configure reads the contract, activate needs a fresh /joint_states."""

    def __init__(self, name: str = 'safety_filter', **kwargs):
        super().__init__(name, **kwargs)
        ro = {'read_only': True}
        self.p = {
            'joint_names': declare(self, 'joint_names', Parameter.Type.STRING_ARRAY,
                                   'contract joint order', **ro),
            'lower': declare(self, 'lower', Parameter.Type.DOUBLE_ARRAY, 'lower bounds', **ro),
            'upper': declare(self, 'upper', Parameter.Type.DOUBLE_ARRAY, 'upper bounds', **ro),
            'max_velocity': declare(self, 'max_velocity', Parameter.Type.DOUBLE_ARRAY,
                                    'per-joint velocity limit (units/s)', **ro),
            'max_acceleration': declare(self, 'max_acceleration', Parameter.Type.DOUBLE_ARRAY,
                                        'optional per-joint acceleration limit', **ro),
            'max_deceleration': declare(self, 'max_deceleration', Parameter.Type.DOUBLE_ARRAY,
                                        'optional per-joint braking limit (default: '
                                        'max_acceleration); also plans braking before bounds',
                                        **ro),
            'control_rate_hz': declare(self, 'control_rate_hz', 100.0,
                                       'guard/command rate (at most 2000 Hz)', **ro),
            'velocity_scaling': declare(self, 'velocity_scaling', 'per_joint',
                                        'per_joint clamps each joint; uniform keeps direction',
                                        **ro),
            'mode': declare(self, 'mode', 'enforce',
                            'enforce, or monitor_only (shadow run: never commands the controller)',
                            **ro),
            **self._optional_limits(ro),
        }
        self.controller = declare(self, 'controller_name', 'forward_position_controller',
                                  'ros2_control controller to command', **ro)
        self.output = declare(self, 'output', 'forward_command',
                              'forward_command (Float64MultiArray) or joint_trajectory', **ro)
        self.controller_joints = declare(self, 'controller_joints', Parameter.Type.STRING_ARRAY,
                                         'controller joint order (default: joint_names)', **ro)
        self.command_timeout = declare(self, 'command_timeout', 0.1,
                                       'no fresh action for this long -> hold; twice -> stop (s); '
                                       'older chunks are refused', **ro)
        self.state_timeout = declare(self, 'joint_states_timeout', 0.5,
                                     'activation, reset and every resume need /joint_states '
                                     'younger than this (s)', **ro)
        declare(self, 'calibration_file', '', 'calibration file of the contract (for the monitor)',
                **ro)
        self.following_error = declare(
            self, 'following_error', Parameter.Type.DOUBLE_ARRAY,
            'per-joint tolerance between /joint_states and the commands (units); more than '
            "vmax * (dt + the driver's lag); empty: not checked", **ro)
        self.following_error_ticks = declare(self, 'following_error_ticks', 5,
                                             'ticks in a row over the tolerance that latch a stop',
                                             **ro)
        self.escalation = declare(
            self, 'escalation_rates', Parameter.Type.DOUBLE_ARRAY,
            'graded escalation: interventions per second that slow, hold, stop (3 increasing '
            'values); empty: off', **ro)
        self.escalation_cooldown = declare(self, 'escalation_cooldown', 2.0,
                                           's below a threshold before relaxing; also the least '
                                           'time before an escalation stop can be reset', **ro)
        self.escalation_slow_scale = declare(self, 'escalation_slow_scale', 0.5,
                                             'speed scale while slowed, in (0, 1)', **ro)
        self.speed_scale = declare(self, 'speed_scale', 1.0,
                                   'scales velocity and acceleration limits, in (0, 1]; while '
                                   'configured it may only be lowered (first runs on hardware)')
        self._declare_realtime(ro)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.Lock()
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._executive: Executive | None = None
        self._timing: ControlTiming | None = None
        self._gc = GcPolicy('default')
        self._gc_pauses: GcPauses | None = None
        self._last_state = STOPPED
        self._braking_s = 0.0
        self._stop_sources = StopSources()
        self._stop_labels: dict[str, str] = {}
        self._stop_told_apart = False
        self._probe_sub = self._probe_timer = None
        self._probe_matched: int | None = None      # latched publishers matched half-way
        self._stop_graph: frozenset = frozenset()
        self._diagnostics = Diagnostics(self, 1.0, self.diagnostic_status)
        self.create_subscription(JointState, names.JOINT_STATES, self._on_joint_state, STATE_QOS)

    def _optional_limits(self, ro: dict) -> dict:
        """Declare the contract's optional limits (core.limits, core.workspace); unset = off."""
        arrays = {
            'soft_lower_limit': 'soft lower bounds (-.inf: none on that side); with '
                                'soft_upper_limit and k_position',
            'soft_upper_limit': 'soft upper bounds (.inf: none on that side)',
            'k_position': 'soft-limit gain (1/s): speed toward a soft bound <= k x distance',
            'max_jerk': 'optional per-joint jerk limit (units/s^3)',
            'workspace_lower': 'end-effector box lower corner [x, y, z] (m, URDF root frame)',
            'workspace_upper': 'end-effector box upper corner [x, y, z] (m, URDF root frame)',
        }
        params = {name: declare(self, name, Parameter.Type.DOUBLE_ARRAY, text, **ro)
                  for name, text in arrays.items()}
        params['workspace_urdf'] = declare(self, 'workspace_urdf', '',
                                           'URDF for the end-effector workspace box (needs the '
                                           'pin package); empty: no box', **ro)
        params['workspace_frame'] = declare(self, 'workspace_frame', '',
                                            'URDF frame kept inside the box, e.g. tool0', **ro)
        return params

    def _declare_realtime(self, ro: dict) -> None:
        """Declare the control thread's real-time options (all off by default)."""
        self.realtime_priority = declare(
            self, 'realtime_priority', 0, 'SCHED_FIFO priority (1..99) of the control thread '
            'from configure on, as ros2_control_node sets; 0: off; refused with a WARN where not '
            'permitted', **ro)
        self.cpu_affinity = declare(self, 'cpu_affinity', Parameter.Type.INTEGER_ARRAY,
                                    'CPUs the control thread is pinned to from configure on; '
                                    'empty: any', **ro)
        self.lock_memory = declare(self, 'lock_memory', False,
                                   'mlockall the process at configure (needs CAP_IPC_LOCK or an '
                                   'unlimited RLIMIT_MEMLOCK; refused with a WARN otherwise)',
                                   **ro)
        self.gc_mode = declare(self, 'gc_mode', 'default',
                               'garbage collector: default; freeze (the configured heap frozen); '
                               'quiet (frozen, and off while active)', **ro)

    # ---- lifecycle -------------------------------------------------------------------------
    def configure_node(self) -> None:
        require_valid_parameters(self)
        check_realtime_priority(self.realtime_priority)
        gc_policy = GcPolicy(self.gc_mode)
        params = {k: v for k, v in self.p.items() if v is not None}
        contract = contract_from_params(params, source=f'{self.get_name()} parameters')
        if self.output not in OUTPUTS:
            raise InputError(f'output must be one of {OUTPUTS}, got {self.output!r}')
        topic = f'/{self.controller}/' + ('commands' if self.output == 'forward_command'
                                          else 'joint_trajectory')
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException as exc:
            raise InputError(f'controller_name {self.controller!r} gives an invalid topic: '
                             f'{exc}') from None
        escalation = Escalation(tuple(self.escalation), self.escalation_slow_scale,
                                self.escalation_cooldown) if self.escalation else None
        executive = Executive(contract, self.command_timeout, self.state_timeout,
                              list(self.following_error) if self.following_error else None,
                              self.following_error_ticks, escalation)
        executive.set_speed_scale(self.speed_scale)
        self._out_names = tuple(self.controller_joints or contract.joint_names)
        self._out_index = np.asarray(JointMap(self._out_names).indices(contract.joint_names))
        self._action_map = JointMap(contract.joint_names)
        self._state_map = JointMap(contract.joint_names)
        self._preallocate(contract)
        with self._lock:
            self._executive = executive
            self._timing = ControlTiming(contract.dt)
            self._stop_labels = {}
        self._cmd_pub = self._brake_pub = None
        if contract.mode == 'enforce':
            msg_type = Float64MultiArray if self.output == 'forward_command' else JointTrajectory
            self._cmd_pub = self.own(self.create_lifecycle_publisher(msg_type, topic, COMMAND_QOS))
            # the controlled stop on deactivate finishes after the lifecycle publisher is off
            self._brake_pub = self.own(self.create_publisher(msg_type, topic, COMMAND_QOS))
        self._safe_pub = self.own(self.create_lifecycle_publisher(
            JointTrajectory, names.SAFE_ACTION, COMMAND_QOS))
        self._event_pub = self.own(self.create_publisher(DiagnosticArray, names.FILTER_EVENTS,
                                                         100))
        # a latched supervisor and a plain button
        for qos, on_stop in zip((LATCHED_QOS, ANY_PUBLISHER_QOS), self._stop_callbacks()):
            self.own(self.create_subscription(Bool, names.SAFETY_STOP, on_stop,
                                              _deeper(qos, STOP_DEPTH)))
        self.own(self.create_timer(STOP_SOURCES_PERIOD, self._refresh_stop_sources,
                                   clock=self._steady))
        # the control path (arrivals and timer) is mutually exclusive under any executor: both
        # write the same preallocated messages
        control = MutuallyExclusiveCallbackGroup()
        self.own(self.create_subscription(JointTrajectory, names.RAW_ACTION, self._on_raw_action,
                                          COMMAND_QOS, callback_group=control))
        self.own(self.create_subscription(String, names.EPISODE, self._on_episode, LATCHED_QOS))
        self.own(self.create_service(Trigger, '~/reset', self._on_reset))
        self.own(self.create_timer(contract.dt, self._on_tick, clock=self._steady,
                                   callback_group=control))
        self.get_logger().info(
            f'configured: {contract.dim} joints at {1 / contract.dt:g} Hz, mode {contract.mode}, '
            + (f'output {self.output} on {topic}' if self._cmd_pub else
               'shadow run: /vla/safe_action only, the controller is never commanded'))
        self._gc = gc_policy
        self._gc.configured()
        self._make_realtime()

    def _make_realtime(self) -> None:
        """Apply the real-time options to this (the executor's) thread; WARN for each refused."""
        applied, refused = realtime_thread(self.realtime_priority, self.cpu_affinity or (),
                                           self.lock_memory)
        for text in refused:
            self.get_logger().warning(f'real-time option refused, running without it: {text}')
        if applied:
            self.get_logger().info(f'control thread: {", ".join(applied)}')

    def _preallocate(self, contract) -> None:
        """
        Build the outgoing messages once, serialized; each command is written into the bytes.

        Numpy views of their arrays are filled with np.take / copyto (no allocation); where a
        message cannot be kept serialized it is kept as a message and filled the same way.
        """
        dt, zeros = contract.dt, [0.0] * contract.dim
        if self.output == 'forward_command':
            out, array_of = Float64MultiArray(data=zeros), _data
        else:
            out, array_of = _trajectory(self._out_names, zeros, dt), _positions
        self._out = self._filled(out, array_of, stamped=False)
        self._safe = self._filled(_trajectory(contract.joint_names, zeros, dt), _positions,
                                  stamped=True)

    def _filled(self, msg, array_of, stamped: bool):
        """Return `msg` as a SerializedMessage, or a FilledMessage where that fails."""
        try:
            return SerializedMessage(msg, array_of, stamped)
        except ValueError as exc:
            self.get_logger().warning(f'{type(msg).__name__} published as a message: {exc}')
            return FilledMessage(msg, array_of)

    def activate_node(self) -> None:
        self._stamp_origin = self.get_clock().now().nanoseconds - int(monotonic() * 1e9)
        with self._lock:
            self._timing = ControlTiming(self._executive.contract.dt)
            try:
                self._executive.start(monotonic())
            except InputError as exc:
                raise InputError(f'{exc} covering joints {list(self._action_map.target)}') \
                    from None
        self._last_state = STOPPED
        self._gc_pauses = GcPauses()
        self._gc_pauses.install()
        self._gc.activated()
        self.get_logger().info('active: seeded from /joint_states')

    def deactivate_node(self) -> None:
        """
        Stop in a controlled way: brake within the acceleration limits, then stop publishing.

        A JointTrajectoryController gets the whole braking path at once; a forward command
        controller gets it one control period at a time.
        """
        self._gc.deactivated()
        if self._gc_pauses is not None:
            self._gc_pauses.remove()
        with self._lock:
            path = self._executive.brake_path()
        self._braking_s = 0.0
        if not len(path) or self._brake_pub is None:
            return
        dt = self._executive.contract.dt
        rows = [row[self._out_index].tolist() for row in path]
        self.get_logger().info(f'deactivating: braking over {len(rows) * dt:.2f} s')
        if self.output == 'joint_trajectory':
            self._brake_pub.publish(JointTrajectory(joint_names=list(self._out_names), points=[
                JointTrajectoryPoint(positions=row, time_from_start=duration((k + 1) * dt))
                for k, row in enumerate(rows)]))
            self._braking_s = DELIVERY_S     # the controller runs the path; let it be delivered
            return
        self._braking_s = len(rows) * dt + DELIVERY_S
        pending = iter(rows)

        def next_row():
            row = next(pending, None)
            if row is None:
                self.destroy_timer(timer)
            else:
                self._brake_pub.publish(Float64MultiArray(data=row))
        timer = self.create_timer(dt, next_row, clock=self._steady)
        next_row()

    def settle_time(self) -> float:
        """Return the braking time of the last deactivation (a shutdown waits it out)."""
        return self._braking_s

    def cleanup_node(self) -> None:
        self._gc.cleaned_up()
        if self._gc_pauses is not None:
            self._gc_pauses.remove()
        self._drop_probe()
        with self._lock:
            self._executive = None

    def report_state(self) -> None:
        self._diagnostics.publish()

    def _on_set_parameters(self, params) -> SetParametersResult:
        """
        Validate and apply speed_scale, the one writable parameter.

        It is only ever lowered while configured (raising it needs a cleanup and configure: a
        deliberate step).
        """
        for param in params:
            if param.name != 'speed_scale':
                continue
            try:
                value = speed_scale_value(param.value)
                with self._lock:
                    if self._executive is not None:
                        self._executive.lower_speed_scale(value)
            except InputError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.speed_scale = value
            self.get_logger().info(f'speed_scale {value:g}')
        return SetParametersResult(successful=True)

    # ---- inputs ----------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        """Every usable /joint_states sample updates the measured position (any state)."""
        with self._lock:
            executive = self._executive
            if executive is None:
                return
            try:
                if len(msg.position) != len(msg.name):
                    raise InputError(f'{len(msg.position)} positions for {len(msg.name)} names')
                idx = self._state_map.indices(msg.name, allow_extra=True)
                executive.observe(np.asarray(msg.position, dtype=float)[idx], monotonic())
            except InputError as exc:
                self.get_logger().warning(f'/joint_states ignored: {exc}',
                                          throttle_duration_sec=1.0)

    def _on_raw_action(self, msg: JointTrajectory) -> None:
        """Make a chunk the plan; execute it at once when its first point is due."""
        if not self.active:
            return
        now, received = monotonic(), time.time()
        try:
            idx = self._action_map.indices(msg.joint_names)
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
            if self._executive is None:
                return
            events = self._executive.on_chunk(targets, offsets, now, self._age(msg))
            self._timing.arrival(received)
            tick = self._executive.on_arrival(now)
        if events:
            self.get_logger().warning(f'/vla/raw_action: {events[0].reason}',
                                      throttle_duration_sec=1.0)
            self._publish_events(events)
        if tick is not None:
            self._execute(tick, now)

    def _age(self, msg: JointTrajectory) -> float:
        """Seconds since the chunk's stamp (0 for an unstamped chunk: it starts on arrival)."""
        stamp = Time.from_msg(msg.header.stamp, clock_type=self.get_clock().clock_type)
        if stamp.nanoseconds == 0:
            return 0.0
        return (self.get_clock().now() - stamp).nanoseconds * 1e-9

    def _refuse(self, reason: str, why, now: float) -> None:
        with self._lock:
            if self._executive is None:
                return
            event = self._executive.reject(reason, now)
        self.get_logger().warning(f'/vla/raw_action refused, holding: {why}',
                                  throttle_duration_sec=1.0)
        self._publish_events((event,))

    def _stop_callbacks(self) -> tuple:
        """
        Return the /vla/safety_stop callbacks of the latched and the volatile subscription.

        With the publisher's GID in each MessageInfo (rclpy >= 9 under a Python executor) each
        publisher is a source (core.stop_sources). Without it (Jazzy's rclpy 7.1; the
        EventsExecutor, whose spin_once raises SystemError on a callback that takes a
        MessageInfo, in rclpy 7.1.5 and 9.1.2) a `false` releases only once every latched
        publisher's value is re-read (core.stop_reread).
        """
        python_executor = self.executor is None or isinstance(self.executor, Executor)
        self._stop_told_apart = python_executor and GID_IN_MESSAGE_INFO
        self._stop_graph = frozenset()
        with self._lock:
            self._stop_sources = StopSources() if self._stop_told_apart else UnidentifiedStops()
        if self._stop_told_apart:
            return self._on_stop, self._on_stop
        why = 'rclpy < 9 gives no publisher GID' if python_executor else \
            "the EventsExecutor cannot pass a message's publisher"
        self.get_logger().warning(
            f'{names.SAFETY_STOP} publishers are not told apart ({why}): a `false` releases the '
            "stop only once every latched publisher's value is re-read; volatile publishers are "
            'one source, the last value of any of them wins: publish e-stops transient-local')
        if python_executor:
            return (lambda msg, info: self._on_unidentified(msg, info, True),
                    lambda msg, info: self._on_unidentified(msg, info, False))
        return (lambda msg: self._on_unidentified(msg, None, True),
                lambda msg: self._on_unidentified(msg, None, False))

    def _on_stop(self, msg: Bool, info) -> None:
        """Record one publisher's stop value; the stop is asserted while any live one's is true."""
        source, sequence = _stop_source(info)
        live = self._stop_publishers()
        now = monotonic()
        with self._lock:
            if self._executive is None:
                return
            self._stop_labels.update(live)
            was = source in self._stop_sources.who
            if not self._stop_sources.record(source, msg.data, now, sequence, _message_id(info)):
                return                        # heard again on the other subscription, or stale
            self._stop_sources.prune(live, now)
            asserting = self._apply_stop_sources()
        label = self._label(source)
        if msg.data and not was:
            self.get_logger().error(f'latched stop from {names.SAFETY_STOP} by {label}: '
                                    'release it, then call ~/reset')
        elif was and not msg.data:
            self.get_logger().info(f'{names.SAFETY_STOP} released by {label}' + (
                f'; still asserted by {asserting}' if asserting else ''))
        self._diagnostics.publish()

    def _on_unidentified(self, msg: Bool, info, latched: bool) -> None:
        """Record a stop value of an unknown publisher: a true asserts, a false starts a probe."""
        labels = _group_labels(self.get_publishers_info_by_topic(names.SAFETY_STOP))
        with self._lock:
            if self._executive is None:
                return
            self._stop_labels.update(labels)
            was = self._stop_sources.asserted
            probe = self._stop_sources.heard(msg.data, _message_id(info), latched)
            asserting = self._apply_stop_sources()
        if msg.data and not was:
            self.get_logger().error(f'latched stop from {names.SAFETY_STOP} by {asserting}: '
                                    'release it, then call ~/reset')
        if probe:
            self._start_probe()
        self._diagnostics.publish()

    def _start_probe(self) -> None:
        """Re-read every latched publisher's value with a fresh transient-local reader."""
        latched = [i for i in self.get_publishers_info_by_topic(names.SAFETY_STOP)
                   if _is_latched(i)]
        with self._lock:
            if self._executive is None:
                return
            self._stop_sources.begin_probe(len(latched))
        if not latched:
            self._end_probe()
            return
        self._probe_sub = self.create_subscription(Bool, names.SAFETY_STOP, self._on_probe_sample,
                                                   _deeper(LATCHED_QOS, STOP_DEPTH))
        self._probe_timer = self.create_timer(PROBE_TIMEOUT_S / 2, self._on_probe_timer,
                                              clock=self._steady)

    def _on_probe_sample(self, msg: Bool) -> None:
        """Record one value the probe read."""
        with self._lock:
            if self._executive is not None and self._stop_sources.probing:
                self._stop_sources.sample(msg.data)

    def _on_probe_timer(self) -> None:
        """Half-way: note how many latched publishers the probe is matched with; then end it."""
        if self._probe_sub is None:
            return
        if self._probe_matched is None:
            self._probe_matched = self._probe_sub.get_publisher_count()
        else:
            self._end_probe()

    def _end_probe(self) -> None:
        """Decide from the re-read values (asserted iff any is true) and drop the reader."""
        matched = self._probe_matched or 0
        self._drop_probe()
        infos = self.get_publishers_info_by_topic(names.SAFETY_STOP)
        with self._lock:
            if self._executive is None or not self._stop_sources.probing:
                return
            self._stop_labels.update(_group_labels(infos))
            decision = self._stop_sources.decide(matched, any(not _is_latched(i) for i in infos))
            asserting = self._apply_stop_sources()
        told = f'{decision.samples} of {decision.writers} latched values re-read'
        if decision.unknown:
            self.get_logger().warning(
                f'{names.SAFETY_STOP}: {told}; the re-read was not matched with every latched '
                f'publisher within {PROBE_TIMEOUT_S / 2:g} s: counted as asserting (safe side)')
        elif decision.missing:
            self.get_logger().info(f'{names.SAFETY_STOP}: {told}; {decision.missing} matched '
                                   'latched publisher(s) have published nothing')
        self.get_logger().info(f'{names.SAFETY_STOP} re-read: ' + (
            f'still asserted by {asserting}' if decision.asserted else 'released'))
        if decision.again:
            self._start_probe()
        self._diagnostics.publish()

    def _drop_probe(self) -> None:
        """Destroy the probe's reader and timer, if one runs."""
        if self._probe_sub is not None:
            self.destroy_subscription(self._probe_sub)
        if self._probe_timer is not None:
            self.destroy_timer(self._probe_timer)
        self._probe_sub = self._probe_timer = self._probe_matched = None

    def _stop_publishers(self) -> dict:
        """Return the live publishers of /vla/safety_stop in the ROS graph: {source: node}."""
        live = {_gid_key(info.endpoint_gid): _node_name(info)
                for info in self.get_publishers_info_by_topic(names.SAFETY_STOP)}
        if live:                 # the unidentified source lives while any publisher does
            live[UNIDENTIFIED] = 'an unidentified publisher (one of {})'.format(
                ', '.join(sorted(set(live.values()))))
        return live

    def _refresh_stop_sources(self) -> None:
        """Forget the stop sources whose publishers have left the graph (the latch stays)."""
        if not self._stop_told_apart:
            self._refresh_unidentified()
            return
        live = self._stop_publishers()
        with self._lock:
            if self._executive is None:
                return
            self._stop_labels.update(live)
            gone = self._stop_sources.prune(live, monotonic())
            if gone:
                self._apply_stop_sources()
            left = [self._stop_labels.pop(source, self._label(source)) for source in gone]
        for label in left:
            self.get_logger().warning(f'{label} left the graph: its {names.SAFETY_STOP} no '
                                      'longer counts (a latched stop stays until ~/reset)')

    def _refresh_unidentified(self) -> None:
        """On a change of the publishers: WARN of new volatile ones; re-read while asserted."""
        infos = self.get_publishers_info_by_topic(names.SAFETY_STOP)
        graph = frozenset(_gid_key(i.endpoint_gid) for i in infos)
        new = {_node_name(i) for i in infos
               if not _is_latched(i) and _gid_key(i.endpoint_gid) not in self._stop_graph}
        with self._lock:
            if self._executive is None:
                return
            self._stop_labels.update(_group_labels(infos))
            if self._stop_sources.probing:
                return                          # a change while probing is seen next time
            reread = graph != self._stop_graph and self._stop_sources.asserted
        self._stop_graph = graph
        for node in sorted(new):
            self.get_logger().warning(
                f'{node} publishes {names.SAFETY_STOP} volatile: its value cannot be re-read '
                "here, and any volatile publisher's `false` releases its `true`; publish "
                'e-stops transient-local (reliable, depth 1)')
        if reread:
            self._start_probe()

    def _apply_stop_sources(self) -> str:
        """Tell the executive whether any source asserts; return who does (call under lock)."""
        asserting = self._asserting()
        self._executive.set_stop(self._stop_sources.asserted,
                                 f'{names.SAFETY_STOP} from {asserting}')
        return asserting

    def _asserting(self) -> str:
        """Return the names of the sources asserting the stop ('' if none)."""
        return ', '.join(self._label(source) for source in self._stop_sources.who)

    def _label(self, source: str) -> str:
        """Return a source's node name (its GID's end while the graph has not named it)."""
        if source in self._stop_labels:
            return self._stop_labels[source]
        return 'an unidentified publisher' if source == UNIDENTIFIED else \
            f'publisher ...{source[-8:]}'

    def _on_episode(self, msg: String) -> None:
        if msg.data.split(' ', 1)[0] != EPISODE_DONE:
            return
        with self._lock:
            if self._executive is not None:
                self._executive.end_episode()

    def _on_reset(self, request, response):
        """Clear a latched stop, refused while a source asserts it (named in the answer)."""
        self._refresh_stop_sources()
        with self._lock:
            if self._executive is None or not self.active:
                response.success, response.message = False, 'not active'
                return response
            response.success, response.message = self._executive.reset_latch(monotonic())
            refused = not response.success and self._stop_sources.asserted
            if refused:
                response.message = (f'stop still asserted by {self._asserting()}: release it '
                                    f'first (latched: {self._executive.latched_reason})')
            reread = refused and not self._stop_told_apart
            if reread:
                response.message += ("; re-reading the latched publishers' values: ask again "
                                     f'in {PROBE_TIMEOUT_S:g} s')
                reread = not self._stop_sources.probing
        if reread:                # the values may have changed unheard (e.g. a lost message)
            self._start_probe()
        if response.success:
            self.get_logger().info(f'~/reset: {response.message}')
        else:
            self.get_logger().warning(f'~/reset refused: {response.message}')
        self._diagnostics.publish()
        return response

    # ---- control tick ----------------------------------------------------------------------
    def _on_tick(self) -> None:
        """Fill the gaps: a tick unless an arrival just executed one."""
        if not self.active:
            return
        with self._lock:
            if self._executive is None:
                return
            now = monotonic()
            tick = self._executive.on_timer(now)
        if tick is not None:
            self._execute(tick, now)

    def _execute(self, tick, now: float) -> None:
        """Publish what a tick decided (started at `now`) and account for its timing."""
        if tick.command is not None:
            self._publish_command(tick.command, now)
        if tick.events:
            self._publish_events(tick.events)
        with self._lock:
            if self._timing is not None:
                if tick.command is None:
                    self._timing.silence()
                else:
                    self._timing.command(now, monotonic(), time.time())
        if tick.state != self._last_state:
            change = f'filter state {self._last_state} -> {tick.state}'
            if tick.state in (RUNNING, IDLE):
                self.get_logger().info(change)
            else:
                self.get_logger().warning(change)
            self._last_state = tick.state
            self._diagnostics.publish()

    def _publish_command(self, command: np.ndarray, now: float) -> None:
        """Write the command into the preallocated messages and publish them."""
        if self._cmd_pub is not None:
            np.take(command, self._out_index, out=self._out.values)
            self._cmd_pub.publish(self._out.payload())
        np.copyto(self._safe.values, command)
        # /vla/safe_action is stamped with the tick's own time (ROS clock at activation + the
        # steady time since), so audits of velocity over time see exactly what the guard saw
        self._safe.set_stamp(*divmod(self._stamp_origin + int(now * 1e9), 1_000_000_000))
        self._safe_pub.publish(self._safe.payload())

    def _publish_events(self, events) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status('vla_safety/filter/event', WARN, e.reason, self.get_name(), {
            'step': e.step, 'joint': e.joint, 'reason': e.reason, 'requested': e.requested,
            'executed': e.executed, 'magnitude': e.magnitude}) for e in events]
        self._event_pub.publish(msg)

    def diagnostic_status(self) -> DiagnosticStatus:
        """Build the `vla_safety/filter` status (the one both /diagnostics paths publish)."""
        ex = self._executive
        if ex is None:
            level, text = (ERROR, self.refusal) if self.refusal else (STALE, 'unconfigured')
            return status('vla_safety/filter', level, text, self.get_name(),
                          {'state': 'unconfigured'})
        state = ex.state if self.active else 'inactive'
        level, text = (LEVEL_OF_STATE[ex.state], ex.state) if self.active else (OK, 'inactive')
        if self.active and ex.state == STOPPED:
            if ex.silence_explained:
                level, text = WARN, 'waiting for /vla/raw_action'
            elif ex.waiting:
                text = f'stopped: {ex.waiting}'
        with self._lock:
            asserting = self._asserting()
        if ex.state == LATCHED:
            held = f'; still asserted by {asserting}' if asserting else ''
            text = f'latched stop ({ex.latched_reason}){held}; release it, then call ~/reset'
        if self.active and ex.escalation_level not in (NORMAL, 'stop') and ex.state != LATCHED:
            level = max(level, WARN)
            text = f'{ex.escalation_level} by escalation ({ex.escalation.reason}): {text}'
        if ex.contract.mode == 'monitor_only':
            level = max(level, WARN)
            text = f'monitor_only (controller not commanded): {text}'
        if self.refusal:
            level, text = ERROR, self.refusal
        with self._lock:
            timing = self._timing.summary() if self._timing is not None else {}
            slow = self._timing is not None and not self._timing.rate_ok()
        if self._gc_pauses is not None:
            timing.update(self._gc_pauses.summary())
        if self.active and slow:
            level = max(level, WARN)
            text = (f'{text}: achieved {timing["achieved_rate_hz"]:.4g} Hz below the configured '
                    f'{timing["configured_rate_hz"]:.4g} Hz')
        values = {'state': state, 'mode': ex.contract.mode, 'stop_asserted': ex.stop_asserted,
                  'stop_sources': asserting, 'stop_sources_told_apart': self._stop_told_apart,
                  'stop_sources_mode': 'publisher_gid' if self._stop_told_apart else
                  'reread_latched',
                  'speed_scale': ex.guard.speed_scale, 'escalation': ex.escalation_level,
                  **{f'interventions.{k}': v for k, v in ex.guard.counts.items()},
                  **{f'timing.{k}': v for k, v in timing.items()}}
        return status('vla_safety/filter', level, text, self.get_name(), values)


def _deeper(qos: QoSProfile, depth: int) -> QoSProfile:
    """Return `qos` keeping `depth` samples (matching is unchanged: depth is the reader's own)."""
    return QoSProfile(depth=depth, reliability=qos.reliability, durability=qos.durability,
                      history=qos.history)


def _stop_source(info) -> tuple:
    """
    Return (source, sequence number) of a /vla/safety_stop message from its MessageInfo.

    rclpy >= 9 (Kilted) gives the publisher's GID; older rclpy does not, and every message is
    then from the one UNIDENTIFIED source.
    """
    gid = info.get('publisher_gid') if isinstance(info, dict) else None
    if not gid:
        return UNIDENTIFIED, None
    return _gid_key(gid['data']), info.get('publication_sequence_number') or None


def _message_id(info):
    """Return what tells one message of a publisher from another (None: nothing does)."""
    if not isinstance(info, dict) or not info.get('source_timestamp'):
        return None
    return info['source_timestamp'], info.get('publication_sequence_number')


def _is_latched(info) -> bool:
    """Tell whether a publisher's TopicEndpointInfo is transient-local (a late reader re-reads)."""
    return info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL


def _group_labels(infos) -> dict:
    """Return who the LATCHED and VOLATILE sources are: node names, from the publishers' info."""
    latched = sorted({_node_name(i) for i in infos if _is_latched(i)})
    volatile = sorted({_node_name(i) for i in infos if not _is_latched(i)})
    return {LATCHED_PUBLISHERS: _one_of(latched, 'a latched publisher'),
            VOLATILE_PUBLISHERS: _one_of(volatile or latched, 'a volatile publisher')}


def _one_of(nodes: list, nobody: str) -> str:
    """Return a node, or 'one of' several (`nobody`: none is left in the graph)."""
    if len(nodes) <= 1:
        return nodes[0] if nodes else nobody
    return 'one of ' + ', '.join(nodes)


def _gid_key(data) -> str:
    """Return a publisher GID as text, the same from MessageInfo bytes and graph int lists."""
    return bytes(data)[:16].hex()


def _node_name(info) -> str:
    """Return the fully qualified node name of a publisher's TopicEndpointInfo."""
    return f'{info.node_namespace.rstrip("/")}/{info.node_name}'


def _positions(msg: JointTrajectory):
    """Return the positions of a one-point trajectory (the array a command fills)."""
    return msg.points[0].positions


def _data(msg: Float64MultiArray):
    """Return the data of a forward command (the array a command fills)."""
    return msg.data


def _trajectory(names, positions, dt: float) -> JointTrajectory:
    """One-point trajectory reached after dt (time_from_start 0 would make a JTC jump)."""
    return JointTrajectory(joint_names=list(names), points=[
        JointTrajectoryPoint(positions=positions, time_from_start=duration(dt))])


def main() -> None:
    run(SafetyFilter)
