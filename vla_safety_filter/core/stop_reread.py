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
The safety stop where its publishers cannot be told apart: a `false` is checked by re-reading.

Without the publisher GID (Jazzy's rclpy 7.1, rclpy's EventsExecutor) a message does not say
who sent it, so a `false` may not release the stop on its word alone. Instead the filter re-reads
every latched publisher's value with a fresh transient-local reader (a *probe*, which gets the
last sample of each latched publisher) and the stop stays asserted while any re-read value is
true. Volatile publishers cannot be re-read: their messages are the ones the filter's volatile
subscription hears and its latched one does not (told apart by the message's source timestamp
and sequence number, or, without a MessageInfo, by value and order); the last of those is one
source, VOLATILE_PUBLISHERS. A true always asserts at once; only a probe's decision releases.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Hashable

#: The group of latched (transient-local) publishers, re-read by a probe.
LATCHED_PUBLISHERS = 'latched'
#: The group of volatile publishers: the last value heard from any of them.
VOLATILE_PUBLISHERS = 'volatile'
#: Latched messages remembered to recognise their copy on the volatile subscription.
HEARD = 256


@dataclass(frozen=True)
class Decision:
    """What a probe decided, and why (for the log)."""

    asserted: bool
    samples: int            # values re-read
    writers: int            # latched publishers in the graph when the probe started
    missing: int            # fewer values than latched publishers by this many
    unknown: bool           # the probe was not matched with all of them: asserting
    again: bool             # a `false` came while it ran: probe once more


class UnidentifiedStops:
    """The stop state from messages that do not name their publisher, released by re-reading."""

    def __init__(self):
        self._latched = False             # a latched publisher's value is (or may be) true
        self._volatile = False            # the last value of the volatile publishers
        self._volatile_heard: list = []   # (value, id, n) heard on the volatile reader, and
        self._latched_heard: list = []    # on the latched one, since the last decision
        self._count = 0                   # n: the messages' order of arrival
        self._latched_ids: deque = deque(maxlen=HEARD)
        self._probe: list | None = None   # the samples of the running probe
        self._writers = 0
        self._true_meanwhile = self._false_meanwhile = False

    # ---- messages ------------------------------------------------------------------------
    def heard(self, value: bool, message: Hashable, latched: bool) -> bool:
        """
        Record a message of the latched or the volatile subscription; return True to probe.

        `message` tells one message from another (source timestamp and sequence number; None
        where the callback gets no MessageInfo). A true asserts at once; a false while asserted
        asks for a probe (or for another one, when one is running).
        """
        value = bool(value)
        if self._probe is not None:
            self._true_meanwhile |= value
            self._false_meanwhile |= not value
        if latched and message is not None:
            self._latched_ids.append(message)     # known before its volatile copy may come
        if not value and not self.asserted:
            return False                  # nothing to release: no need to know who sent it
        heard = self._latched_heard if latched else self._volatile_heard
        self._count += 1
        heard.append((value, message, self._count))
        del heard[:-HEARD]
        self._latched |= latched and value
        return not value and self._probe is None

    @property
    def asserted(self) -> bool:
        """Tell whether the stop is asserted: only a probe's decision releases it."""
        return self._latched or self._volatile_now()

    @property
    def who(self) -> tuple:
        """Return the groups asserting the stop (LATCHED_PUBLISHERS, VOLATILE_PUBLISHERS)."""
        return ((LATCHED_PUBLISHERS,) if self._latched else ()) + \
            ((VOLATILE_PUBLISHERS,) if self._volatile_now() else ())

    # ---- probes --------------------------------------------------------------------------
    @property
    def probing(self) -> bool:
        """Tell whether a probe is running."""
        return self._probe is not None

    def begin_probe(self, writers: int) -> None:
        """Start a probe: `writers` latched publishers are in the graph now."""
        self._probe, self._writers = [], writers
        self._true_meanwhile = self._false_meanwhile = False

    def sample(self, value: bool) -> None:
        """Record a value the probe read (a latched publisher's last, or one sent meanwhile)."""
        self._probe.append(bool(value))

    def decide(self, matched: int, volatile_live: bool) -> Decision:
        """
        End the probe: the stop is asserted iff a re-read value, or a volatile one, is true.

        The probe runs its whole time: a count of values cannot tell when every publisher has
        answered, as neither a value's publisher nor a publisher's history depth is known (the
        ROS graph reports depth 0), and one publisher's values could stand in for another's. A
        latched publisher counts as asserting unless the probe's reader was `matched` with every
        one of them half-way (a matched one that gave no value has published nothing). A true
        heard while the probe ran keeps the stop asserted.
        """
        samples, writers = self._probe, self._writers
        missing = max(0, writers - len(samples))
        unknown = matched < writers
        self._latched = any(samples) or unknown or self._true_meanwhile
        unmatched, left = self._match()
        if unmatched:
            self._volatile = unmatched[-1][0]
        self._volatile = self._volatile and volatile_live
        self._volatile_heard, self._latched_heard = [], left
        self._probe = None
        return Decision(self.asserted, len(samples), writers, missing, unknown,
                        self._false_meanwhile and self.asserted)

    # ---- telling volatile messages from copies of latched ones ----------------------------
    def _volatile_now(self) -> bool:
        """Return the volatile source's value: a true not known as a latched copy counts now."""
        return self._volatile or any(entry[0] for entry in self._unmatched())

    def _unmatched(self) -> list:
        """Return the volatile subscription's messages that are not copies of latched ones."""
        return self._match()[0]

    def _match(self) -> tuple:
        """
        Pair each volatile-subscription message with its latched copy; return what is left.

        With an id the copy is the latched message of that id; without, the latched message of
        equal value heard nearest in time (the two copies of a message come together). Returns
        (volatile messages unpaired, latched messages without id unpaired: their volatile copy
        may still come).
        """
        left = [entry for entry in self._latched_heard if entry[1] is None]
        unpaired = [entry for entry in self._volatile_heard
                    if entry[1] is None or entry[1] not in self._latched_ids]
        for entry in list(left):
            twins = [other for other in unpaired if other[1] is None and other[0] == entry[0]]
            if twins:
                unpaired.remove(min(twins, key=lambda other: abs(other[2] - entry[2])))
                left.remove(entry)
        return unpaired, left
