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

"""Shared plumbing of the nodes: parameters, QoS, diagnostics messages, executors, entry."""
from __future__ import annotations

import ctypes
import gc
import inspect
import os
import resource
import signal
import sys
import threading
import time
import traceback
from typing import Any

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.client import Client
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from .compat import events_executor, harden_change_state
from .. import names
from ..core.errors import InputError

try:  # on every ROS 2 install, not installable from PyPI
    import diagnostic_updater
except ImportError:
    diagnostic_updater = None

#: diagnostic_msgs levels are bytes; names.py keeps them as ints, in one place.
OK, WARN, ERROR, STALE = (bytes([v]) for v in (names.OK, names.WARN, names.ERROR, names.STALE))
LEVEL_NAMES = {bytes([v]): name for v, name in enumerate(names.LEVEL_NAMES)}

#: Latched topics (/vla/safety_stop, /vla/episode): late joiners get the last value.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)
#: Commands and actions: reliable, shallow (a stale command is worse than a dropped one).
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: Hears every publisher of a topic, reliable or best effort, volatile or latched (live only).
ANY_PUBLISHER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE,
                               history=HistoryPolicy.KEEP_LAST)
#: /joint_states: best effort receives from both reliable and best-effort drivers.
STATE_QOS = qos_profile_sensor_data
#: Executors a process can run its nodes under (parameter / option `executor`).
EXECUTORS = ('single', 'events')
#: Garbage-collector policies of a control process (parameter `gc_mode`, see GcPolicy).
GC_MODES = ('default', 'freeze', 'quiet')
#: mlockall(2) flags: lock the pages mapped now and those mapped later.
MCL_CURRENT, MCL_FUTURE = 1, 2
#: Linux capability number that lifts RLIMIT_MEMLOCK.
CAP_IPC_LOCK = 14
#: Longest a process keeps spinning after SIGINT/SIGTERM for its nodes' controlled stops (s);
#: below ros2 launch's 5 s before it escalates to SIGTERM/SIGKILL.
MAX_SETTLE_S = 4.0


class GatedLifecycleNode(LifecycleNode):
    """
    A lifecycle node whose transitions cannot fail open.

    Subclasses implement the hooks `configure_node`, `activate_node`, `deactivate_node` and
    `cleanup_node` and raise InputError (or anything else) to refuse; the base turns every
    exception into a refusal reported at ERROR (`self.refusal`, kept until the next successful
    transition), never into rclpy's silent error path. Entities made in `configure_node` are
    registered with `own()` and destroyed through the node exactly once at cleanup, shutdown,
    error or a refused configure. rclpy gates only lifecycle publishers, so callbacks check
    `self.active`; deactivation and cleanup always succeed.
    """

    active = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        harden_change_state(self)
        self.refusal = ''
        self._owned: list = []

    # ---- hooks for subclasses --------------------------------------------------------------
    def configure_node(self) -> None:
        """Read parameters, build the core objects, create (and `own`) entities."""

    def activate_node(self) -> None:
        """Check the preconditions of going live (raise to refuse)."""

    def deactivate_node(self) -> None:
        """Stop acting (called with `active` already False)."""

    def cleanup_node(self) -> None:
        """Drop core objects; owned entities are destroyed by the base."""

    def report_state(self) -> None:
        """Publish the node's status now (e.g. on /diagnostics); called after each transition."""

    def settle_time(self) -> float:
        """Return how long after deactivation the node still acts (a controlled stop), in s."""
        return 0.0

    def stop_for_shutdown(self) -> float:
        """Deactivate if active, as a lifecycle deactivate would; return the settle time."""
        if not self.active:
            return 0.0
        self.trigger_deactivate()
        return self.settle_time()

    # ---- entities ----------------------------------------------------------------------------
    def own(self, entity):
        """Register an entity made during configure for destruction at cleanup."""
        self._owned.append(entity)
        return entity

    def _release(self) -> None:
        """Destroy owned entities through the node (never entity.destroy() under an executor)."""
        for entity in reversed(self._owned):
            if isinstance(entity, LifecyclePublisher):
                self.destroy_lifecycle_publisher(entity)
            elif isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            elif isinstance(entity, Timer):
                self.destroy_timer(entity)
            elif isinstance(entity, Service):
                self.destroy_service(entity)
            elif isinstance(entity, Client):
                self.destroy_client(entity)
        self._owned = []

    # ---- transitions -------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        result = self._attempt('configure', self.configure_node)
        if result != TransitionCallbackReturn.SUCCESS:
            self._attempt('cleanup', self.cleanup_node, quiet=True)
            self._release()
        return self._reported(result)

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = self._attempt('activate', self.activate_node)
        if result == TransitionCallbackReturn.SUCCESS:
            result = super().on_activate(state)
            self.active = result == TransitionCallbackReturn.SUCCESS
        return self._reported(result)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        self._attempt('deactivate', self.deactivate_node, quiet=True)
        super().on_deactivate(state)
        return self._reported(TransitionCallbackReturn.SUCCESS)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._reported(self._drop('cleanup'))

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return self._reported(self._drop('shutdown'))

    def on_error(self, state) -> TransitionCallbackReturn:
        self._drop('error')
        self.refusal = self.refusal or 'a transition raised: cleaned up, now unconfigured'
        return self._reported(TransitionCallbackReturn.SUCCESS)

    def _drop(self, what: str) -> TransitionCallbackReturn:
        self.active = False
        self._attempt(what, self.cleanup_node, quiet=True)
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _attempt(self, what: str, hook, quiet: bool = False) -> TransitionCallbackReturn:
        """Run a hook; any exception is a refusal with its reason (logged at ERROR)."""
        try:
            hook()
        except InputError as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - a transition must never fail open
            why = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(traceback.format_exc())
        else:
            if not quiet:
                self.refusal = ''
            return TransitionCallbackReturn.SUCCESS
        self.get_logger().error(f'{what} refused: {why}')
        if not quiet:
            self.refusal = f'{what} refused: {why}'
        return TransitionCallbackReturn.FAILURE

    def _reported(self, result: TransitionCallbackReturn) -> TransitionCallbackReturn:
        try:
            self.report_state()
        except Exception:  # noqa: BLE001 - reporting must not change the transition's outcome
            self.get_logger().error(traceback.format_exc())
        return result


def declare(node, name: str, default: Any, description: str, read_only: bool = False) -> Any:
    """
    Declare a parameter (a Parameter.Type for typed parameters without a default), return it.

    A value of the wrong type (e.g. `control_rate_hz: 100` for a double) makes rclpy raise during
    construction; instead it is logged, the default is kept and `require_valid_parameters` refuses.
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    try:
        param = node.declare_parameter(name, default, descriptor)
    except InvalidParameterTypeException as exc:
        problem = f'wrong parameter type: {exc.args[0]}'
        node.get_logger().error(f'{problem}; the node will not configure until it is fixed')
        node.parameter_errors = [*getattr(node, 'parameter_errors', []), problem]
        param = node.declare_parameter(name, default, descriptor, ignore_override=True)
    if isinstance(default, Parameter.Type):
        param = node.get_parameter_or(name, None)
    return None if param is None else param.value


def require_valid_parameters(node) -> None:
    """Raise InputError if a parameter was given with the wrong type (see `declare`)."""
    errors = getattr(node, 'parameter_errors', [])
    if errors:
        raise InputError('; '.join(errors))


def monotonic() -> float:
    """Watchdog clock: steady, unaffected by ROS/sim time jumps."""
    return time.monotonic()


def status(name: str, level: bytes, message: str, hardware_id: str,
           values: dict | None = None) -> DiagnosticStatus:
    """Build a DiagnosticStatus with values stringified (rqt shows strings)."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=_text(v))
                                    for k, v in (values or {}).items()])


def duration(seconds: float) -> Duration:
    """builtin_interfaces/Duration from seconds (>= 0)."""
    sec = int(seconds)
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def diagnostic_array(node, statuses: list) -> DiagnosticArray:
    """Build the /diagnostics message both paths send: statuses stamped with the node clock."""
    msg = DiagnosticArray(status=list(statuses))
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


class Diagnostics:
    """
    Publishes one status, `build()`, on /diagnostics every `period` s and on `publish()`.

    With diagnostic_updater (every ROS 2 install) this is a `diagnostic_updater.Updater` (parameter
    `diagnostic_updater.period`, default `period`); without it, a plain publisher and timer. Both
    send `diagnostic_array(node, [build()])`, so the messages are identical. Create it in __init__:
    the Updater declares its parameter once.
    """

    def __init__(self, node, period: float, build):
        self._node, self._build = node, build
        if diagnostic_updater is None:
            self._updater = None
            self._pub = node.create_publisher(DiagnosticArray, names.DIAGNOSTICS, 10)
            node.create_timer(period, self.publish)
        else:
            self._updater = _Updater(node, period)
            self._updater.setHardwareID(node.get_name())  # only silences its "no HW_ID" warning
            self._updater.add('status', lambda _stat: build())

    def publish(self) -> None:
        """Publish now (e.g. on a state change) as well as on the period."""
        if self._updater is None:
            self._pub.publish(diagnostic_array(self._node, [self._build()]))
        else:
            self._updater.force_update()


if diagnostic_updater is not None:
    class _Updater(diagnostic_updater.Updater):
        """
        diagnostic_updater's Updater without its two additions.

        Without the `<node>: ` name prefix (the aggregator and users match `vla_safety/...`) and
        the 'Node starting up' OK status sent when a task is added.
        """

        def publish(self, msg) -> None:
            self.publisher.publish(diagnostic_array(self.node,
                                                    msg if isinstance(msg, list) else [msg]))

        def addedTaskCallback(self, task) -> None:
            pass


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def make_executor(name: str, context=None, logger=None, nodes=()):
    """
    Return the executor `name` (one of EXECUTORS) for `context` and `nodes`.

    'events' is rclpy's EventsExecutor where this rclpy has it and none of `nodes` has a
    coroutine callback (it never answers an async service: the manager's ~/bringup); elsewhere
    the single-threaded executor, with one warning on `logger` saying why (a clean fallback).
    """
    if name not in EXECUTORS:
        raise InputError(f'executor must be one of {EXECUTORS}, got {name!r}')
    if name == 'events':
        events, why = events_executor()
        blockers = coroutine_nodes(nodes)
        if blockers:
            why = (f'{", ".join(blockers)} use coroutine callbacks, which rclpy\'s '
                   'EventsExecutor does not run')
        if events is not None and not blockers:
            return events(context=context)
        if logger is not None:
            logger.warning(f'executor events: {why}; falling back to the single-threaded '
                           'executor')
    return SingleThreadedExecutor(context=context)


def coroutine_nodes(nodes) -> list:
    """Return the names of the nodes with an async (coroutine) service, timer or subscription."""
    return [node.get_name() for node in nodes
            if any(inspect.iscoroutinefunction(entity.callback)
                   for entity in (*node.services, *node.timers, *node.subscriptions))]


def spin(nodes: list, executor=None, stop: threading.Event | None = None) -> None:
    """
    Spin nodes under one executor until Ctrl-C, shutdown or `stop`.

    Single-threaded (or events) on purpose: rclpy's multi-threaded executor costs several times
    more CPU per callback under the GIL, which starved the control timer when all nodes share
    one process. Nothing blocks in a callback (the manager awaits its service calls). The loop
    is `spin_once` for both executors: EventsExecutor.spin() neither fires timers when spun off
    the main thread nor returns on shutdown (rclpy 7.1.6 and 9.1.2). When `stop` is set (SIGINT,
    SIGTERM: see `controlled_stop_signals`) every active node is deactivated as a lifecycle
    deactivate would (the filter brakes within its limits) and spun until it has settled.
    """
    executor = executor or SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    context = nodes[0].context
    try:
        while context.ok() and not (stop is not None and stop.is_set()):
            _spin_once(executor, context)
        if context.ok() and stop is not None:
            _settle(nodes, executor, context)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()


def _settle(nodes: list, executor, context) -> None:
    """Deactivate every active lifecycle node (policy side first) and spin out their stops."""
    settle = 0.0
    for node in reversed(nodes):
        if isinstance(node, GatedLifecycleNode):
            settle = max(settle, node.stop_for_shutdown())
    deadline = time.monotonic() + min(settle, MAX_SETTLE_S)
    while context.ok() and time.monotonic() < deadline:
        _spin_once(executor, context, timeout=0.005)


def _spin_once(executor, context, timeout: float = 0.05) -> None:
    """Spin once; an exception raised because the context shut down meanwhile ends quietly."""
    try:
        executor.spin_once(timeout_sec=timeout)
    except Exception:  # the context shut down while spinning
        if context.ok():
            raise


def controlled_stop_signals() -> threading.Event:
    """
    Make SIGINT and SIGTERM request a controlled stop (`spin(..., stop=)`), not an abrupt one.

    Call after `rclpy.init(signal_handler_options=SignalHandlerOptions.NO)` in the main thread.
    A second signal while stopping ends the process at once (KeyboardInterrupt).
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return requested                 # signals reach the main thread only (embedded use)

    def on_signal(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return requested


def spin_until_shutdown(executor, context) -> None:
    """Spin an executor from a background thread until its context shuts down (demo, tests)."""
    while context.ok():
        _spin_once(executor, context)


def run(node_factory) -> None:
    """
    Run one node as a process: `ros2 run vla_safety_filter <node> --ros-args ...`.

    The read-only parameter `executor` (single or events, default single) picks its executor.
    SIGINT and SIGTERM stop it in a controlled way: deactivated (the filter brakes), then ended.
    """
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = controlled_stop_signals()
    node = node_factory()
    name = declare(node, 'executor', 'single', f'process executor, one of {EXECUTORS}',
                   read_only=True)
    try:
        executor = make_executor(name, logger=node.get_logger(), nodes=[node])
    except InputError as exc:
        node.get_logger().error(f'{exc}; using the single-threaded executor')
        executor = make_executor('single')
    node.get_logger().info(f'executor: {type(executor).__name__}')
    spin([node], executor, stop)


class GcPolicy:
    """
    Keep Python's cyclic garbage collector out of a control loop (parameter `gc_mode`).

    'default' leaves it alone. 'freeze' collects once after configure and freezes what exists
    (gc.freeze): later collections scan only what was allocated since, not the whole heap of
    rclpy, numpy and the contract. 'quiet' freezes too and turns the collector off while active
    (back on at deactivate, when it runs at the next allocation); the tick leaves no cyclic
    garbage behind (test/test_control_allocation.py), so memory does not grow meanwhile. The
    collector is one per process: 'quiet' silences it for every node of the process.
    """

    def __init__(self, mode: str):
        if mode not in GC_MODES:
            raise InputError(f'gc_mode must be one of {GC_MODES}, got {mode!r}')
        self.mode = mode
        self._disabled = False

    def configured(self) -> None:
        """Collect and freeze the configured heap (not in 'default')."""
        if self.mode != 'default':
            gc.collect()
            gc.freeze()

    def activated(self) -> None:
        """Turn the collector off for the active control loop ('quiet' only)."""
        if self.mode == 'quiet' and gc.isenabled():
            gc.disable()
            self._disabled = True

    def deactivated(self) -> None:
        """Turn the collector back on if this policy turned it off (it runs at once)."""
        if self._disabled:
            self._disabled = False
            gc.enable()

    def cleaned_up(self) -> None:
        """Return the frozen heap to the collector (the next configure freezes it again)."""
        self.deactivated()
        if self.mode != 'default':
            gc.unfreeze()


def realtime_thread(priority: int = 0, cpus=(), lock_memory: bool = False) -> tuple:
    """
    Make the calling thread a real-time control thread, as ros2_control_node does.

    `priority` > 0: SCHED_FIFO at that priority (1..99); `cpus`: pin the thread to these CPUs;
    `lock_memory`: mlockall so no page of the process is ever swapped out. Each option is
    applied or refused on its own; return (applied, refused) as lists of sentences.
    """
    options = []
    if priority:
        options.append(lambda: _fifo(priority))
    if cpus:
        options.append(lambda: _affinity(cpus))
    if lock_memory:
        options.append(_lock_memory)
    applied, refused = [], []
    for option in options:
        ok, text = option()
        (applied if ok else refused).append(text)
    return applied, refused


def check_realtime_priority(priority: int) -> int:
    """Return `priority` if it is 0 (off) or a SCHED_FIFO priority; raise InputError otherwise."""
    high = os.sched_get_priority_max(os.SCHED_FIFO)
    if not (isinstance(priority, int) and 0 <= priority <= high):
        raise InputError(f'realtime_priority must be 0 (off) or 1..{high}, got {priority!r}')
    return priority


def _fifo(priority: int) -> tuple[bool, str]:
    """Set SCHED_FIFO at `priority` for the calling thread."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return False, (f'SCHED_FIFO priority {priority} not permitted ({exc.strerror}): needs '
                       'CAP_SYS_NICE or an rtprio limit (/etc/security/limits.conf)')
    return True, f'SCHED_FIFO priority {priority}'


def _affinity(cpus) -> tuple[bool, str]:
    """Pin the calling thread to `cpus`."""
    try:
        os.sched_setaffinity(0, set(cpus))
    except (OSError, ValueError, OverflowError) as exc:
        return False, (f'CPU affinity {sorted(cpus)} refused ({exc}); this machine has CPUs '
                       f'{sorted(os.sched_getaffinity(0))}')
    return True, f'pinned to CPUs {sorted(cpus)}'


def _lock_memory() -> tuple[bool, str]:
    """
    Lock the process's pages in memory (mlockall) if later allocations can still succeed.

    Without CAP_IPC_LOCK a finite RLIMIT_MEMLOCK would make every allocation past it fail.
    """
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if not _has_capability(CAP_IPC_LOCK) and limit != resource.RLIM_INFINITY:
        return False, (f'lock_memory refused: RLIMIT_MEMLOCK is {limit} bytes, so allocations '
                       'past it would fail; raise it (ulimit -l unlimited) or run with '
                       'CAP_IPC_LOCK')
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        return False, f'mlockall failed: {os.strerror(ctypes.get_errno())}'
    return True, 'memory locked (mlockall)'


def _encoding(raw: bytes, msg_type) -> bytes:
    """
    Return the CDR encoding at the start of `raw`: its shortest prefix a strict reader takes.

    rclpy's serialize_message can return bytes past the encoding (12 for a 2-joint trajectory on
    Jazzy's Fast DDS), which a published message does not carry and strict readers (rosbags:
    the flight recorder's bags) refuse; rclpy's own reader cannot tell (it accepts some
    truncations). ValueError if no prefix reads.
    """
    from rosbags.serde import SerdeError
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.LATEST)
    name = f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'
    for length in range(4, len(raw) + 1):
        try:
            store.deserialize_cdr(raw[:length], name)
        except SerdeError:
            continue
        return raw[:length]
    raise ValueError(f'no prefix of the serialized {name} reads back')


def _has_capability(number: int) -> bool:
    """Tell whether the process holds Linux capability `number` (its effective set)."""
    try:
        with open('/proc/self/status') as fh:
            caps = next(line for line in fh if line.startswith('CapEff:'))
    except (OSError, StopIteration):
        return False
    return bool(int(caps.split()[1], 16) >> number & 1)


class FilledMessage:
    """
    A preallocated message whose float64 array (and header stamp) are filled in place.

    `array_of(msg)` returns the message's array (e.g. its first point's positions); `values` is
    a numpy view of it; `payload()` is what to publish: the message itself.
    """

    def __init__(self, msg, array_of):
        self.msg = msg
        self.values = np.frombuffer(array_of(msg), dtype=np.float64)

    def set_stamp(self, sec: int, nanosec: int) -> None:
        """Set the header stamp."""
        self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = sec, nanosec

    def payload(self):
        """Return the message to publish."""
        return self.msg


class SerializedMessage:
    """
    A message serialized once; each publish rewrites its array (and stamp) in the CDR bytes.

    rclpy converts a Python message to C and serializes it on every publish (measured 56-139
    us for a 14-joint JointTrajectory on a 2-core VM); publishing the bytes skips both. The
    places of the array and of the stamp are found with sentinel values and checked by a round
    trip through deserialization; ValueError where that does not hold (use FilledMessage).
    """

    def __init__(self, msg, array_of, stamped: bool = False):
        size = len(array_of(msg))
        marks = np.float64(1e-300) * (np.arange(size) + 1.0)
        array_of(msg)[:] = array_of(msg).__class__('d', marks)
        stamp = (-1234567890, 987654321)
        if stamped:
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        self._buf = bytearray(_encoding(serialize_message(msg), type(msg)))
        if self._buf[:2] != b'\x00\x01':
            raise ValueError('not little-endian CDR')
        self.values = self._view(marks.astype('<f8').tobytes(), '<f8', size)
        self._stamp = self._view(np.array(stamp, dtype='<i4').tobytes(), '<i4', 2) \
            if stamped else None
        self._check(type(msg), array_of)

    def _view(self, pattern: bytes, dtype: str, count: int) -> np.ndarray:
        """Return a writable view of the bytes at the one place `pattern` occurs."""
        at = self._buf.find(pattern)
        if at < 0 or self._buf.find(pattern, at + 1) >= 0:
            raise ValueError('a sentinel is not found exactly once in the serialized message')
        return np.frombuffer(self._buf, dtype=dtype, count=count, offset=at)

    def _check(self, msg_type, array_of) -> None:
        """Fill test values through the views and check that they read back from the bytes."""
        test = np.linspace(-1.5, 2.5, self.values.size)
        self.values[:] = test
        if self._stamp is not None:
            self.set_stamp(123, 456)
        back = deserialize_message(self.payload(), msg_type)
        if not np.array_equal(np.asarray(array_of(back)), test) or (
                self._stamp is not None and
                (back.header.stamp.sec, back.header.stamp.nanosec) != (123, 456)):
            raise ValueError('the serialized message does not read back')

    def set_stamp(self, sec: int, nanosec: int) -> None:
        """Set the header stamp in the bytes (int32 sec, uint32 nanosec below 2**31)."""
        self._stamp[0] = sec
        self._stamp[1] = nanosec

    def payload(self) -> bytes:
        """Return the serialized message to publish."""
        return bytes(self._buf)
