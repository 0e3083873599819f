"""Launch the VLA safety pipeline next to an arm driver: `ros2 launch vla_safety_filter safety_pipeline.launch.py params_file:=...`.

execspec_check checks the unnormalizer metadata and only then configures and activates
action_monitor -> safety_filter -> policy_bridge over their lifecycle services.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = 'vla_safety_filter'
LIFECYCLE_NODES = ('action_monitor', 'safety_filter', 'policy_bridge')


def generate_launch_description():
    params = LaunchConfiguration('params_file')
    managed = [LifecycleNode(package=PACKAGE, executable=name, name=name, namespace='',
                             parameters=[params], output='screen') for name in LIFECYCLE_NODES]
    manager = Node(package=PACKAGE, executable='execspec_check', name='execspec_check',
                   namespace='', parameters=[params], output='screen')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', description='pipeline parameter YAML (see config/)'),
        *managed,
        manager,
    ])
