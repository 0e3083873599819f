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
Rosbag2-format MCAP recording: time-split segments plus a metadata.yaml naming the closed ones.

Each segment `NAME_<i>.mcap` is finished (summary + footer) once it spans `split_seconds` of log
time, then metadata.yaml is rewritten atomically: a killed process leaves a valid bag of its closed
segments, and the open segment keeps every chunk already flushed (read.py salvages those).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import os
from pathlib import Path
import struct

from mcap.writer import CompressionType, LIBRARY_IDENTIFIER, Writer
import yaml

from ..core.errors import InputError
from ..nodes.compat import ros_distro

#: Newest rosbag2 metadata version that rosbags 0.11.9 reads (v9: QoS profiles as YAML lists).
METADATA_VERSION = 9
METADATA_FILE = 'metadata.yaml'
LIBRARY = f'vla_safety_filter flight_recorder; {LIBRARY_IDENTIFIER}'


@dataclass
class _Topic:
    """One recorded topic: what rosbag2 keeps in metadata.yaml and in each segment's channel."""

    name: str
    type: str  # noqa: A003 - rosbag2's metadata.yaml key
    definition: str
    qos: list[dict]
    type_hash: str
    count: int = 0          # messages in closed segments
    in_closed: bool = False  # a closed segment holds its channel


@dataclass
class _Segment:
    """The open MCAP file and what its metadata.yaml entry will say once it is closed."""

    path: Path
    writer: Writer
    start: int
    end: int
    channels: dict[str, int] = field(default_factory=dict)
    schemas: dict[str, int] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


class BagWriter:
    """
    Writes CDR messages to a rosbag2 directory of MCAP segments.

    `ros2 bag`, rosbags and Foxglove open them. Memory: one chunk, the open segment's index, a
    metadata entry per segment.
    """

    def __init__(self, directory: str | os.PathLike, split_seconds: float = 5.0,
                 chunk_size: int = 64 * 1024):
        self.path = Path(directory)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise InputError(f'{self.path}: already exists and is not an empty directory; '
                             'refusing to overwrite a record')
        if not split_seconds > 0:
            raise InputError(f'split_seconds must be > 0, got {split_seconds}')
        self.path.mkdir(parents=True, exist_ok=True)
        self._split_ns = int(split_seconds * 1e9)
        self._chunk_size = chunk_size
        self._topics: dict[str, _Topic] = {}
        self._files: list[dict] = []
        self._segment: _Segment | None = None
        self._closed = False
        self._distro = ros_distro()
        self._write_metadata()

    def add_topic(self, topic: str, type_name: str, definition_text: str,
                  qos_profiles: list[dict] | None = None, type_hash: str = '') -> None:
        """
        Record `topic` of `pkg/msg/Type`.

        qos_profiles are the publishers' offered QoS (rosbag2 v9 dicts) so `ros2 bag play` can
        offer them again.
        """
        if topic in self._topics:
            raise InputError(f'{topic}: already added to the record')
        self._topics[topic] = _Topic(topic, type_name, definition_text, list(qos_profiles or []),
                                     type_hash)
        if self._segment is not None:
            self._register(self._segment, self._topics[topic])

    def write(self, topic: str, log_time_ns: int, data: bytes,
              publish_time_ns: int | None = None) -> None:
        """Append one serialized message; a new segment starts after split_seconds."""
        if self._closed:
            raise InputError(f'{self.path}: record already closed')
        segment = self._segment
        if segment is not None and log_time_ns - segment.start >= self._split_ns:
            self._close_segment()
            segment = None
        if segment is None:
            segment = self._segment = self._open_segment(log_time_ns)
        segment.writer.add_message(segment.channels[topic], log_time_ns, bytes(data),
                                   log_time_ns if publish_time_ns is None else publish_time_ns)
        segment.counts[topic] += 1
        segment.start, segment.end = min(segment.start, log_time_ns), max(segment.end, log_time_ns)

    def flush(self) -> None:
        """Write the open chunk to the file now, so a killed process loses nothing before this."""
        if self._segment is not None:
            self._segment.writer.flush()

    def close(self) -> None:
        """Finish the open segment and write the final metadata.yaml (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._segment is not None:
            self._close_segment()

    def _open_segment(self, log_time_ns: int) -> _Segment:
        """Start NAME_<i>.mcap (rosbag2 split naming) with every topic's schema and channel."""
        path = self.path / f'{self.path.name}_{len(self._files)}.mcap'
        writer = Writer(str(path), chunk_size=self._chunk_size, compression=CompressionType.ZSTD)
        writer.start(profile='ros2', library=LIBRARY)
        writer.flush()  # the header on disk: a killed segment is at least a valid MCAP prefix
        segment = _Segment(path, writer, log_time_ns, log_time_ns)
        for topic in self._topics.values():
            self._register(segment, topic)
        return segment

    @staticmethod
    def _register(segment: _Segment, topic: _Topic) -> None:
        """Return the schema (once per type) and channel, with the metadata rosbag2 writes."""
        if topic.type not in segment.schemas:
            segment.schemas[topic.type] = segment.writer.register_schema(
                topic.type, 'ros2msg', topic.definition.encode())
        qos = yaml.safe_dump(topic.qos, sort_keys=False) if topic.qos else ''
        segment.channels[topic.name] = segment.writer.register_channel(
            topic.name, 'cdr', segment.schemas[topic.type],
            {'offered_qos_profiles': qos, 'topic_type_hash': topic.type_hash})

    def _close_segment(self) -> None:
        """Write the segment's summary and footer, then list it in metadata.yaml."""
        segment, self._segment = self._segment, None
        segment.writer.finish()
        self._files.append({
            'path': segment.path.name,
            'starting_time': {'nanoseconds_since_epoch': segment.start},
            'duration': {'nanoseconds': segment.end - segment.start},
            'message_count': sum(segment.counts.values()),
        })
        for name in segment.channels:
            self._topics[name].count += segment.counts[name]
            self._topics[name].in_closed = True
        self._write_metadata()

    def _write_metadata(self) -> None:
        """Atomically replace metadata.yaml with one listing only the closed segments."""
        starts = [f['starting_time']['nanoseconds_since_epoch'] for f in self._files]
        ends = [s + f['duration']['nanoseconds'] for s, f in zip(starts, self._files)]
        info = {
            'version': METADATA_VERSION,
            'storage_identifier': 'mcap',
            'duration': {'nanoseconds': max(ends) - min(starts) if starts else 0},
            'starting_time': {'nanoseconds_since_epoch': min(starts) if starts else 0},
            'message_count': sum(f['message_count'] for f in self._files),
            'topics_with_message_count': [
                {'topic_metadata': {'name': t.name, 'type': t.type, 'serialization_format': 'cdr',
                                    'offered_qos_profiles': t.qos,
                                    'type_description_hash': t.type_hash},
                 'message_count': t.count}
                for t in self._topics.values() if t.in_closed],
            'compression_format': '',
            'compression_mode': '',
            'relative_file_paths': [f['path'] for f in self._files],
            'files': self._files,
            'custom_data': {},
            'ros_distro': self._distro,
        }
        tmp = self.path / f'.{METADATA_FILE}.tmp'
        with open(tmp, 'w', encoding='utf-8') as fh:
            yaml.safe_dump({'rosbag2_bagfile_information': info}, fh, sort_keys=False)
        os.replace(tmp, self.path / METADATA_FILE)


def header_stamp_ns(data: bytes) -> int:
    """Return the std_msgs/Header stamp (ns) leading a CDR message, 0 if unset or too short."""
    if len(data) < 12:
        return 0
    order = '<' if data[1] & 1 else '>'  # encapsulation id: odd = little endian
    sec, nanosec = struct.unpack_from(f'{order}iI', data, 4)
    return max(sec * 1_000_000_000 + nanosec, 0)
