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
flight_recorder: records the pipeline's topics to a rosbag2 MCAP directory (record/bag.py).

A plain node, not a lifecycle one: it records whether or not the pipeline is active. Each listed
topic is subscribed raw (CDR bytes written as received) once it has a publisher, with QoS adapted
to the publishers as rosbag2 does: reliable only if all of them are, transient local (latched
values such as /vla/safety_stop and /vla/episode arrive late) only if all of them are. The
pipeline's own topics have fixed types and QoS, so they are subscribed at once: the first commands
after activation are recorded even if they come before the next graph poll.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
import importlib
import sys
import threading

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .common import declare, require_valid_parameters, run
from .. import names
from ..core.errors import InputError
from ..record.bag import BagWriter, header_stamp_ns
from ..record.definitions import full_definition, has_header


def pipeline_topics(controller: str) -> dict:
    """Return the pipeline's topics with the types this package fixes (subscribed at once)."""
    return {
        names.RAW_ACTION: 'trajectory_msgs/msg/JointTrajectory',
        names.SAFE_ACTION: 'trajectory_msgs/msg/JointTrajectory',
        names.forward_commands(controller): 'std_msgs/msg/Float64MultiArray',
        names.joint_trajectory(controller): 'trajectory_msgs/msg/JointTrajectory',
        names.FILTER_EVENTS: 'diagnostic_msgs/msg/DiagnosticArray',
        names.EPISODE: 'std_msgs/msg/String',
        names.SAFETY_STOP: 'std_msgs/msg/Bool',
    }


def default_topics(controller: str) -> list:
    """Return what is recorded unless `topics` says otherwise (pipeline, joints, diagnostics)."""
    return [names.RAW_ACTION, names.SAFE_ACTION, names.forward_commands(controller),
            names.joint_trajectory(controller), names.JOINT_STATES, names.FILTER_EVENTS,
            names.DIAGNOSTICS, names.EPISODE, names.SAFETY_STOP]


POLL_PERIOD = 0.5  # s: graph discovery and chunk flush (bounds what a SIGKILL loses)
DEPTH = 1000      # messages queued per topic: a loaded machine must not drop commands


class FlightRecorder(Node):
    """Subscribes to the listed topics as they appear and writes every message to the record."""

    def __init__(self, name: str = 'flight_recorder', **kwargs):
        super().__init__(name, **kwargs)
        output = declare(self, 'output', '', 'record directory (rosbag2 layout); must not exist '
                         'or be empty', read_only=True)
        controller = declare(self, 'controller_name', names.DEFAULT_CONTROLLER,
                             'controller whose commands/joint_trajectory the default topics name',
                             read_only=True)
        topics = declare(self, 'topics', default_topics(controller),
                         'topics to record', read_only=True)
        split = declare(self, 'split_seconds', 5.0, 'close an MCAP segment after this long',
                        read_only=True)
        require_valid_parameters(self)
        if not output:
            raise InputError('parameter output (the record directory) is required')
        self._bag = BagWriter(output, split)
        self._lock = threading.Lock()
        self._wanted = list(dict.fromkeys(topics))
        self._handled: dict[str, object] = {}  # topic -> subscription, or None if unrecordable
        self._closed = False
        self.counts: Counter = Counter()  # messages written per topic
        known = pipeline_topics(controller)
        for topic in self._wanted:
            if topic in known:
                self._subscribe(topic, known[topic], _pipeline_qos(topic), [], '')
        self.create_timer(POLL_PERIOD, self._tick)
        self.get_logger().info(f'recording to {output}: waiting for {len(self._wanted)} topics')

    def close(self) -> None:
        """Finish the record (final segment and metadata.yaml); later messages are dropped."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._bag.close()
                missing = ', '.join(t for t in self._wanted if t not in self._handled)
                self.get_logger().info(f'record closed: {sum(self.counts.values())} messages'
                                       + (f'; never published: {missing}' if missing else ''))

    def destroy_node(self):
        """Close the record first: spin() destroys nodes on Ctrl-C, SIGTERM and shutdown."""
        self.close()
        return super().destroy_node()

    def _tick(self) -> None:
        """Poll the graph for new topics and push the open chunk to disk."""
        with self._lock:
            if self._closed:
                return
            self._discover()
            self._bag.flush()

    def _discover(self) -> None:
        """Subscribe to each wanted topic that now has a publisher."""
        types = dict(self.get_topic_names_and_types())
        for topic in self._wanted:
            if topic in self._handled or topic not in types:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            type_name = types[topic][0]
            if len(types[topic]) > 1:
                self.get_logger().warning(f'{topic} has types {types[topic]}; '
                                          f'recording {type_name}')
            hashes = [str(p.topic_type_hash) for p in publishers]
            self._subscribe(topic, type_name, _adapted_qos([p.qos_profile for p in publishers]),
                            [_qos_dict(p.qos_profile) for p in publishers],
                            next((h for h in hashes if h.startswith('RIHS')), ''))

    def _subscribe(self, topic: str, type_name: str, qos: QoSProfile, offered: list,
                   type_hash: str) -> None:
        """Add the topic to the record and subscribe to its raw CDR bytes."""
        try:
            definition = full_definition(type_name)
            msg_class = _message_class(type_name)
        except InputError as exc:
            self.get_logger().error(f'cannot record {topic}: {exc}')
            self._handled[topic] = None
            return
        self._bag.add_topic(topic, type_name, definition, offered or [_qos_dict(qos)], type_hash)
        self._handled[topic] = self.create_subscription(
            msg_class, topic, partial(self._on_message, topic, has_header(type_name)), qos,
            raw=True)
        policies = f'{qos.reliability.name.lower()}, {qos.durability.name.lower()}'
        self.get_logger().info(f'recording {topic} ({type_name}, {policies})')

    def _on_message(self, topic: str, stamped: bool, data: bytes) -> None:
        """Write the CDR bytes as received (log time: receive time; publish time: header stamp)."""
        now = self.get_clock().now().nanoseconds
        stamp = header_stamp_ns(data) if stamped else 0
        with self._lock:
            if not self._closed:
                self._bag.write(topic, now, data, stamp or None)
                self.counts[topic] += 1


def _adapted_qos(offered: list[QoSProfile]) -> QoSProfile:
    """Return the strongest subscription QoS every publisher is compatible with."""
    reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _pipeline_qos(topic: str) -> QoSProfile:
    """Return what the pipeline's publishers offer: reliable; transient local when latched."""
    latched = topic in names.LATCHED_TOPICS
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                      else DurabilityPolicy.VOLATILE)


def _qos_dict(qos: QoSProfile) -> dict:
    """Return an offered QoS as rosbag2 metadata v9 writes it (policy names, sec/nsec)."""
    def span(duration) -> dict:
        sec, nsec = divmod(duration.nanoseconds, 1_000_000_000)
        return {'sec': sec, 'nsec': nsec}
    return {'history': qos.history.name.lower(), 'depth': qos.depth,
            'reliability': qos.reliability.name.lower(), 'durability': qos.durability.name.lower(),
            'deadline': span(qos.deadline), 'lifespan': span(qos.lifespan),
            'liveliness': qos.liveliness.name.lower(),
            'liveliness_lease_duration': span(qos.liveliness_lease_duration),
            'avoid_ros_namespace_conventions': qos.avoid_ros_namespace_conventions}


def _message_class(type_name: str):
    """Return the generated Python class of `pkg/msg/Type`."""
    package, _, name = type_name.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError):
        raise InputError(f'{type_name}: no Python message module installed') from None


def main() -> None:
    """Console entry: `ros2 run vla_safety_filter flight_recorder --ros-args -p output:=DIR`."""
    try:
        run(FlightRecorder)
    except InputError as exc:
        print(f'flight_recorder: {exc}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
