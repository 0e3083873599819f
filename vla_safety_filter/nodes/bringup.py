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

"""Run the whole pipeline in one process under one executor (no `launch` needed)."""
from __future__ import annotations

import os
import threading

import rclpy
from rclpy.signals import SignalHandlerOptions

from .common import controlled_stop_signals, make_executor, spin
from .. import names
from ..core.errors import InputError


def pipeline_nodes(with_sim_arm: bool, context=None) -> list:
    """
    Instantiate sim_arm (optional), action_monitor, safety_filter, policy_bridge, execspec_check.

    execspec_check is created last: it checks the metadata and then drives the others' lifecycles.
    """
    from .action_monitor import ActionMonitorNode
    from .execspec_check import ExecSpecCheck
    from .policy_bridge import PolicyBridge
    from .safety_filter import SafetyFilter
    from .sim_arm import SimArm
    kw = {} if context is None else {'context': context}
    managed = {names.ACTION_MONITOR: ActionMonitorNode, names.SAFETY_FILTER: SafetyFilter,
               names.POLICY_BRIDGE: PolicyBridge}
    nodes = [SimArm(**kw)] if with_sim_arm else []
    nodes += [managed[name](**kw) for name in names.PIPELINE_NODES]
    return nodes + [ExecSpecCheck(**kw)]


def run_bringup(param_files: list[str], with_sim_arm: bool, duration: float | None = None,
                executor: str = 'single') -> None:
    """
    Run `vla-safety bringup`: load parameter files, start the nodes, spin until Ctrl-C/duration.

    All nodes share one executor, `executor` (single or events; events falls back to single,
    with a warning, where this rclpy has no EventsExecutor and for the manager's coroutines).
    """
    for path in param_files:
        if not os.path.isfile(path):
            raise InputError(f'{path}: parameter file not found')
    args = ['vla-safety-bringup', '--ros-args']
    for path in param_files:
        args += ['--params-file', os.path.abspath(path)]
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = controlled_stop_signals()
    nodes = pipeline_nodes(with_sim_arm)
    chosen = make_executor(executor, logger=nodes[-1].get_logger(), nodes=nodes)
    nodes[-1].get_logger().info(f'bringup executor: {type(chosen).__name__}')
    if duration:
        threading.Timer(duration, rclpy.try_shutdown).start()
    spin(nodes, chosen, stop)
