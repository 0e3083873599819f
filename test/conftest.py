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

"""Shared fixtures: the real recorded data folder and an isolated ROS 2 context per test."""
import os

import pytest

from data_paths import DATA as DATA_DIR


@pytest.fixture
def shared_data():
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f'real data folder {DATA_DIR} not found (it sits beside the repository)')
    return DATA_DIR


@pytest.fixture
def ros():
    from ros_harness import Harness
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture
def openpi():
    """A real openpi-protocol policy server on 127.0.0.1 (test_drill_remote.OpenpiServer)."""
    from test_drill_remote import OpenpiServer
    server = OpenpiServer()
    yield server
    server.stop()


@pytest.fixture
def rest():
    """A real OpenVLA-style REST policy server on 127.0.0.1 (test_drill_remote.RestServer)."""
    from test_drill_remote import RestServer
    server = RestServer()
    yield server
    server.stop()
