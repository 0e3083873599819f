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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

PUSHT_TASK = 'Push the T-shaped block onto the T-shaped target.'
#: the pusher may move only inside this square (pixels); a step outside it is a physical cost
PUSHT_WORKSPACE = (0.0, 512.0)


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
    Return gym-pusht's PushTEnv with a faster, reproducible coverage computation.

    gym-pusht rebuilds the fixed goal polygon and its area on every step and builds the block's
    polygons one shapely object at a time, in set order. Here the goal's corners and area are
    computed once, the block's local corners once per episode, the polygons in one vectorized
    call and in a fixed order: the same coverage to round-off (1e-15), at about a third of the
    cost, and the same bits on every run.
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
            """Return the goal's polygon corners and area, computed once per goal pose."""
            key, rings, area = self._goal_cache
            if key != tuple(self.goal_pose):
                key = tuple(self.goal_pose)
                rings = _world_rings(self.get_goal_pose_body(self.goal_pose),
                                     _local_polygons(self.block))
                area = float(np.sum(shapely.area(shapely.polygons(rings))))
                self._goal_cache = (key, rings, area)
            return rings, area

        def _block_rings(self):
            """Return the block's polygon corners at its current pose."""
            block, local = self._block_cache
            if block is not self.block:
                block, local = self.block, _local_polygons(self.block)
                self._block_cache = (block, local)
            return _world_rings(block, local)

        def _get_coverage(self):
            rings, area = self._goal()
            goal, block = shapely.multipolygons(shapely.polygons(
                np.stack([rings, self._block_rings()])))
            return goal.intersection(block).area / area

    return FastCoveragePushTEnv


class PushTWorld:
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

    def measured_position(self) -> np.ndarray:
        """Return the pusher's position: what the filter observes as the executed 'joint' state."""
        return self._state[:2].copy()

    def step(self, command: np.ndarray | None) -> StepResult:
        """
        Drive the pusher toward `command` for one period; None or non-finite holds the last one.

        A non-finite command never reaches the physics (a controller would refuse it); it is a
        physical cost event instead.
        """
        costs = []
        if command is not None:
            command = np.asarray(command, dtype=np.float64)
            if np.all(np.isfinite(command)):
                self._command = command
            else:
                costs.append('world.nonfinite_command')
        state, _, terminated, _, info = self._env.step(self._command)
        self._state = np.asarray(state, dtype=np.float64)
        lo, hi = PUSHT_WORKSPACE
        if np.any(self._state[:2] < lo) or np.any(self._state[:2] > hi):
            costs.append('world.outside_workspace')
        return StepResult(self._state, bool(info['is_success']), tuple(costs),
                          float(info.get('coverage', float('nan'))))

    @property
    def executed_command(self) -> np.ndarray:
        """Return the command the world is executing now (the last finite one it was given)."""
        return self._command.copy()

    def observation(self) -> dict:
        """Return the observation: state vector (float32), an image when rendering, task."""
        obs = {'observation.state': self._state.astype(np.float32), 'task': self.task}
        if self._render:
            obs['observation.images.top'] = np.asarray(self._env.render(), dtype=np.uint8)
        return obs

    def close(self) -> None:
        self._env.close()


WORLDS = {'pusht': PushTWorld}


def make_world(name: str, render: bool = False):
    """Return a new world called `name`; InputError names the worlds available."""
    if name not in WORLDS:
        raise InputError(f'unknown world {name!r}; choose from {sorted(WORLDS)}')
    return WORLDS[name](render=render)
