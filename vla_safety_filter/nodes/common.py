"""Shared plumbing of the nodes: parameter declaration, QoS, diagnostics messages, process entry."""
from __future__ import annotations

import sys
import time
from typing import Any

import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

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

    def on_activate(self, state):
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state):
        self.active = False
        return super().on_deactivate(state)


def declare(node, name: str, default: Any, description: str, read_only: bool = False) -> Any:
    """Declare a parameter (a Parameter.Type for typed parameters without a default) and return it."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if isinstance(default, Parameter.Type):
        node.declare_parameter(name, default, descriptor)
        param = node.get_parameter_or(name, None)
        return None if param is None else param.value
    return node.declare_parameter(name, default, descriptor).value


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


def run(node_factory) -> None:
    """Console-script entry: `ros2 run vla_safety_filter <node> --ros-args ...`."""
    rclpy.init(args=sys.argv)
    spin([node_factory()])
