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
Every Python file starts with the Apache-2.0 header (the licence package.xml declares).

ament_copyright is not on PyPI, so this checks the exact header text of this repository; on a
full ROS install `ament_copyright` applies the same rule.
"""
import re

import pytest

HEADER = re.compile(r"""# Copyright \d{4}(-\d{4})? vla_safety_filter maintainers
#
# Licensed under the Apache License, Version 2\.0 \(the "License"\);
# you may not use this file except in compliance with the License\.
# You may obtain a copy of the License at
#
#     http://www\.apache\.org/licenses/LICENSE-2\.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied\.
# See the License for the specific language governing permissions and
# limitations under the License\.
""")


def has_header(text: str) -> bool:
    """Return whether `text` starts with the header (after a `#!` line, if any)."""
    if text.startswith('#!'):
        text = text.split('\n', 1)[-1]
    return HEADER.match(text) is not None


def test_header_rule_on_hand_examples(repo_root):
    good = (repo_root / 'setup.py').read_text()
    assert has_header(good)
    assert has_header('#!/usr/bin/env python3\n' + good)
    assert not has_header(good.replace('Version 2.0', 'Version 3.0'))
    assert not has_header('\n' + good)
    assert not has_header('"""No header."""\n')


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright(python_files):
    missing = [str(path) for path in python_files if not has_header(path.read_text())]
    assert not missing, 'no Apache-2.0 header in:\n' + '\n'.join(missing)
