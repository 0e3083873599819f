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
Shared fixtures of the test suite: ROS harness, real data, lint scope, policy servers.

Test modules share fixtures through this file only; they do not import each other.

Missing real data (/work/shared/data, or $VLA_SAFETY_DATA): a test that needs it asks for the
`shared_data` fixture (or `data_file`), which skips with the path it looked for, so a checkout
without the recordings still runs everything else. CI sets VLA_REQUIRE_DATA=1 (.ci/run), which
turns that skip into a failure: there, a missing recording is a broken setup, not a reason to
test less.
"""
import os
from pathlib import Path

from data_paths import DATA as DATA_DIR
import pytest

REPO = Path(__file__).resolve().parent.parent
#: What the ament linters check (test_flake8, test_pep257, test_copyright).
LINT_SCOPE = ('vla_safety_filter', 'test', 'bench', 'launch', 'setup.py')


def missing_data(what: str) -> None:
    """Skip the test for missing real data, or fail when VLA_REQUIRE_DATA=1 (CI)."""
    reason = f'real data {what} not found (it sits beside the repository, or $VLA_SAFETY_DATA)'
    if os.environ.get('VLA_REQUIRE_DATA') == '1':
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def shared_data():
    """Return the real recorded data folder (see the policy above)."""
    if not os.path.isdir(DATA_DIR):
        missing_data(DATA_DIR)
    return DATA_DIR


@pytest.fixture
def data_file(shared_data):
    """Return a function giving the path of one recording in the data folder (policy above)."""
    def path(name: str) -> str:
        found = os.path.join(shared_data, name)
        if not os.path.exists(found):
            missing_data(found)
        return found
    return path


@pytest.fixture
def ros():
    """Return a Harness: an isolated rclpy context on its own domain, closed after the test."""
    from ros_harness import Harness
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Return the repository's root folder."""
    return REPO


@pytest.fixture(scope='session')
def lint_paths() -> list:
    """Return the files and folders the ament linters check."""
    return [REPO / name for name in LINT_SCOPE]


@pytest.fixture(scope='session')
def python_files(lint_paths) -> list:
    """Return every Python file in the lint scope."""
    files = []
    for path in lint_paths:
        files.extend(sorted(path.rglob('*.py')) if path.is_dir() else [path])
    return [path for path in files if '__pycache__' not in path.parts]


@pytest.fixture
def openpi():
    """Return a real openpi-protocol policy server on 127.0.0.1 (test_drill_remote)."""
    from test_drill_remote import OpenpiServer
    server = OpenpiServer()
    yield server
    server.stop()


@pytest.fixture
def rest():
    """Return a real OpenVLA-style REST policy server on 127.0.0.1 (test_drill_remote)."""
    from test_drill_remote import RestServer
    server = RestServer()
    yield server
    server.stop()
