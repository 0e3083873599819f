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

"""doc/parameters.md is what `vla-safety params` reads from the nodes now (it cannot drift)."""
import difflib

from ros_harness import next_domain
from vla_safety_filter.cli import main
from vla_safety_filter.commands.params import describe_nodes, markdown, NODES


def test_doc_parameters_md_matches_the_nodes_declarations(repo_root):
    fresh = markdown(describe_nodes(next_domain()))
    committed = (repo_root / 'doc' / 'parameters.md').read_text()
    diff = ''.join(difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True),
                                        'doc/parameters.md', 'the nodes now'))
    assert not diff, 'regenerate: vla-safety params --output doc/parameters.md\n' + diff


def test_the_table_shows_what_the_nodes_declare(tmp_path):
    out = tmp_path / 'parameters.md'
    assert main(['params', '--output', str(out), '--domain-id', str(next_domain())]) == 0
    text = out.read_text()
    assert [line[3:] for line in text.splitlines() if line.startswith('## ')] == \
        [name for name, *_ in NODES]
    rows = {line.split(' | ')[0]: line for line in text.splitlines() if line.startswith('| `')}
    # the manager's nav2 names, with their declared defaults
    assert rows['| `transition_timeout`'].split(' | ')[1:3] == ['double', '5.0']
    assert rows['| `autostart`'].split(' | ')[1:3] == ['bool', 'true']
    assert "'action_monitor', 'safety_filter', 'policy_bridge'" in rows['| `node_names`']
    # read-only flags come from the descriptors; rclpy's own parameters are left out
    assert rows['| `split_seconds`'].split(' | ')[3] == 'yes'
    assert '| `use_sim_time`' not in rows
