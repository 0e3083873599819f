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

"""The launch file, setup.py and package.xml agree; bad bringup input gives a one-line error."""
import ast
import os
import re
import subprocess
import sys

import pytest

from vla_safety_filter import names

ROOT = os.path.join(os.path.dirname(__file__), '..')
LAUNCH = os.path.join(ROOT, 'launch', 'safety_pipeline.launch.py')


def _console_scripts():
    text = open(os.path.join(ROOT, 'setup.py')).read()
    return set(re.findall(r"'([\w-]+) = vla_safety_filter[\w.]*:main'", text))


def _launched_lifecycle_nodes() -> tuple:
    """Return the launch file's LIFECYCLE_NODES (a literal, or names.PIPELINE_NODES)."""
    for node in ast.walk(ast.parse(open(LAUNCH).read())):
        if isinstance(node, ast.Assign) and \
                getattr(node.targets[0], 'id', '') == 'LIFECYCLE_NODES':
            if getattr(node.value, 'attr', '') == 'PIPELINE_NODES':
                return names.PIPELINE_NODES
            return tuple(ast.literal_eval(node.value))
    return ()


def _launch_executables():
    launched = set(_launched_lifecycle_nodes())
    for node in ast.walk(ast.parse(open(LAUNCH).read())):
        if isinstance(node, ast.keyword) and node.arg == 'executable':
            if isinstance(node.value, ast.Constant):
                launched.add(node.value.value)
            elif getattr(node.value, 'attr', '').isupper():      # names.EXECSPEC_CHECK, ...
                launched.add(getattr(names, node.value.attr))
    return launched


def test_every_launched_executable_is_a_console_script():
    launched = _launch_executables()
    assert launched == {*names.PIPELINE_NODES, names.EXECSPEC_CHECK, names.FLIGHT_RECORDER}
    assert launched <= _console_scripts()


def test_the_launch_file_activates_the_pipeline_nodes_in_the_managers_order():
    assert _launched_lifecycle_nodes() == names.PIPELINE_NODES


def test_every_node_module_has_an_entry_point():
    nodes = {f[:-3] for f in os.listdir(os.path.join(ROOT, 'vla_safety_filter', 'nodes'))
             if f.endswith('.py')
             and f not in ('__init__.py', 'common.py', 'compat.py', 'bringup.py')}
    assert nodes <= _console_scripts()


def test_launch_description_builds_where_launch_ros_is_installed():
    pytest.importorskip('launch_ros')
    import importlib.util
    spec = importlib.util.spec_from_file_location('pipeline_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.generate_launch_description().entities) == 5


def test_bringup_with_missing_params_file_is_a_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'vla_safety_filter.cli', 'bringup', '--params',
                          str(tmp_path / 'nope.yaml')], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count('\n') == 0 and 'nope.yaml' in out.stderr


def _make_dry_run(*args, **environ):
    """`make -n ARGS` in the repository, outside any calling make (its MAKEFLAGS would leak)."""
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    return subprocess.run(['make', '-n', *args], cwd=ROOT, env={**env, **environ},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('distro', ['jazzy', 'kilted'])
def test_make_setup_pins_the_chosen_distro_in_its_own_virtualenv(distro):
    """`make ... ROS_DISTRO=X` installs only ros-X-* wheels into .venv-X."""
    out = _make_dry_run('-B', 'setup', f'ROS_DISTRO={distro}')
    assert out.returncode == 0, out.stderr
    ros_wheels = set(re.findall(r'\s(ros-[\w-]+)', out.stdout))
    assert f'ros-{distro}-rclpy' in ros_wheels and f'ros-{distro}-rmw-fastrtps-cpp' in ros_wheels
    assert all(w.startswith(f'ros-{distro}-') for w in ros_wheels), ros_wheels
    assert f'.venv-{distro}/bin/pip install' in out.stdout


def test_make_defaults_to_jazzy_whatever_ros_environment_is_sourced():
    out = _make_dry_run('-B', 'setup', ROS_DISTRO='kilted')
    assert out.returncode == 0, out.stderr
    assert '.venv-jazzy/bin/pip install --quiet ros-jazzy-rclpy ' in out.stdout


def test_make_refuses_an_unsupported_distro():
    out = _make_dry_run('setup', 'ROS_DISTRO=humble')
    assert out.returncode != 0 and 'ROS_DISTRO=humble is not supported' in out.stderr
