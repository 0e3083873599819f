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
Gymnasium worlds a drill runs in; each step executes one command for one control period.

`pusht` is the PyPI gym-pusht (pymunk) with obs_type `state`: [agent x, agent y, block x,
block y, block angle], actions are pusher targets in pixels, 10 Hz, 300 steps, success when the
block covers >= 95 % of the goal. The measured position the filter resumes from is the agent's.
`aloha` (transfer cube) and `aloha-insertion` are gym-aloha's MuJoCo bimanual ViperX tasks: 14
joint targets at 50 Hz, the measured position is the 14 joint positions.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools
import os

import numpy as np

from ..errors import InputError
from ..limits import HardwareLimits

PUSHT_TASK = 'Push the T-shaped block onto the T-shaped target.'
#: the pusher may move only inside this square (pixels); a step outside it is a physical cost
PUSHT_WORKSPACE = (0.0, 512.0)


def _position_limits(lower: np.ndarray, upper: np.ndarray, source: str) -> HardwareLimits:
    """Return hardware limits on positions only (NaN: no limit), as a URDF would give them."""
    none = np.full(lower.shape, np.nan)
    return HardwareLimits(lower, upper, none, none.copy(), source=source)


@dataclass(frozen=True)
class StepResult:
    """What one world step reports: state, success, and the physical cost events of the step."""

    state: np.ndarray
    success: bool
    costs: tuple[str, ...]
    coverage: float = float('nan')   # share of the goal covered (PushT), nan where undefined


def _world_rings(body, local: list) -> np.ndarray:
    """Return the world coordinates [shapes, corners, 2] of a body's polygons (pymunk's own)."""
    return np.array([[tuple(body.local_to_world(v)) for v in vs] for vs in local])


def _local_polygons(body) -> list:
    """
    Return the local corners of a body's polygon shapes in a fixed (sorted) order.

    pymunk keeps a body's shapes in a set, so gym-pusht meets them in an order that changes with
    memory addresses and its coverage differs between runs in the last bit; sorted, it does not.
    """
    return sorted([tuple(tuple(v) for v in shape.get_vertices()) for shape in body.shapes])


def _pusht_env_class():
    """
    Return gym-pusht's PushTEnv with a faster, reproducible coverage and a leaner step.

    gym-pusht rebuilds the fixed goal polygon and its area on every step and builds the block's
    polygons one shapely object at a time, in set order. Here the goal's geometry and area are
    built once per goal pose, the block's local corners once per episode, its polygons in one
    vectorized call and in a fixed order: the same coverage to round-off (1e-15), at about a
    third of the cost, and the same bits on every run. The step skips what the drill never
    reads (the contact points counted on every collision, the info dict of poses and
    velocities) and runs the PD control and the state observation on floats: the same states
    bit for bit (tested against gym-pusht on replayed demonstrations).
    """
    try:
        import shapely
        from gym_pusht.envs import pusht
    except ImportError as exc:
        raise InputError('world pusht needs gym-pusht: pip install '
                         '"vla_safety_filter[drills]"') from exc

    class FastCoveragePushTEnv(pusht.PushTEnv):
        """PushTEnv whose coverage caches what does not move and orders the polygons."""

        _goal_cache = (None, None, None)
        _block_cache = (None, None)

        def _goal(self):
            """Return the goal's geometry and area, built once per goal pose."""
            key, geometry, area = self._goal_cache
            if key != tuple(self.goal_pose):
                key = tuple(self.goal_pose)
                polygons = shapely.polygons(_world_rings(
                    self.get_goal_pose_body(self.goal_pose), _local_polygons(self.block)))
                geometry = shapely.multipolygons(polygons)
                area = float(np.sum(shapely.area(polygons)))
                self._goal_cache = (key, geometry, area)
            return geometry, area

        def _block_rings(self):
            """Return the block's polygon corners at its current pose."""
            block, local = self._block_cache
            if block is not self.block:
                block, local = self.block, _local_polygons(self.block)
                self._block_cache = (block, local)
            return _world_rings(block, local)

        def _get_coverage(self):
            goal, area = self._goal()
            block = shapely.multipolygons(shapely.polygons(self._block_rings()))
            return goal.intersection(block).area / area

        def step(self, action):
            """
            Step as gym-pusht does, its PD control on Python floats instead of Vec2d and arrays.

            The same IEEE operations in the same order (the pusher's velocity += (k_p (target -
            position) + k_v (0 - velocity)) dt before each physics substep): the same bits.
            """
            self._last_action = action
            target_x, target_y = float(action[0]), float(action[1])
            agent, dt, k_p, k_v = self.agent, self.dt, self.k_p, self.k_v
            for _ in range(int(1 / (dt * self.control_hz))):
                (x, y), (vx, vy) = agent.position, agent.velocity
                agent.velocity = (vx + (k_p * (target_x - x) + k_v * (0.0 - vx)) * dt,
                                  vy + (k_p * (target_y - y) + k_v * (0.0 - vy)) * dt)
                self.space.step(dt)
            coverage = self._get_coverage()
            success = coverage > self.success_threshold
            reward = np.clip(coverage / self.success_threshold, 0.0, 1.0)
            info = {'is_success': success, 'coverage': coverage}
            return self.get_obs(), reward, success, False, info

        def get_obs(self):
            """Return gym-pusht's state observation, built from floats in one array."""
            (agent_x, agent_y), (block_x, block_y) = self.agent.position, self.block.position
            return np.array([agent_x, agent_y, block_x, block_y,
                             self.block.angle % (2 * np.pi)], dtype=np.float64)

        def _handle_collision(self, arbiter, space, data):
            """Count nothing: gym-pusht's contact count (info n_contacts) is not used here."""

        def _get_info(self):
            """Return an empty info dict: step adds is_success and coverage, all a drill reads."""
            return {}

    return FastCoveragePushTEnv


class CommandedWorld:
    """
    What every drill world shares: it holds the last finite command and reports it, its state.

    Subclasses set `_env`, `_state`, `_command`, `_render` and `task`, implement `_image()`
    (the camera for --render) and call `_take(command, costs)` at the start of their step.
    """

    def _take(self, command, costs: list) -> None:
        """
        Make `command` the one executed; None or non-finite keeps the last one.

        A non-finite command never reaches the physics (a controller would refuse it); it is a
        physical cost event instead.
        """
        if command is None:
            return
        command = np.asarray(command, dtype=np.float64)
        if np.all(np.isfinite(command)):
            self._command = command
        else:
            costs.append('world.nonfinite_command')

    @property
    def executed_command(self) -> np.ndarray:
        """Return the command the world is executing now (the last finite one it was given)."""
        return self._command.copy()

    def observation(self) -> dict:
        """Return the observation: state vector (float32), the camera with --render, task."""
        obs = {'observation.state': self._state.astype(np.float32), 'task': self.task}
        if self._render:
            obs['observation.images.top'] = np.asarray(self._image(), dtype=np.uint8)
        return obs

    def close(self) -> None:
        """Release the simulator."""
        self._env.close()


class PushTWorld(CommandedWorld):
    """gym-pusht behind a small interface: reset(seed), step(command), the measured position."""

    name = 'pusht'
    action_names = ('x', 'y')
    state_dim = 5
    dt = 0.1
    max_steps = 300
    task = PUSHT_TASK

    def __init__(self, render: bool = False):
        self._env = _pusht_env_class()(obs_type='state', render_mode='rgb_array')
        self._render = render
        self._state = np.zeros(5)
        self._command = np.zeros(2)

    def reset(self, seed: int) -> np.ndarray:
        """Start episode `seed` (the same seed gives the same start) and return its state."""
        state, _ = self._env.reset(seed=int(seed))
        self._state = np.asarray(state, dtype=np.float64)
        self._command = self._state[:2].copy()
        return self._state

    def hardware_limits(self) -> HardwareLimits:
        """Return the pusher's workspace (0..512 px) as hardware position limits."""
        return _position_limits(np.full(2, PUSHT_WORKSPACE[0]), np.full(2, PUSHT_WORKSPACE[1]),
                                'pusht workspace')

    def measured_position(self) -> np.ndarray:
        """Return the pusher's position: what the filter observes as the executed 'joint' state."""
        return self._state[:2].copy()

    def step(self, command: np.ndarray | None) -> StepResult:
        """Drive the pusher toward `command` for one period; None or non-finite holds the last."""
        costs = []
        self._take(command, costs)
        state, _, terminated, _, info = self._env.step(self._command)
        self._state = np.asarray(state, dtype=np.float64)
        lo, hi = PUSHT_WORKSPACE
        if np.any(self._state[:2] < lo) or np.any(self._state[:2] > hi):
            costs.append('world.outside_workspace')
        return StepResult(self._state, bool(info['is_success']), tuple(costs),
                          float(info.get('coverage', float('nan'))))

    def _image(self) -> np.ndarray:
        """Return gym-pusht's rendering of the scene."""
        return self._env.render()


#: ALOHA arm joints by action index (the grippers, 6 and 13, are normalized openings)
ALOHA_ARM_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate')
#: gym-aloha tasks: model file, task class name, time limit (steps, as the ACT datasets)
ALOHA_TASKS = {
    'transfer_cube': ('bimanual_viperx_transfer_cube.xml', 'TransferCubeTask', 400,
                      'Pick up the cube with the right arm and hand it to the left arm.'),
    'insertion': ('bimanual_viperx_insertion.xml', 'InsertionTask', 500,
                  'Pick up the socket and the peg and insert the peg into the socket.'),
}


def _aloha_modules():
    """Import gym-aloha's model, tasks and dm_control; InputError says how to install them."""
    try:
        from dm_control import mujoco
        from dm_control.rl import control
        from gym_aloha import constants, utils
        from gym_aloha.tasks import sim
    except ImportError as exc:
        raise InputError(f'world aloha needs gym-aloha (MuJoCo): pip install '
                         f'"vla_safety_filter[aloha]" ({exc})') from exc
    return mujoco, control, constants, utils, sim


class AlohaWorld(CommandedWorld):
    """
    gym-aloha's bimanual ViperX task (MuJoCo), 14 joint targets at 50 Hz, stepped without images.

    The same model, task physics, start poses (seeded as gym-aloha seeds them) and reward as
    gym-aloha, but its task renders three 640x480 cameras on every step (about a second each
    without a GPU); here a state-only observation does not, and the policy gets the top camera
    only with --render. Success: the task's maximum reward (4). Physical costs per step:
    `world.joint_limit` (an arm joint commanded outside its actuator's range, which MuJoCo
    clips: the arm is driven into its limit) and `world.table_contact` (a link of an arm other
    than its base touches the table).
    """

    name = 'aloha'
    dt = 0.02

    def __init__(self, render: bool = False, task: str = 'transfer_cube'):
        # headless: EGL (software or GPU) renders; without --render no GL context is made
        os.environ.setdefault('MUJOCO_GL', 'egl' if render else 'disable')
        mujoco, control, constants, utils, sim = _aloha_modules()
        xml, task_class, self.max_steps, self.task = ALOHA_TASKS[task]
        self.name = 'aloha' if task == 'transfer_cube' else f'aloha-{task}'
        self._sim, self._render = sim, render
        self._sample = utils.sample_box_pose if task == 'transfer_cube' else (
            lambda seed: np.concatenate(utils.sample_insertion_pose(seed)))
        self.action_names = tuple(constants.ACTIONS)
        self.state_dim = len(self.action_names)
        physics = mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / xml))
        self._task = _state_only(getattr(sim, task_class))()
        self._env = control.Environment(physics, self._task, float('inf'),
                                        control_timestep=constants.DT, n_sub_steps=None,
                                        flat_observation=False)
        self._limits = self._arm_limits(physics)
        self._table, self._links = self._contact_geoms(physics)
        self._state = np.zeros(self.state_dim)
        self._command = np.zeros(self.state_dim)

    @staticmethod
    def _arm_limits(physics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the arm action indices and their actuators' control ranges (radians)."""
        model = physics.model
        ranges = {model.id2name(int(model.actuator_trnid[i, 0]), 'joint'):
                  model.actuator_ctrlrange[i] for i in range(model.nu)}
        index = [j + 7 * side for side in (0, 1) for j in range(6)]
        rows = [ranges[f'vx300s_{arm}/{joint}'] for arm in ('left', 'right')
                for joint in ALOHA_ARM_JOINTS]
        return np.array(index), np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    @staticmethod
    def _contact_geoms(physics) -> tuple[int, np.ndarray]:
        """Return the table's geom id and a mask of the geoms of arm links (not the bases)."""
        model = physics.model
        bodies = [model.id2name(int(model.geom_bodyid[g]), 'body') for g in range(model.ngeom)]
        links = np.array([b.startswith('vx300s_') and '/' in b for b in bodies])
        return model.name2id('table', 'geom'), links

    def hardware_limits(self) -> HardwareLimits:
        """Return the arm joints' actuator ranges as hardware position limits (grippers: none)."""
        index, lo, hi = self._limits
        lower, upper = np.full(self.state_dim, np.nan), np.full(self.state_dim, np.nan)
        lower[index], upper[index] = lo, hi
        return _position_limits(lower, upper, 'gym-aloha actuator ranges')

    def reset(self, seed: int) -> np.ndarray:
        """Start episode `seed`: objects placed as gym-aloha places them for this seed."""
        self._task.random.seed(int(seed))
        self._task._random = np.random.RandomState(int(seed))
        self._sim.BOX_POSE[0] = self._sample(int(seed))
        step = self._env.reset()
        self._state = np.asarray(step.observation['qpos'], dtype=np.float64)
        self._command = self._state.copy()
        return self._state

    def measured_position(self) -> np.ndarray:
        """Return the 14 joint positions (grippers normalized): the filter's measured state."""
        return self._state.copy()

    def step(self, command: np.ndarray | None) -> StepResult:
        """Drive the arms toward `command` for one period; None or non-finite holds the last."""
        costs = []
        self._take(command, costs)
        step = self._env.step(self._command)
        self._state = np.asarray(step.observation['qpos'], dtype=np.float64)
        index, lo, hi = self._limits
        arm = self._command[index]
        if np.any(arm < lo) or np.any(arm > hi):
            costs.append('world.joint_limit')
        if self._touches_table():
            costs.append('world.table_contact')
        return StepResult(self._state, bool(step.reward == self._task.max_reward), tuple(costs))

    def _touches_table(self) -> bool:
        """Return whether a link of an arm is in contact with the table."""
        data = self._env.physics.data
        contact = data.contact[:data.ncon]
        pairs = np.stack([contact.geom1, contact.geom2], axis=1)
        touching = pairs == self._table
        other = np.where(touching[:, 0], pairs[:, 1], pairs[:, 0])
        return bool(np.any(touching.any(axis=1) & self._links[other]))

    def _image(self) -> np.ndarray:
        """Return the top camera (640 x 480)."""
        return self._env.physics.render(height=480, width=640, camera_id='top')


def _state_only(task_class):
    """Return a subclass of a gym-aloha task whose observation is the joint state, no images."""
    class StateOnlyTask(task_class):
        """The gym-aloha task without its three camera renders per step."""

        def get_observation(self, physics):
            return {'qpos': self.get_qpos(physics)}

    return StateOnlyTask


WORLDS = {'pusht': PushTWorld, 'aloha': AlohaWorld,
          'aloha-insertion': functools.partial(AlohaWorld, task='insertion')}


def make_world(name: str, render: bool = False):
    """Return a new world called `name`; InputError names the worlds available."""
    if name not in WORLDS:
        raise InputError(f'unknown world {name!r}; choose from {sorted(WORLDS)}')
    return WORLDS[name](render=render)
