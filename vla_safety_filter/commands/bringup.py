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

"""`vla-safety bringup`: the launch file's pipeline in one process (no `ros2 launch` needed)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'bringup', help='run the ROS 2 pipeline (monitor, filter, bridge, execspec manager)',
        description='Start action_monitor, safety_filter, policy_bridge and execspec_check in one '
                    'process with the given ROS 2 parameter files. execspec_check checks the '
                    'unnormalizer metadata and only then activates monitor -> filter -> bridge. '
                    'Add --with-sim-arm to drive the stand-in arm instead of a real driver.')
    p.add_argument('--params', nargs='+', required=True, metavar='FILE',
                   help='ROS 2 parameter YAML files (node_name: ros__parameters: ...)')
    p.add_argument('--with-sim-arm', action='store_true',
                   help='also start sim_arm (publishes /joint_states, obeys the controller topic)')
    p.add_argument('--duration', type=float, default=None, metavar='S',
                   help='stop after S seconds (default: run until Ctrl-C)')
    p.add_argument('--executor', choices=('single', 'events'), default='single',
                   help="the nodes' shared executor: single-threaded (default) or rclpy's "
                        'EventsExecutor (falls back to single, with a warning, where absent)')
    p.set_defaults(func=run)


def run(args) -> int:
    from ..nodes.bringup import run_bringup
    run_bringup(args.params, args.with_sim_arm, args.duration, args.executor)
    return 0
