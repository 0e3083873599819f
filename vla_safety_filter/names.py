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
One name per thing: topics, services, diagnostic levels and statuses, the pipeline's nodes.

Nodes, tools, the launch file and tests import these rather than retyping them. Plain Python
(no rclpy), so core/, report/ and offline tools can use it too.
"""

# ---- topics -------------------------------------------------------------------------------
#: The policy's proposed action (policy_bridge -> safety_filter, action_monitor).
RAW_ACTION = '/vla/raw_action'
#: The filtered action as a trajectory (safety_filter, for recording and review).
SAFE_ACTION = '/vla/safe_action'
#: One DiagnosticArray per intervention of the filter (safety_filter -> action_monitor).
FILTER_EVENTS = '/vla/filter_events'
#: Episode boundaries, latched ('episode N', 'done').
EPISODE = '/vla/episode'
#: The monitor's stop request, latched (action_monitor -> safety_filter).
SAFETY_STOP = '/vla/safety_stop'
JOINT_STATES = '/joint_states'
DIAGNOSTICS = '/diagnostics'
PARAMETER_EVENTS = '/parameter_events'
#: sim_world's full world state as a JointState (PushT: agent x, y, block x, y, angle).
WORLD_STATE = '/world/state'
#: sim_world's rendered camera image (sensor_msgs/Image).
WORLD_IMAGE = '/world/image'
#: Topics whose publishers latch (transient local): late joiners get the last value.
LATCHED_TOPICS = (EPISODE, SAFETY_STOP)

#: The ros2_control controller the filter commands unless `controller_name` says otherwise.
DEFAULT_CONTROLLER = 'forward_position_controller'


def forward_commands(controller: str = DEFAULT_CONTROLLER) -> str:
    """Return the ForwardCommandController topic (Float64MultiArray in joint order)."""
    return f'/{controller}/commands'


def joint_trajectory(controller: str = DEFAULT_CONTROLLER) -> str:
    """Return the JointTrajectoryController topic."""
    return f'/{controller}/joint_trajectory'


# ---- services (private names, ~/<service> of the node that offers them) -------------------
BRINGUP = '~/bringup'
TEARDOWN = '~/teardown'
RESET = '~/reset'
LOADED_UNNORMALIZER = '~/loaded_unnormalizer'


def service_of(node: str, service: str) -> str:
    """Return the absolute name of `node`'s private service (`~/reset` -> `/node/reset`)."""
    return f'/{node.strip("/")}/{service.removeprefix("~/")}'


# ---- nodes --------------------------------------------------------------------------------
ACTION_MONITOR = 'action_monitor'
SAFETY_FILTER = 'safety_filter'
POLICY_BRIDGE = 'policy_bridge'
EXECSPEC_CHECK = 'execspec_check'
SIM_ARM = 'sim_arm'
SIM_WORLD = 'sim_world'
FLIGHT_RECORDER = 'flight_recorder'
#: The lifecycle nodes the manager drives, in activation order (deactivation is the reverse):
#: the monitor listens before the filter acts, the filter acts before the bridge publishes.
PIPELINE_NODES = (ACTION_MONITOR, SAFETY_FILTER, POLICY_BRIDGE)

# ---- diagnostics --------------------------------------------------------------------------
#: diagnostic_msgs/DiagnosticStatus levels as ints (nodes convert to the message's bytes).
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = ('OK', 'WARN', 'ERROR', 'STALE')

#: The status each node publishes on /diagnostics.
BRIDGE_STATUS = 'vla_safety/bridge'
EXECSPEC_STATUS = 'vla_safety/execspec'
FILTER_STATUS = 'vla_safety/filter'
MONITOR_STATUS = 'vla_safety/monitor'


def level_of(level) -> int:
    """Return a DiagnosticStatus level as an int (messages carry bytes, some readers ints)."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def level_name(level) -> str:
    """Return 'OK', 'WARN', 'ERROR' or 'STALE' for a level (bytes or int); '?' otherwise."""
    value = level_of(level)
    return LEVEL_NAMES[value] if 0 <= value < len(LEVEL_NAMES) else '?'
