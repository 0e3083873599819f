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
One name per thing: names.py is the only place a pipeline topic is spelled out.

`retyped_topics` finds string literals equal to a topic of names.py in the lint scope.
"""
import ast
from pathlib import Path
import re

from hypothesis import given
from hypothesis import strategies as st
import pytest

from vla_safety_filter import names

#: A valid absolute ROS 2 topic name (tokens of letters, digits and underscores).
TOPIC = re.compile(r'^(/[A-Za-z_][A-Za-z0-9_]*)+$')
#: Files allowed to spell topics: names.py itself.
SPELLED_IN = ('vla_safety_filter/names.py',)


def topics() -> set:
    """Return every topic names.py defines (constants and the default controller's topics)."""
    found = {value for key, value in vars(names).items()
             if key.isupper() and isinstance(value, str) and value.startswith('/')}
    return found | {names.forward_commands(), names.joint_trajectory()}


def retyped_topics(path: Path, known: set) -> list:
    """Return (line, literal) for each string literal in `path` that is a topic of names.py."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in known]


def offenders(repo_root: Path, python_files: list) -> list:
    """Return `path:line: literal` for every retyped topic outside names.py."""
    known = topics()
    found = []
    for path in python_files:
        relative = path.relative_to(repo_root).as_posix()
        if relative not in SPELLED_IN:
            found += [f'{relative}:{line}: {literal!r}'
                      for line, literal in retyped_topics(path, known)]
    return found


def test_every_topic_is_a_valid_absolute_ros_name():
    assert topics() and all(TOPIC.match(topic) for topic in topics())
    assert set(names.LATCHED_TOPICS) <= topics()


def test_pipeline_nodes_are_distinct_and_in_activation_order():
    assert names.PIPELINE_NODES == (names.ACTION_MONITOR, names.SAFETY_FILTER,
                                    names.POLICY_BRIDGE)
    assert len(set(names.PIPELINE_NODES)) == len(names.PIPELINE_NODES)


def test_service_of_resolves_a_private_service():
    assert names.service_of('execspec_check', names.BRINGUP) == '/execspec_check/bringup'
    assert names.service_of('/policy_bridge', names.LOADED_UNNORMALIZER) == \
        '/policy_bridge/loaded_unnormalizer'


@given(st.integers(0, 3))
def test_levels_read_the_same_from_ints_and_message_bytes(level):
    assert names.level_of(bytes([level])) == names.level_of(level) == level
    assert names.level_name(bytes([level])) == names.LEVEL_NAMES[level]


@pytest.mark.parametrize('level', [-1, 4, 255])
def test_an_unknown_level_has_no_name(level):
    assert names.level_name(level) == '?'


def test_the_checker_finds_a_retyped_topic_and_nothing_else(tmp_path):
    path = tmp_path / 'sample.py'
    path.write_text("A = '/vla/raw_action'\nB = f'/vla/raw_action: {A}'\nC = '/vla/raw'\n")
    assert retyped_topics(path, topics()) == [(1, names.RAW_ACTION)]


@pytest.mark.skip(reason='enabled by the lead after the sweep that imports names.py everywhere')
def test_no_file_retypes_a_topic_of_names_py(repo_root, python_files):
    found = offenders(repo_root, python_files)
    assert not found, 'retyped topics (use vla_safety_filter.names):\n' + '\n'.join(found)
