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

"""The PushT demo's observer: the ALOHA demo's, plus sim_world's episode reports and its reset."""
from __future__ import annotations

import time

from std_msgs.msg import String
from std_srvs.srv import Trigger

from .observer import DemoObserver

SERVICES = ('/sim_world/reset', '/execspec_check/teardown', '/execspec_check/bringup')
"""The Trigger services the PushT runner calls between episodes."""


class PushtObserver(DemoObserver):
    """Keeps every `/vla/episode` message with its time and resets sim_world on request."""

    def __init__(self, joint_names, controller: str, **kwargs):
        super().__init__(joint_names, controller, **kwargs)
        self._reports: list[tuple[float, str]] = []
        self._triggers = {name: self.create_client(Trigger, name) for name in SERVICES}

    def now(self) -> float:
        """Seconds since the observer started (the time base of everything it saw)."""
        return self._now()

    def _on_episode(self, msg: String) -> None:
        super()._on_episode(msg)
        with self._lock:
            self._reports.append((self._now(), msg.data))

    def done_after(self, start: float) -> tuple[float, str] | None:
        """Return the first `done ...` report of sim_world after START (time, text), or None."""
        with self._lock:
            return next(((t, text) for t, text in self._reports
                         if t > start and text.startswith('done ')), None)

    def trigger(self, service: str, deadline: float) -> bool:
        """Call one of SERVICES (from a thread not spinning this node); True if it succeeded."""
        client = self._triggers[service]
        if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
            return False
        future = client.call_async(Trigger.Request())
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        return future.done() and future.result() is not None and future.result().success

    def last_command_time(self) -> float | None:
        """Return when the last controller command was seen (observer time), or None."""
        with self._lock:
            return self._seen.command_times[-1] if self._seen.command_times else None
