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
ament_flake8 (99 columns, google import order, single quotes) over the package's Python code.

The same check `ament_lint_auto` runs in every ament_python package; the lint scope is the
`lint_paths` fixture of conftest.py. It runs in its own process: flake8 forks worker processes,
and a fork of this test process, which holds DDS threads from the ROS tests, can deadlock.
"""
import subprocess
import sys

import pytest


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(lint_paths):
    argv = [sys.executable, '-c', 'import sys; from ament_flake8.main import main; '
            'sys.exit(main(sys.argv[1:]))', *[str(path) for path in lint_paths]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'flake8 findings:\n{result.stdout}\n{result.stderr}'
