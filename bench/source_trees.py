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

"""Run a bench's child pass on another source tree (a baseline revision's git worktree)."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def run_child(script: str, root: str, args: list[str]) -> dict:
    """
    Run `script --child ARGS` importing the package from `root`; return its JSON output.

    The child prints one JSON object with `package`, where it imported vla_safety_filter from:
    a run that did not import it from `root` would time the wrong code, so it is refused.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, os.path.abspath(script), '--child', *args], env=env,
                          check=True, capture_output=True, text=True, cwd=root)
    result = json.loads(done.stdout)
    expected = os.path.join(os.path.realpath(root), 'vla_safety_filter')
    if os.path.realpath(result.pop('package')) != expected:
        raise SystemExit(f'the child imported the package from elsewhere than {root}')
    return result
