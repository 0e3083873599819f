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
Full ROS 2 message definitions (rosbag2-style `ros2msg` schema text) from installed .msg files.

rosbag2 stores a type's .msg text followed by every dependency's text, each after a line of 80
`=` and a `MSG: pkg/msg/Type` line; Foxglove and rosbags rebuild the type from that text alone.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
import sys

from ..core.errors import InputError

SEPARATOR = '=' * 80
PRIMITIVES = frozenset({'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16',
                        'uint16', 'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'})


def full_definition(type_name: str) -> str:
    """Return the rosbag2 `ros2msg` text of `pkg/msg/Type`: its .msg, then each nested type."""
    order, texts = [type_name], {}
    for name in order:  # grows while iterating: breadth-first over the dependencies
        texts[name] = msg_text(name)
        order += [dep for dep in dependencies(name, texts[name]) if dep not in order]
    parts = [texts[type_name].rstrip('\n')]
    parts += [f'{SEPARATOR}\nMSG: {name}\n{texts[name].rstrip(chr(10))}' for name in order[1:]]
    return '\n'.join(parts) + '\n'


def has_header(type_name: str) -> bool:
    """Return whether the first field is a std_msgs/Header (its stamp leads the CDR payload)."""
    fields = [line.split()[:2] for line in _code_lines(msg_text(type_name)) if '=' not in line]
    return bool(fields) and fields[0][0] in ('std_msgs/Header', 'std_msgs/msg/Header')


def dependencies(type_name: str, text: str) -> list[str]:
    """Return the non-primitive field types used by one .msg text, as `pkg/msg/Type`."""
    package = type_name.split('/')[0]
    deps = []
    for line in _code_lines(text):
        base = line.split()[0].split('[')[0].split('<=')[0]
        if base in PRIMITIVES:
            continue
        pkg, _, name = base.rpartition('/')
        full = f'{pkg.split("/")[0] or package}/msg/{name}'
        if full not in deps:
            deps.append(full)
    return deps


def msg_text(type_name: str) -> str:
    """Return the text of the installed `share/<pkg>/msg/<Type>.msg` of `pkg/msg/Type`."""
    parts = type_name.split('/')
    if len(parts) != 3 or parts[1] != 'msg':
        raise InputError(f'{type_name}: expected a message type named pkg/msg/Type')
    package, _, name = parts
    for share in _share_dirs(package):
        path = share / 'msg' / f'{name}.msg'
        if path.is_file():
            return path.read_text(encoding='utf-8')
    raise InputError(f'{type_name}: no {name}.msg found in the share directory of {package}')


def _share_dirs(package: str) -> list[Path]:
    """Candidate share/<package> folders: ament index, beside the module, sys.prefix."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory(package)))
    except (ImportError, LookupError, OSError):  # no ament index in a plain venv
        pass
    spec = importlib.util.find_spec(package)
    parents = Path(spec.origin).resolve().parents if spec and spec.origin else ()
    if len(parents) > 4:  # <prefix>/lib/pythonX.Y/site-packages/<package>/__init__.py
        dirs.append(parents[4] / 'share' / package)
    dirs.append(Path(sys.prefix) / 'share' / package)
    return list(dict.fromkeys(dirs))


def _code_lines(text: str) -> list[str]:
    """Field and constant lines of a .msg text, comments and blank lines dropped."""
    lines = (line.split('#', 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]
