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
The split that lets the second distribution run only the tests that can reach ROS 2 code.

A test wrongly left out of it would never run against Kilted's rclpy, so the classifier must
see every way in: direct imports, imports inside functions, relative imports in the package,
the CLI's subcommands found at run time, subprocesses, and ROS fixtures.
"""
import ast
from pathlib import Path

import pytest
import ros_reach

HERE = Path(__file__).resolve().parent


def test_node_tests_and_the_cli_reach_ros_pure_core_tests_do_not():
    assert ros_reach.reaches_ros(HERE / 'test_node_safety_filter.py')
    assert ros_reach.reaches_ros(HERE / 'test_demo.py')
    # the CLI finds its subcommands with importlib; `demo` starts nodes
    assert ros_reach.reaches_ros(ros_reach.PACKAGE / 'cli.py')
    assert not ros_reach.reaches_ros(HERE / 'test_contract.py')
    assert not ros_reach.reaches_ros(ros_reach.PACKAGE / 'core' / 'contract.py')


def test_relative_and_function_level_imports_are_followed():
    tree = ast.parse('def f():\n    from ..nodes import common\n    import rclpy\n')
    names = ros_reach.imported_names(tree, ros_reach.PACKAGE / 'core' / 'example.py')
    assert {'vla_safety_filter.nodes', 'vla_safety_filter.nodes.common', 'rclpy'} <= names


def test_no_package_module_outside_core_is_taken_for_core_by_mistake():
    """Every node module reaches ROS; nothing under core/ does (the project's rule)."""
    nodes = sorted((ros_reach.PACKAGE / 'nodes').glob('*.py'))
    assert nodes and all(ros_reach.reaches_ros(path) for path in nodes
                         if path.name != '__init__.py')
    assert not [path for path in (ros_reach.PACKAGE / 'core').rglob('*.py')
                if ros_reach.reaches_ros(path)]


def test_ros_fixtures_and_the_fixtures_that_request_them():
    found = ros_reach.ros_fixtures(HERE / 'conftest.py')
    assert {'ros', 'filter_probe', 'fake_arm'} <= found
    assert 'small_contract' not in found and 'repo_root' not in found


@pytest.mark.parametrize('module', sorted(p.name for p in HERE.glob('test_*.py')))
def test_every_module_that_names_rclpy_or_a_node_is_in_the_split(module):
    """A plain text search, independent of the classifier, as a floor under it."""
    text = (HERE / module).read_text()
    if module != Path(__file__).name and any(
            word in text for word in ('import rclpy', 'from rclpy', '.nodes', '_msgs.msg')):
        assert ros_reach.reaches_ros(HERE / module)
