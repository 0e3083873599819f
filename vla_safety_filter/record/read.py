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
Open a flight record (a rosbag2 directory or a lone .mcap) and iterate its deserialized messages.

The segments metadata.yaml lists are read with rosbags; MCAP files it does not list (the segment
open when the recorder was killed, a bag without metadata.yaml) and lone .mcap files are salvaged
chunk by chunk, stopping quietly at a truncated or corrupt tail.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
import os
from pathlib import Path
import re

from mcap.exceptions import McapError
from mcap.records import Channel, Header, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import get_types_from_msg, get_typestore, Stores, TypesysError
import yaml

from .bag import METADATA_FILE
from ..core.errors import InputError

#: Types for records without embedded definitions (rosbag2 sqlite3 bags, non-ros2msg schemas).
DEFAULT_STORE = Stores.ROS2_KILTED


class Record:
    """
    An opened record.

    `.topics` {topic: type}, `.counts` {topic: n}, `.salvaged` (files read past metadata.yaml)
    and `messages()`.
    """

    def __init__(self, path: Path, bag_dir: Path | None, loose: list[Path]):
        self.path = path
        self._bag_dir = bag_dir
        self.salvaged = loose
        self.topics: dict[str, str] = {}
        self.counts: Counter = Counter()
        if bag_dir is not None:
            with _bag_reader(bag_dir) as reader:
                for conn in reader.connections:
                    self.topics.setdefault(conn.topic, conn.msgtype)
                    self.counts[conn.topic] += conn.msgcount
        typedefs = dict(get_typestore(DEFAULT_STORE).fielddefs)
        for file in loose:
            for topic, type_name, definition in _scan(file, self.counts):
                self.topics.setdefault(topic, type_name)
                if definition:
                    typedefs.update(_parse(file, definition, type_name))
        self._typestore = get_typestore(Stores.EMPTY)
        self._typestore.register(typedefs)

    def messages(self, topics=None) -> Iterator[tuple[str, int, object]]:
        """
        Yield (topic, log_time_ns, message) of the wanted topics.

        Listed segments in time order, then salvaged files in file order.
        """
        wanted = set(self.topics if topics is None else topics)
        if self._bag_dir is not None:
            with _bag_reader(self._bag_dir) as reader:
                conns = [c for c in reader.connections if c.topic in wanted]
                for conn, log_time, raw in reader.messages(conns) if conns else ():
                    yield conn.topic, log_time, self._decode(reader.typestore, raw, conn.msgtype)
        for file in self.salvaged:
            channels: dict[int, tuple[str, str]] = {}
            schemas: dict[int, str] = {}
            for rec in _records(file):
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec.name
                elif isinstance(rec, Channel):
                    channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ''))
                elif isinstance(rec, Message) and rec.channel_id in channels:
                    topic, type_name = channels[rec.channel_id]
                    if topic in wanted:
                        yield topic, rec.log_time, self._decode(self._typestore, rec.data,
                                                                type_name)

    def _decode(self, store, raw: bytes, type_name: str) -> object:
        """Deserialize CDR bytes with a rosbags typestore; failure names the record."""
        try:
            return store.deserialize_cdr(raw, type_name)
        except (SerdeError, TypesysError, KeyError, ValueError) as exc:
            raise InputError(f'{self.path}: cannot decode a {type_name} message: {exc}') from None


def open_record(path: str | os.PathLike) -> Record:
    """Open a rosbag2 directory (ours or `ros2 bag record -s mcap`) or a single .mcap file."""
    path = Path(path)
    if path.is_file():
        return Record(path, None, [path])
    if not path.is_dir():
        raise InputError(f'{path}: no such record (expected a rosbag2 directory or an .mcap file)')
    listed = _listed_files(path)
    mcaps = sorted(path.glob('*.mcap'), key=_split_index)
    if listed is None and not mcaps:
        raise InputError(f'{path}: no {METADATA_FILE} nor .mcap files; not a rosbag2 directory')
    loose = [f for f in mcaps if f.name not in (listed or ()) and _salvageable(f)]
    if listed is None and not loose:
        raise InputError(f'{path}: no readable .mcap file and no {METADATA_FILE}')
    return Record(path, path if listed is not None else None, loose)


@contextmanager
def _bag_reader(bag_dir: Path) -> Iterator[AnyReader]:
    """Return an open rosbags AnyReader of the segments metadata.yaml lists."""
    reader = AnyReader([bag_dir], default_typestore=get_typestore(DEFAULT_STORE))
    try:
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise InputError(f'{bag_dir}: unreadable rosbag2 directory: {exc}') from None
    try:
        yield reader
    finally:
        reader.close()


def _listed_files(bag_dir: Path) -> set[str] | None:
    """Segment file names metadata.yaml lists, None if it is absent."""
    meta = bag_dir / METADATA_FILE
    if not meta.is_file():
        return None
    try:
        info = yaml.safe_load(meta.read_text(encoding='utf-8'))['rosbag2_bagfile_information']
        return {Path(p).name for p in info['relative_file_paths']}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(f'{meta}: not a rosbag2 metadata file ({exc})') from None


def _split_index(file: Path) -> tuple[int, str]:
    """Sort key putting NAME_10.mcap after NAME_9.mcap."""
    match = re.search(r'_(\d+)$', file.stem)
    return (int(match.group(1)) if match else -1, file.name)


def _salvageable(file: Path) -> bool:
    """Return False for a segment killed before its MCAP header reached the disk."""
    try:
        with closing(_records(file)) as records:
            next(records, None)
        return True
    except InputError:
        return False


def _scan(file: Path, counts: Counter) -> list[tuple[str, str, str]]:
    """Count an MCAP file's salvageable messages; returns (topic, type, definition) per channel."""
    schemas: dict[int, Schema] = {}
    channels: dict[int, tuple[str, str, str]] = {}
    for rec in _records(file):
        if isinstance(rec, Schema):
            schemas[rec.id] = rec
        elif isinstance(rec, Channel):
            if rec.message_encoding != 'cdr':
                raise InputError(f'{file}: channel {rec.topic} is {rec.message_encoding!r}, '
                                 'not ROS 2 CDR')
            schema = schemas.get(rec.schema_id)
            definition = schema.data.decode() if schema and schema.encoding == 'ros2msg' else ''
            channels[rec.id] = (rec.topic, schema.name if schema else '', definition)
        elif isinstance(rec, Message) and rec.channel_id in channels:
            counts[channels[rec.channel_id][0]] += 1
    return list(channels.values())


def _parse(file: Path, definition: str, type_name: str) -> dict:
    """Return rosbags type definitions from a `ros2msg` schema text."""
    try:
        return get_types_from_msg(definition, type_name)
    except TypesysError as exc:
        raise InputError(f'{file}: bad message definition of {type_name}: {exc}') from None


def _records(file: Path) -> Iterator:
    """MCAP records in file order (chunks opened, CRC-checked), up to a truncated/corrupt tail."""
    size = file.stat().st_size
    with open(file, 'rb') as fh:
        reader = StreamReader(_ExactReader(fh), validate_crcs=True, record_size_limit=size)
        records = reader.records
        try:
            header = next(records)
        except (McapError, EOFError, ValueError) as exc:
            raise InputError(f'{file}: not an MCAP file ({exc or "empty"})') from None
        if not isinstance(header, Header):
            raise InputError(f'{file}: not an MCAP file (no header record)')
        try:
            yield from records
        except Exception:  # noqa: BLE001 - all past a damaged byte is lost; keep what came before
            return


class _ExactReader:
    """File wrapper whose short reads raise EOFError (mcap would parse a cut record as garbage)."""

    def __init__(self, fh):
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes (all if negative), else EOFError."""
        data = self._fh.read(size)
        if 0 <= size != len(data):
            raise EOFError(f'truncated: wanted {size} bytes, got {len(data)}')
        return data
