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
Who asserts the safety stop: a stop is asserted while ANY live source's last value is true.

/vla/safety_stop has several publishers (the action monitor, operator and teleop e-stops); each
is one source, keyed by what identifies its publisher exactly (its GID). One source's `false`
never releases another's `true`. A source whose publisher has left the ROS graph no longer
asserts; the latch it set stays until ~/reset (that is the executive's business), so a crashed
monitor never releases the robot by itself.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Iterable

#: A source not yet seen in the ROS graph is kept this long after its last message (s): the
#: graph learns of a new publisher later than its first message may arrive.
DISCOVERY_GRACE_S = 2.0
#: Messages of a source remembered to drop a second copy (the filter hears each publisher on two
#: subscriptions).
HEARD = 256


@dataclass
class _Source:
    asserted: bool
    time: float
    sequence: int | None
    seen_live: bool = False
    heard: deque = field(default_factory=lambda: deque(maxlen=HEARD))


class StopSources:
    """The last value of each source of /vla/safety_stop, and which of them assert the stop."""

    def __init__(self, grace: float = DISCOVERY_GRACE_S):
        self.grace = grace
        self._sources: dict[Hashable, _Source] = {}

    def record(self, source: Hashable, asserted: bool, now: float,
               sequence: int | None = None, message: Hashable = None) -> bool:
        """
        Record a source's value; return False for a message it already had (not applied).

        A message heard again (the other subscription's copy, however late) or out of order is
        ignored: by `message`, what tells it apart (e.g. its source timestamp), among the last
        HEARD of the source; by `sequence`, the publisher's sequence number, when known.
        """
        entry = self._sources.get(source)
        if entry is None:
            entry = self._sources[source] = _Source(bool(asserted), now, sequence)
        elif message in entry.heard or (None not in (sequence, entry.sequence)
                                        and sequence <= entry.sequence):
            return False
        entry.asserted, entry.time, entry.sequence = bool(asserted), now, sequence
        if message is not None:
            entry.heard.append(message)
        return True

    def forget(self, source: Hashable) -> None:
        """Drop a source (its publisher has gone): it asserts nothing any more."""
        self._sources.pop(source, None)

    def prune(self, live: Iterable[Hashable], now: float) -> tuple:
        """
        Forget the sources whose publishers are not `live` in the graph; return them.

        A source never seen live is kept for `grace` s after its last message (discovery lag).
        """
        live = set(live)
        gone = []
        for source, entry in self._sources.items():
            if source in live:
                entry.seen_live = True
            elif entry.seen_live or now - entry.time > self.grace:
                gone.append(source)
        for source in gone:
            self.forget(source)
        return tuple(gone)

    @property
    def asserted(self) -> bool:
        """Tell whether any source's last value asserts the stop."""
        return any(entry.asserted for entry in self._sources.values())

    @property
    def who(self) -> tuple:
        """Return the sources asserting the stop, in the order they were first heard."""
        return tuple(s for s, entry in self._sources.items() if entry.asserted)

    def __len__(self) -> int:
        """Return the number of sources heard and not forgotten."""
        return len(self._sources)
