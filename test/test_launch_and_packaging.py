"""The launch file, setup.py and package.xml agree; bad bringup input gives a one-line error."""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), '..')
LAUNCH = os.path.join(ROOT, 'launch', 'safety_pipeline.launch.py')


def _console_scripts():
    text = open(os.path.join(ROOT, 'setup.py')).read()
    return set(re.findall(r"'([\w-]+) = vla_safety_filter[\w.]*:main'", text))


def _launch_executables():
    tree = ast.parse(open(LAUNCH).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'LIFECYCLE_NODES':
            names |= set(ast.literal_eval(node.value))
        if isinstance(node, ast.keyword) and node.arg == 'executable' and \
                isinstance(node.value, ast.Constant):
            names.add(node.value.value)
    return names


def test_every_launched_executable_is_a_console_script():
    launched = _launch_executables()
    assert launched == {'action_monitor', 'safety_filter', 'policy_bridge', 'execspec_check',
                        'flight_recorder'}
    assert launched <= _console_scripts()


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
