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
Which tests can reach ROS 2 code, found by reading imports (no import is executed).

Only these depend on the ROS distribution: the rest runs the same numpy code in both venvs. A
module reaches ROS when any import in it (at any depth, inside functions too), followed through
this package and the test helpers, names rclpy, a message package, ament or launch; a test
module that starts subprocesses counts too (they may run nodes). A conftest fixture reaches ROS
when its body does or it requests a fixture that does. Conservative by construction: a false
'reaches' only costs time, a false 'does not' would drop a test from the second distro.
"""
import ast
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / 'vla_safety_filter'
ROS_TOP_LEVEL = ('rclpy', 'rosidl_runtime_py', 'rosidl_parser', 'rcl_interfaces',
                 'builtin_interfaces', 'launch', 'launch_ros', 'ament_flake8', 'ament_pep257',
                 'ament_index_python')
STARTS_PROCESSES = ('subprocess', 'multiprocessing')


def _is_ros(name: str) -> bool:
    top = name.split('.')[0]
    return top in ROS_TOP_LEVEL or top.endswith(('_msgs', '_srvs', '_interfaces'))


def _source_of(module: str) -> Path | None:
    """Return the file of a package module or test helper, or None for anything else."""
    parts = module.split('.')
    if parts[0] == PACKAGE.name:
        base = PACKAGE.parent.joinpath(*parts)
    elif len(parts) == 1 and (HERE / f'{module}.py').is_file():
        return HERE / f'{module}.py'
    else:
        return None
    for candidate in (base.with_suffix('.py'), base / '__init__.py'):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    """Return the dotted name of a package file (its package for __init__.py)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_names(tree: ast.AST, path: Path) -> set[str]:
    """Return every module name an import in `tree` names, relative ones resolved."""
    names = set()
    inside = PACKAGE in path.parents
    package = _module_name(path) if inside else ''
    if inside and path.name != '__init__.py':
        package = package.rpartition('.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f'{base}.{alias.name}' for alias in node.names)
    return names


def _local_imports(path: Path, names: set[str]) -> set[Path]:
    """
    Return the local files importing `names` runs (a.b.c runs a and a.b too).

    A module that imports by name at run time (importlib, pkgutil: the CLI finds its
    subcommands so) counts as importing every module of the packages it imports.
    """
    files = set()
    for name in names:
        parts = name.split('.')
        for depth in range(1, len(parts) + 1):
            source = _source_of('.'.join(parts[:depth]))
            if source is not None:
                files.add(source)
    if any(name.split('.')[0] in ('importlib', 'pkgutil') for name in names):
        for package in [f for f in files if f.name == '__init__.py']:
            files.update(package.parent.glob('*.py'))
    files.discard(path)
    return files


@lru_cache(maxsize=None)
def _ros_files() -> frozenset:
    """Return every local file that reaches ROS: direct ROS imports, then their importers."""
    graph, found = {}, set()
    for path in [*PACKAGE.rglob('*.py'), *HERE.glob('*.py')]:
        names = imported_names(ast.parse(path.read_text(), filename=str(path)), path)
        graph[path] = _local_imports(path, names)
        if any(_is_ros(name) for name in names) or (
                path.parent == HERE and any(n.split('.')[0] in STARTS_PROCESSES for n in names)):
            found.add(path)
    while True:
        more = {path for path, deps in graph.items() if path not in found and deps & found}
        if not more:
            return frozenset(found)
        found |= more


def reaches_ros(path: Path) -> bool:
    """Whether the file at `path` imports ROS code, directly or through local modules."""
    return Path(path).resolve() in _ros_files()


def ros_fixtures(conftest: Path) -> set[str]:
    """
    Return the conftest functions that reach ROS.

    By their own imports, or through the fixtures they request and the functions they call.
    """
    functions = {node.name: node for node in ast.parse(conftest.read_text()).body
                 if isinstance(node, ast.FunctionDef)}
    found = {name for name, node in functions.items()
             if any(_is_ros(n) or (_source_of(n) and reaches_ros(_source_of(n)))
                    for n in imported_names(node, conftest))}
    uses = {name: {arg.arg for arg in node.args.args}
            | {call.func.id for call in ast.walk(node)
               if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)}
            for name, node in functions.items()}
    while True:
        more = {name for name in functions if name not in found and uses[name] & found}
        if not more:
            return found
        found |= more
