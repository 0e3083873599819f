"""Policies a drill queries for action chunks: the protocol, `nn:DATA`, `replay:DATA`, remotes."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import InputError


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


def make_policy(spec: str, timeout: float = 10.0, **kwargs) -> Policy:
    """Build the policy named by SPEC: `nn:DATA`, `replay:DATA`, `ws://...` or `http://...`."""
    if spec.startswith(('ws://', 'wss://', 'http://', 'https://')):
        return _remote_policy(spec, timeout)
    raise InputError(f'unknown policy {spec!r}: use nn:DATA, replay:DATA, ws://... or http://...')


def _remote_policy(spec: str, timeout: float) -> Policy:
    """Load the remote policy client lazily so drills run without its dependencies."""
    try:
        from ..remote_policies import make_remote_policy
    except ImportError as exc:
        raise InputError('remote policies are not available') from exc
    return make_remote_policy(spec, timeout)
