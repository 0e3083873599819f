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
Run the demo's ROS 2 graph in this process: sim arm, the four pipeline nodes, recorder, observer.

The graph lives on its own ROS domain with localhost-only discovery, so a demo can never command a
real arm that happens to share the network.
"""
from __future__ import annotations

import os
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
import rclpy.logging

from .observer import DemoObserver, Observed
from .. import names
from ..nodes.bringup import pipeline_nodes
from ..nodes.common import spin_until_shutdown

#: after the episode ends (or the pipeline is refused), keep watching this long (s)
TAIL_S = 0.5
REFUSED_TAIL_S = 1.5


def run_graph(scenario, domain_id: int, timeout: float, on_frame=None,
              record: bool = True) -> Observed:
    """
    Start the graph, wait for the episode to finish (or the refusal), return what was seen.

    `on_frame(observed)` is called about 8 times a second from this thread (the live view);
    with a live view the nodes log errors only, so log lines do not tear the frame.
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    context = Context()
    quiet = ['--log-level', 'error'] if on_frame is not None else []
    level = rclpy.logging.get_logger_effective_level('')
    rclpy.init(args=['vla-safety-demo', '--ros-args', '--params-file', scenario.params_file,
                     *quiet],
               context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    nodes = [DemoObserver(scenario.contract.joint_names, names.DEFAULT_CONTROLLER,
                          context=context)]
    if record:
        from ..nodes.flight_recorder import FlightRecorder
        nodes.append(FlightRecorder(context=context))
    nodes += pipeline_nodes(with_sim_arm=True, context=context)
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor, context), daemon=True)
    spinner.start()
    observer = nodes[0]
    try:
        seen = _wait(observer, timeout, on_frame)
    finally:
        context.try_shutdown()
        # --log-level is process-wide and outlives the context: give the process its level back
        rclpy.logging.set_logger_level('', level)
        spinner.join(timeout=5)
        for node in reversed(nodes):
            node.destroy_node()
    return seen


def _wait(observer: DemoObserver, timeout: float, on_frame) -> Observed:
    deadline = time.monotonic() + timeout
    end = None
    while time.monotonic() < deadline:
        seen = observer.snapshot()
        if on_frame is not None:
            on_frame(seen)
        if end is None:
            if seen.episode_done is not None:
                end = time.monotonic() + TAIL_S
            elif seen.statuses.get(names.EXECSPEC_STATUS, (0,))[0] == names.ERROR and not seen.raw:
                end = time.monotonic() + REFUSED_TAIL_S
        if end is not None and time.monotonic() >= end:
            break
        time.sleep(0.125)
    return observer.snapshot()
