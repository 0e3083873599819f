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
import importlib.util
import os
import re
import subprocess
import sys
import types

import pytest

from vla_safety_filter import names

ROOT = os.path.join(os.path.dirname(__file__), '..')
LAUNCH = os.path.join(ROOT, 'launch', 'safety_pipeline.launch.py')


def _console_scripts():
    text = open(os.path.join(ROOT, 'setup.py')).read()
    return set(re.findall(r"'([\w-]+) = vla_safety_filter[\w.]*:main'", text))


class Recorded:
    """Stand-in for a launch or launch_ros class: keeps its arguments, so a test can read them."""

    def __init__(self, *args, **kwargs):
        self.kind, self.args, self.kwargs = type(self).__name__, args, kwargs


def _stub_module(name: str, *classes: str) -> types.ModuleType:
    """Return a module `name` whose `classes` are Recorded subclasses of those names."""
    module = types.ModuleType(name)
    for cls in classes:
        setattr(module, cls, type(cls, (Recorded,), {}))
    return module


@pytest.fixture
def launch_entities(monkeypatch) -> list:
    """Return the entities the launch file describes, built over stand-ins of launch(_ros)."""
    stubs = {'launch': ('LaunchDescription',), 'launch.actions': ('DeclareLaunchArgument',),
             'launch.conditions': ('IfCondition',),
             'launch.substitutions': ('LaunchConfiguration', 'PythonExpression'),
             'launch_ros': (), 'launch_ros.actions': ('LifecycleNode', 'Node')}
    for name, classes in stubs.items():
        monkeypatch.setitem(sys.modules, name, _stub_module(name, *classes))
    spec = importlib.util.spec_from_file_location('pipeline_launch_stubbed', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description().args[0]


def _nodes(entities: list, kind: str) -> list:
    """Return the `name` of every entity of `kind` (LifecycleNode, Node), in launch order."""
    return [e.kwargs['name'] for e in entities if e.kind == kind]


def test_every_launched_executable_is_a_console_script(launch_entities):
    launched = {e.kwargs['executable'] for e in launch_entities if 'executable' in e.kwargs}
    assert launched == {*names.PIPELINE_NODES, names.EXECSPEC_CHECK, names.FLIGHT_RECORDER}
    assert launched <= _console_scripts()


def test_the_launch_file_activates_the_pipeline_nodes_in_the_managers_order(launch_entities):
    assert tuple(_nodes(launch_entities, 'LifecycleNode')) == names.PIPELINE_NODES
    assert _nodes(launch_entities, 'Node') == [names.FLIGHT_RECORDER, names.EXECSPEC_CHECK]
    assert all(e.kwargs['namespace'] == '' for e in launch_entities if 'namespace' in e.kwargs)


def test_every_node_module_has_an_entry_point():
    nodes = {f[:-3] for f in os.listdir(os.path.join(ROOT, 'vla_safety_filter', 'nodes'))
             if f.endswith('.py')
             and f not in ('__init__.py', 'common.py', 'compat.py', 'bringup.py')}
    assert nodes <= _console_scripts()


def test_launch_description_builds_where_launch_ros_is_installed():
    pytest.importorskip('launch_ros')
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
