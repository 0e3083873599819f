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
`vla-safety params`: every node's parameters, read from the nodes themselves.

Each node of the package is started (in this process, on its own ROS domain, localhost only)
and its parameters are read through rclpy's parameter services (list, describe, get): type,
default, read-only, range and description, exactly as declared. `--markdown` prints the table
doc/parameters.md carries; test/test_parameters_doc.py regenerates it so it cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass
import importlib
import os
import tempfile
import threading

#: (node name, module under vla_safety_filter.nodes, class, parameters it cannot start without).
NODES = (
    ('policy_bridge', 'policy_bridge', 'PolicyBridge', {}),
    ('safety_filter', 'safety_filter', 'SafetyFilter', {}),
    ('action_monitor', 'action_monitor', 'ActionMonitorNode', {}),
    ('execspec_check', 'execspec_check', 'ExecSpecCheck', {}),
    ('sim_arm', 'sim_arm', 'SimArm', {'joint_names': ['joint_1']}),
    ('sim_world', 'sim_world', 'SimWorld', {}),
    ('flight_recorder', 'flight_recorder', 'FlightRecorder', {'output': None}),
)
#: Parameters rclpy (or diagnostic_updater, where installed) gives every node: not listed.
COMMON = ('use_sim_time', 'start_type_description_service')
COMMON_PREFIXES = ('qos_overrides.', 'diagnostic_updater.')
TYPE_NAMES = ('not set', 'bool', 'integer', 'double', 'string', 'byte[]', 'bool[]',
              'integer[]', 'double[]', 'string[]')
HEADER = ('parameter', 'type', 'default', 'read-only', 'range', 'description')


@dataclass(frozen=True)
class Row:
    """One parameter of one node, as its declaration describes it."""

    name: str
    type: str  # noqa: A003 - the column's name
    default: str
    read_only: bool
    range: str  # noqa: A003 - the column's name
    description: str


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'params', help="list every node's parameters (type, default, read-only, range)",
        description='Start each node of the package in this process (own ROS domain, localhost '
                    'discovery only) and read its parameters through the ROS parameter '
                    'services: type, default, read-only, range and description.')
    p.add_argument('--markdown', action='store_true',
                   help='print the Markdown table of doc/parameters.md')
    p.add_argument('--output', metavar='FILE', help='write to FILE instead of printing')
    p.add_argument('--domain-id', type=int, default=None, metavar='N',
                   help='ROS domain to start the nodes on (default: 100 + PID %% 100)')
    p.set_defaults(func=run)


def run(args) -> int:
    domain = args.domain_id if args.domain_id is not None else 100 + os.getpid() % 100
    tables = describe_nodes(domain)
    if args.markdown or args.output:
        text = markdown(tables)
        if args.output:
            with open(args.output, 'w') as fh:
                fh.write(text)
        else:
            print(text, end='')
    else:
        _print_tables(tables)
    return 0


def describe_nodes(domain_id: int) -> dict:
    """Return {node: [Row]} for every node of NODES, started on `domain_id` and asked over ROS."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    import rclpy.logging
    from rclpy.parameter import Parameter

    from ..nodes.common import spin_until_shutdown

    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    context = Context()
    level = rclpy.logging.get_logger_effective_level('')
    rclpy.init(args=['vla-safety-params', '--ros-args', '--log-level', 'fatal'],
               context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor, context), daemon=True)
    spinner.start()
    nodes = []
    scratch = tempfile.TemporaryDirectory()   # the flight recorder's record, removed last
    try:
        probe = rclpy.create_node('vla_safety_params', context=context)
        nodes.append(probe)
        executor.add_node(probe)
        tables = {}
        for name, module, cls, required in NODES:
            given = {k: os.path.join(scratch.name, 'record') if v is None else v
                     for k, v in required.items()}
            node_class = getattr(importlib.import_module(f'..nodes.{module}', __package__), cls)
            node = node_class(context=context, parameter_overrides=[
                Parameter(k, value=v) for k, v in given.items()])
            nodes.append(node)
            executor.add_node(node)
            tables[name] = _rows(probe, name, set(given))
        return tables
    finally:
        context.try_shutdown()
        spinner.join(timeout=5)
        # --log-level is process-wide and outlives the context: give the process its level back
        rclpy.logging.set_logger_level('', level)
        for node in reversed(nodes):
            node.destroy_node()
        scratch.cleanup()


def _rows(probe, node: str, required: set) -> list:
    """Ask `node`'s parameter services for its parameters; return them as Rows, by name."""
    from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters

    from ..nodes.lifecycle_manager import call

    def ask(kind, service, request):
        return call(probe.create_client(kind, f'/{node}/{service}'), request, 10.0)

    listed = ask(ListParameters, 'list_parameters', ListParameters.Request()).result.names
    wanted = sorted(n for n in listed
                    if n not in COMMON and not n.startswith(COMMON_PREFIXES))
    described = ask(DescribeParameters, 'describe_parameters',
                    DescribeParameters.Request(names=wanted)).descriptors
    # one name per request: rclpy answers no values at all if one asked for is not set
    values = [ask(GetParameters, 'get_parameters', GetParameters.Request(names=[name])).values
              for name in wanted]
    return [Row(d.name, TYPE_NAMES[d.type],
                'required' if d.name in required else _value_text(v[0] if v else None),
                d.read_only, _range_text(d), d.description)
            for d, v in zip(described, values)]


def _value_text(value) -> str:
    """Return a ParameterValue as the YAML a user would write (`not set` when it has none)."""
    from rclpy.parameter import parameter_value_to_python

    if value is None or value.type == 0:
        return 'not set'
    return _yaml(parameter_value_to_python(value))


def _yaml(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return f'{value:g}' if value != int(value) or abs(value) >= 1e16 else f'{value:.1f}'
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)) or hasattr(value, 'tolist'):
        return '[' + ', '.join(_yaml(v) for v in list(value)) + ']'
    return str(value)


def _range_text(descriptor) -> str:
    """Return the declared range as `[from, to]` (with its step), or '' when there is none."""
    ranges = list(descriptor.floating_point_range) + list(descriptor.integer_range)
    if not ranges:
        return ''
    r = ranges[0]
    step = f' step {_yaml(r.step)}' if r.step else ''
    return f'[{_yaml(r.from_value)}, {_yaml(r.to_value)}]{step}'


def markdown(tables: dict) -> str:
    """Return doc/parameters.md: one table per node."""
    lines = ['# Parameters of the nodes', '',
             'Generated by `vla-safety params --output doc/parameters.md` from the '
             'declarations of the nodes (each node started and asked through the ROS parameter '
             'services); test/test_parameters_doc.py fails when this file is out of date. '
             '"required": the node does not start without it; "not set": no default (the '
             'node refuses to configure without it where it needs it). Not listed: '
             f'{", ".join(f"`{n}`" for n in COMMON)} and `qos_overrides.*` (rclpy), '
             '`diagnostic_updater.period` (where diagnostic_updater is installed).', '']
    for node, rows in tables.items():
        lines += [f'## {node}', '', '| ' + ' | '.join(HEADER) + ' |',
                  '|' + '---|' * len(HEADER)]
        lines += ['| ' + ' | '.join(_cells(row)) + ' |' for row in rows]
        lines.append('')
    return '\n'.join(lines)


def _cells(row: Row) -> list:
    def escape(text: str) -> str:
        return text.replace('|', '\\|').replace('\n', ' ')
    return [f'`{row.name}`', row.type, escape(row.default), 'yes' if row.read_only else '',
            escape(row.range), escape(row.description)]


def _print_tables(tables: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for node, rows in tables.items():
        table = Table(title=node, title_justify='left')
        for column in HEADER:
            table.add_column(column)
        for row in rows:
            table.add_row(row.name, *_cells(row)[1:])
        console.print(table)
