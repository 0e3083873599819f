"""Shared plumbing of the nodes: parameter declaration, QoS, diagnostics messages, process entry."""
from __future__ import annotations

import sys
import time
from typing import Any

import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from ..core.errors import InputError
from .compat import harden_change_state

try:  # on every ROS 2 install, not installable from PyPI
    import diagnostic_updater
except ImportError:
    diagnostic_updater = None

OK, WARN, ERROR, STALE = (bytes([v]) for v in (0, 1, 2, 3))
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}

#: Latched topics (/vla/safety_stop): late joiners get the last value.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)
#: Commands and actions: reliable, shallow (a stale command is worse than a dropped one).
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: /joint_states: best effort receives from both reliable and best-effort drivers.
STATE_QOS = qos_profile_sensor_data


class GatedLifecycleNode(LifecycleNode):
    """A lifecycle node whose callbacks check `self.active` (rclpy gates only its publishers)."""

    active = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        harden_change_state(self)

    def on_activate(self, state):
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state):
        self.active = False
        return super().on_deactivate(state)


def declare(node, name: str, default: Any, description: str, read_only: bool = False) -> Any:
    """Declare a parameter (a Parameter.Type for typed parameters without a default) and return it.

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
    """A DiagnosticStatus with values stringified (rqt shows strings)."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=_text(v))
                                    for k, v in (values or {}).items()])


def duration(seconds: float) -> Duration:
    """builtin_interfaces/Duration from seconds (>= 0)."""
    sec = int(seconds)
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def diagnostic_array(node, statuses: list) -> DiagnosticArray:
    """The /diagnostics message both publishing paths send: statuses stamped with the node clock."""
    msg = DiagnosticArray(status=list(statuses))
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


class Diagnostics:
    """Publishes one status, `build()`, on /diagnostics every `period` s and on `publish()`.

    With diagnostic_updater (every ROS 2 install) this is a `diagnostic_updater.Updater` (parameter
    `diagnostic_updater.period`, default `period`); without it, a plain publisher and timer. Both
    send `diagnostic_array(node, [build()])`, so the messages are identical. Create it in __init__:
    the Updater declares its parameter once.
    """

    def __init__(self, node, period: float, build):
        self._node, self._build = node, build
        if diagnostic_updater is None:
            self._updater = None
            self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
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
        """The Updater without its two additions: the `<node>: ` name prefix (the aggregator and
        users match `vla_safety/...`) and the 'Node starting up' OK status sent when a task is added."""

        def publish(self, msg) -> None:
            self.publisher.publish(diagnostic_array(self.node, msg if isinstance(msg, list) else [msg]))

        def addedTaskCallback(self, task) -> None:
            pass


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def spin(nodes: list, executor=None) -> None:
    """Spin nodes under one executor until Ctrl-C or shutdown.

    Single-threaded on purpose: rclpy's multi-threaded executor costs several times more CPU per
    callback under the GIL, which starved the control timer when all nodes share one process.
    Nothing blocks in a callback (the manager waits for services in its own worker thread).
    """
    executor = executor or SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()


def spin_until_shutdown(executor, context) -> None:
    """Spin an executor from a background thread until its context shuts down (demo, tests)."""
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # the context shut down while spinning
            if context.ok():
                raise


def run(node_factory) -> None:
    """Console-script entry: `ros2 run vla_safety_filter <node> --ros-args ...`."""
    rclpy.init(args=sys.argv)
    spin([node_factory()])
