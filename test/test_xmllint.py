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
package.xml is a valid format-3 manifest that agrees with setup.py.

ament_xmllint is not on PyPI; catkin_pkg (the parser colcon and rosdep use) validates the
manifest here. On a full ROS install `ament_xmllint` also checks it against the XSD.
"""
import ast

from catkin_pkg.package import parse_package
import pytest

LINTERS = {'ament_copyright', 'ament_flake8', 'ament_pep257', 'ament_xmllint'}


def setup_keywords(path) -> dict:
    """Return the literal keyword arguments of the setup() call in setup.py."""
    tree = ast.parse(path.read_text())
    constants = {target.id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 for target in node.targets}
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup')
    values = {}
    for keyword in call.keywords:
        if isinstance(keyword.value, ast.Constant):
            values[keyword.arg] = keyword.value.value
        elif isinstance(keyword.value, ast.Name) and keyword.value.id in constants:
            values[keyword.arg] = constants[keyword.value.id]
    return values


@pytest.mark.linter
@pytest.mark.xmllint
def test_xmllint(repo_root):
    package = parse_package(str(repo_root / 'package.xml'))  # raises InvalidPackage
    assert package.package_format == 3
    setup = setup_keywords(repo_root / 'setup.py')
    assert (package.name, package.version) == (setup['name'], setup['version'])
    assert [str(lic) for lic in package.licenses] == [setup['license']]
    assert LINTERS <= {dep.name for dep in package.test_depends}
    assert package.get_build_type() == 'ament_python'
