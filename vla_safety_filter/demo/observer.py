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
The demo's eyes on the ROS graph: what the policy asked, what the arm was told, what was said.

A plain rclpy node that only subscribes; `snapshot()` hands a consistent copy to the live view
and the summary (callbacks run in the executor thread, the view in the main thread).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from .. import names
from ..nodes.common import COMMAND_QOS, LATCHED_QOS

#: Controller commands are audited one by one: keep up to 10 s at 100 Hz queued under load.
AUDIT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Observed:
    """Everything seen so far; times are seconds since the observer started (monotonic)."""

    episode_started: float | None = None     # names.EPISODE 'episode N'
    episode_done: float | None = None        # names.EPISODE 'done'
    raw_times: list = field(default_factory=list)
    raw: list = field(default_factory=list)            # first point of each raw action
    command_times: list = field(default_factory=list)
    commands: list = field(default_factory=list)       # controller commands, contract order
    safe_times: list = field(default_factory=list)     # /vla/safe_action arrival times
    safe_stamps: list = field(default_factory=list)    # its header stamps: the guard's tick times
    safe: list = field(default_factory=list)           # its positions, contract order
    events: list = field(default_factory=list)         # (time, reason, joint)
    statuses: dict = field(default_factory=dict)       # name -> (level, message, {key: value})
    alarms: list = field(default_factory=list)         # (time, kind, monitor step)
    monitor_history: list = field(default_factory=list)  # (time, cusum, threshold, cost)


class DemoObserver(Node):
    """Subscribes to the pipeline's topics and keeps what the demo shows and checks."""

    def __init__(self, joint_names, controller: str, **kwargs):
        super().__init__('demo_observer', **kwargs)
        self.joint_names = tuple(joint_names)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._seen = Observed()
        self.create_subscription(JointTrajectory, names.RAW_ACTION, self._on_raw, COMMAND_QOS)
        # a deep queue: a command dropped under load would look like a double step in the audit
        self.create_subscription(Float64MultiArray, names.forward_commands(controller),
                                 self._on_command, AUDIT_QOS)
        self.create_subscription(JointTrajectory, names.SAFE_ACTION, self._on_safe, AUDIT_QOS)
        self.create_subscription(DiagnosticArray, names.FILTER_EVENTS, self._on_events, 100)
        self.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diagnostics, 50)
        self.create_subscription(String, names.EPISODE, self._on_episode, LATCHED_QOS)

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def snapshot(self) -> Observed:
        with self._lock:
            return copy.deepcopy(self._seen)

    def _first_point(self, msg: JointTrajectory) -> np.ndarray:
        """Return the trajectory's first point in contract order (NaN for joints it lacks)."""
        row = np.full(len(self.joint_names), np.nan)
        for name, value in zip(msg.joint_names, msg.points[0].positions):
            if name in self._index:
                row[self._index[name]] = value
        return row

    def _on_raw(self, msg: JointTrajectory) -> None:
        if not msg.points:
            return
        row = self._first_point(msg)
        with self._lock:
            self._seen.raw_times.append(self._now())
            self._seen.raw.append(row)

    def _on_command(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self._seen.command_times.append(self._now())
            self._seen.commands.append(np.array(msg.data, dtype=float))

    def _on_safe(self, msg: JointTrajectory) -> None:
        if not msg.points:
            return
        row = self._first_point(msg)
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        with self._lock:
            self._seen.safe_times.append(self._now())
            self._seen.safe_stamps.append(stamp)
            self._seen.safe.append(row)

    def _on_events(self, msg: DiagnosticArray) -> None:
        now = self._now()
        with self._lock:
            for s in msg.status:
                values = {kv.key: kv.value for kv in s.values}
                self._seen.events.append((now, s.message, values.get('joint', '')))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = self._now()
        with self._lock:
            for s in msg.status:
                values = {kv.key: kv.value for kv in s.values}
                previous = self._seen.statuses.get(s.name)
                self._seen.statuses[s.name] = (names.level_of(s.level), s.message, values)
                if s.name == names.MONITOR_STATUS and 'cusum_statistic' in values:
                    self._record_monitor(now, values, previous)

    def _record_monitor(self, now: float, values: dict, previous) -> None:
        self._seen.monitor_history.append((now, float(values['cusum_statistic']),
                                           float(values['cusum_threshold']),
                                           float(values['episode_cost'])))
        last = values.get('last_alarm', 'none')
        before = previous[2].get('last_alarm', 'none') if previous else 'none'
        if last != 'none' and last != before:
            kind, _, step = last.rpartition('@')
            self._seen.alarms.append((now, kind, int(step)))

    def _on_episode(self, msg: String) -> None:
        with self._lock:
            if msg.data == 'done':
                self._seen.episode_done = self._now()
            elif self._seen.episode_started is None:
                self._seen.episode_started = self._now()
