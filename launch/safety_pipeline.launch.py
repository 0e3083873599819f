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
Launch the VLA safety pipeline next to an arm driver.

`ros2 launch vla_safety_filter safety_pipeline.launch.py params_file:=... [executor:=events]`

execspec_check checks the unnormalizer metadata and only then configures and activates
action_monitor -> safety_filter -> policy_bridge over their lifecycle services. With
`record:=DIR` the flight recorder writes the pipeline's topics to DIR (rosbag2, MCAP).
`executor:=events` runs every node process under rclpy's EventsExecutor (default `single`: the
single-threaded executor).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch.substitutions import PythonExpression
from launch_ros.actions import LifecycleNode, Node

from vla_safety_filter import names

PACKAGE = 'vla_safety_filter'
#: The manager's lifecycle nodes, in activation order (one list, in names.py).
LIFECYCLE_NODES = names.PIPELINE_NODES


def generate_launch_description():
    """Return the pipeline: recorder (optional), lifecycle nodes, then their manager."""
    params = LaunchConfiguration('params_file')
    executor = {'executor': LaunchConfiguration('executor')}
    managed = [LifecycleNode(package=PACKAGE, executable=name, name=name, namespace='',
                             parameters=[params, executor], output='screen')
               for name in LIFECYCLE_NODES]
    manager = Node(package=PACKAGE, executable=names.EXECSPEC_CHECK, name=names.EXECSPEC_CHECK,
                   namespace='', parameters=[params, executor], output='screen')
    record = LaunchConfiguration('record')
    recorder = Node(package=PACKAGE, executable=names.FLIGHT_RECORDER, name=names.FLIGHT_RECORDER,
                    namespace='', parameters=[params, executor, {'output': record}],
                    output='screen',
                    condition=IfCondition(PythonExpression(["'", record, "' != ''"])))
    return LaunchDescription([
        DeclareLaunchArgument('params_file', description='pipeline parameter YAML (see config/)'),
        DeclareLaunchArgument('record', default_value='',
                              description='flight record directory (empty: do not record)'),
        DeclareLaunchArgument('executor', default_value='single',
                              description='executor of every node process: single or events'),
        recorder,
        *managed,
        manager,
    ])
