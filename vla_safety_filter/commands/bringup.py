"""`vla-safety bringup`: the launch file's pipeline in one process, for machines without `ros2 launch`."""
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
    p.set_defaults(func=run)


def run(args) -> int:
    from ..nodes.bringup import run_bringup
    run_bringup(args.params, args.with_sim_arm, args.duration)
    return 0
