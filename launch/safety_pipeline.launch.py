"""Launch the VLA safety pipeline next to an arm driver: `ros2 launch vla_safety_filter safety_pipeline.launch.py params_file:=...`.

execspec_check checks the unnormalizer metadata and only then configures and activates
action_monitor -> safety_filter -> policy_bridge over their lifecycle services. With
`record:=DIR` the flight recorder writes the pipeline's topics to DIR (rosbag2, MCAP).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import PythonExpression
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
    record = LaunchConfiguration('record')
    recorder = Node(package=PACKAGE, executable='flight_recorder', name='flight_recorder',
                    namespace='', parameters=[params, {'output': record}], output='screen',
                    condition=IfCondition(PythonExpression(["'", record, "' != ''"])))
    return LaunchDescription([
        DeclareLaunchArgument('params_file', description='pipeline parameter YAML (see config/)'),
        DeclareLaunchArgument('record', default_value='',
                              description='flight record directory (empty: do not record)'),
        recorder,
        *managed,
        manager,
    ])
