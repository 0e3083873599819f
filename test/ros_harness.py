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

"""Real rclpy/DDS test harness: an isolated context per test, its nodes spun in the background."""
from __future__ import annotations

import itertools
import os
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from vla_safety_filter.nodes.common import spin_until_shutdown

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
# Concurrent test runs on one machine pick disjoint ranges with VLA_TEST_DOMAIN_BASE/_SPAN.
_BASE = int(os.environ.get('VLA_TEST_DOMAIN_BASE', 100 + (os.getpid() % 50) * 2))
_SPAN = int(os.environ.get('VLA_TEST_DOMAIN_SPAN', 130))
_domains = itertools.count()


def next_domain() -> int:
    """Return a ROS domain id no other test of this process uses."""
    return (_BASE + next(_domains) % _SPAN) % 230


class Harness:
    """Owns one rclpy context on its own ROS domain; add nodes, then wait for conditions."""

    def __init__(self, make_executor=None):
        """Spin `make_executor(context)` (default: a SingleThreadedExecutor) in a thread."""
        self.context = Context()
        rclpy.init(context=self.context, domain_id=next_domain())
        self.executor = (make_executor or SingleThreadedExecutor)(context=self.context)
        self.nodes = []
        self._thread = threading.Thread(target=spin_until_shutdown,
                                        args=(self.executor, self.context), daemon=True)
        self._thread.start()

    def add(self, cls, name=None, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        kwargs = {'context': self.context, 'parameter_overrides': overrides}
        node = cls(name, **kwargs) if name else cls(**kwargs)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name):
        node = rclpy.create_node(name, context=self.context)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def close(self):
        self.context.try_shutdown()
        self._thread.join(timeout=5)
        for node in self.nodes:
            node.destroy_node()


def wait_for(predicate, timeout=10.0, period=0.02):
    """Poll until predicate() is truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return predicate()
