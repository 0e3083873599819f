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

"""Policies a drill queries for action chunks: the protocol, `nn:DATA`, `replay:DATA`, remotes."""
from __future__ import annotations

import os
from typing import Protocol
import zipfile

import numpy as np
from scipy.spatial import cKDTree

from ..episodes import read_episodes
from ..errors import InputError

#: actions per chunk of the built-in policies (diffusion-policy PushT executes 8 of 16)
DEFAULT_HORIZON = 8
#: weight of the block angle's (cos, sin) against positions in pixels for the nearest neighbour
ANGLE_WEIGHT_PX = 60.0


class PolicyFault(Exception):
    """The policy could not give a usable chunk (the episode counts it)."""


class Policy(Protocol):
    """What a drill needs from a policy: a chunk of actions [H, D] per observation."""

    name: str

    def reset(self, seed: int, task: str) -> None:
        """Start a new episode with this world seed and task text."""

    def act(self, observation: dict) -> np.ndarray:
        """Return a float64 chunk [H, D] for the observation, or raise PolicyFault."""

    def close(self) -> None:
        """Release connections or files; the policy is not used afterwards."""


def load_demos(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Return actions [T, D], `observation.state` [T, S] and `episode_index` [T] of demos.

    A directory is read as a LeRobot dataset (v2.x or v3.0) by core.episodes; a file as an npz.
    """
    if os.path.isdir(path):
        return _load_lerobot(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            actions = np.asarray(z['actions'], dtype=np.float64)
            states = np.asarray(z['observation.state'], dtype=np.float64)
            episodes = np.asarray(z['episode_index'])
    except FileNotFoundError:
        raise InputError(f'{path}: demonstration file not found') from None
    except KeyError as exc:
        raise InputError(f'{path}: demonstrations need actions, observation.state and '
                         f'episode_index (missing {exc})') from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f'{path}: not a demonstration .npz ({exc})') from None
    if actions.ndim != 2 or states.ndim != 2 or not len(actions) == len(states) == len(episodes) \
            or len(actions) == 0:
        raise InputError(f'{path}: actions, observation.state and episode_index must be '
                         f'[T, D], [T, S] and [T] with the same T > 0')
    if not (np.all(np.isfinite(actions)) and np.all(np.isfinite(states))):
        raise InputError(f'{path}: demonstrations contain non-finite values')
    return actions, states, episodes


def _load_lerobot(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the arrays of load_demos from a LeRobot dataset with `observation.state`."""
    episodes = read_episodes(path).episodes
    if any(ep.state is None for ep in episodes):
        raise InputError(f'{path}: demonstrations need an observation.state column')
    actions = np.concatenate([ep.actions for ep in episodes])
    states = np.concatenate([ep.state for ep in episodes]).astype(np.float64)
    index = np.concatenate([np.full(len(ep.actions), ep.index, dtype=np.int64)
                            for ep in episodes])
    if not np.all(np.isfinite(states)):
        raise InputError(f'{path}: observation.state contains non-finite values')
    return actions, states, index


def episode_ends(episodes: np.ndarray) -> np.ndarray:
    """For each frame, the index one past the last frame of its episode."""
    change = np.flatnonzero(np.diff(episodes) != 0) + 1
    bounds = np.concatenate([change, [len(episodes)]])
    return np.repeat(bounds, np.diff(np.concatenate([[0], bounds])))


def _chunk(actions: np.ndarray, start: int, end: int, horizon: int) -> np.ndarray:
    """actions[start:start+horizon] inside one episode, padded with its last action."""
    rows = actions[start:min(end, start + horizon)]
    pad = np.repeat(rows[-1:], horizon - len(rows), axis=0)
    return np.concatenate([rows, pad]).astype(np.float64)


def pusht_features(states: np.ndarray) -> np.ndarray:
    """Map PushT states [.., 5] to positions plus the block angle as a weighted (cos, sin) pair."""
    states = np.asarray(states, dtype=np.float64)
    angle = states[..., 4:5]
    return np.concatenate([states[..., :4], ANGLE_WEIGHT_PX * np.cos(angle),
                           ANGLE_WEIGHT_PX * np.sin(angle)], axis=-1)


class NearestNeighbourPolicy:
    """
    VINN-style behaviour cloning: the chunk that followed the nearest demonstration state.

    Deterministic (ties go to the earliest frame); the last `horizon` frames of an episode give
    shorter chunks padded with the episode's last action.
    """

    def __init__(self, path: str, horizon: int = DEFAULT_HORIZON):
        self.name = f'nn:{path}'
        self.actions, states, episodes = load_demos(path)
        self.horizon = _horizon(horizon)
        self._features = self._featurize(states)
        self._tree = cKDTree(self._features)
        self._ends = episode_ends(episodes)

    def _featurize(self, states: np.ndarray) -> np.ndarray:
        """Give PushT states the angle feature; other state vectors are used as they are."""
        return pusht_features(states) if states.shape[1] == 5 else states

    def reset(self, seed: int, task: str) -> None:
        """Nothing to reset: the policy has no memory between requests."""

    def act(self, observation: dict) -> np.ndarray:
        """Return the demonstration chunk after the frame nearest to observation.state."""
        state = np.asarray(observation.get('observation.state'), dtype=np.float64).reshape(-1)
        query = self._featurize(state[None, :])
        if query.shape[1] != self._features.shape[1] or not np.all(np.isfinite(query)):
            raise PolicyFault(f'{self.name}: observation.state of shape {state.shape} does not '
                              f'match the demonstrations')
        nearest = self._nearest(query[0])
        return _chunk(self.actions, nearest, int(self._ends[nearest]), self.horizon)

    def _nearest(self, query: np.ndarray) -> int:
        """
        Index of the nearest demonstration frame, the earliest of exact ties.

        The k-d tree finds the two nearest distances. When the second is beyond the first plus
        round-off, the nearest frame is the only candidate; otherwise every frame within that
        radius is compared by the squared distance a brute-force search computes. Either way
        the answer is the brute-force argmin, bit for bit, at a fraction of its cost.
        """
        (first, second), (index, _) = self._tree.query(query, k=2)
        radius = first * (1 + 1e-9) + 1e-9
        if second > radius:
            return int(index)
        near = np.sort(self._tree.query_ball_point(query, radius))
        squared = ((self._features[near] - query) ** 2).sum(axis=1)
        return int(near[np.argmin(squared)])

    def close(self) -> None:
        """Nothing to release."""


class ReplayPolicy:
    """Open-loop replay of a recorded episode (seed modulo the number of episodes), by chunks."""

    def __init__(self, path: str, horizon: int = DEFAULT_HORIZON):
        self.name = f'replay:{path}'
        self.actions, _, episodes = load_demos(path)
        self.horizon = _horizon(horizon)
        self._starts = np.flatnonzero(np.r_[True, np.diff(episodes) != 0])
        self._ends = episode_ends(episodes)
        self._next = 0

    def reset(self, seed: int, task: str) -> None:
        """Replay episode `seed % n_episodes` from its start."""
        self._next = int(self._starts[int(seed) % len(self._starts)])

    def act(self, observation: dict) -> np.ndarray:
        """Return the next `horizon` recorded actions (the last repeated after the end)."""
        end = int(self._ends[self._next])
        chunk = _chunk(self.actions, self._next, end, self.horizon)
        self._next = min(self._next + self.horizon, end - 1)
        return chunk

    def close(self) -> None:
        """Nothing to release."""


def _horizon(value) -> int:
    """Return a chunk length: an integer >= 1."""
    if int(value) != value or value < 1:
        raise InputError(f'chunk horizon must be an integer >= 1, got {value!r}')
    return int(value)


BUILT_IN = {'nn': NearestNeighbourPolicy, 'replay': ReplayPolicy}


def make_policy(spec: str, timeout: float = 10.0, horizon: int = DEFAULT_HORIZON) -> Policy:
    """Build the policy named by SPEC: `nn:DATA`, `replay:DATA`, `ws://...` or `http://...`."""
    if spec.startswith(('ws://', 'wss://', 'http://', 'https://')):
        return _remote_policy(spec, timeout)
    kind, sep, path = spec.partition(':')
    if sep and kind in BUILT_IN and path:
        return BUILT_IN[kind](path, horizon)
    raise InputError(f'unknown policy {spec!r}: use nn:DATA, replay:DATA, ws://... or http://...')


def _remote_policy(spec: str, timeout: float) -> Policy:
    """Load the remote policy client lazily so drills run without its dependencies."""
    try:
        from ..remote_policies import make_remote_policy
    except ImportError as exc:
        raise InputError(f'remote policies are not available ({exc})') from exc
    return make_remote_policy(spec, timeout)
