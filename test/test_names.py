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
One name per thing: names.py alone spells out pipeline topics; one policy for missing data.

`retyped_topics` finds string literals equal to a topic of names.py in the lint scope.
`reads_data_at_import` finds test modules that name the data folder outside their functions.
"""
import ast
import os
from pathlib import Path
import re
import subprocess
import sys

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


def test_no_file_retypes_a_topic_of_names_py(repo_root, python_files):
    found = offenders(repo_root, python_files)
    assert not found, 'retyped topics (use vla_safety_filter.names):\n' + '\n'.join(found)


# ---- one policy for missing data (test/conftest.py) ----------------------------------------
def reads_data_at_import(path: Path) -> bool:
    """Return whether a test module names data_paths or DATA outside its functions and classes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = [node for node in tree.body
           if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return any(isinstance(node, ast.Name) and node.id == 'DATA'
               or isinstance(node, ast.ImportFrom) and node.module == 'data_paths'
               for statement in top for node in ast.walk(statement))


def test_the_checker_finds_data_read_at_import_and_not_inside_a_test(tmp_path):
    at_import = tmp_path / 'test_a.py'
    at_import.write_text("from data_paths import DATA\nPATH = DATA + '/x.npz'\n")
    inside = tmp_path / 'test_b.py'
    inside.write_text('def test_x(data_file):\n    DATA = data_file("x.npz")\n')
    assert reads_data_at_import(at_import) and not reads_data_at_import(inside)


def test_no_further_test_module_reads_the_data_folder_at_import(repo_root):
    modules = sorted((repo_root / 'test').glob('test_*.py'))
    found = {path.name for path in modules if reads_data_at_import(path)}
    assert not found, sorted(found)


@pytest.mark.parametrize('require, outcome', [('0', 'skipped'), ('1', 'error')])
def test_missing_data_skips_locally_and_is_an_error_where_ci_requires_it(tmp_path, repo_root,
                                                                         require, outcome):
    env = {**os.environ, 'VLA_SAFETY_DATA': str(tmp_path / 'absent'), 'VLA_REQUIRE_DATA': require}
    run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                          'test/test_faults.py', '-k', 'real_pusht'], cwd=repo_root, env=env,
                         capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(rf'\b\d+ {outcome}', summary) and 'passed' not in summary, run.stdout
