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
Differences between the ROS 2 distributions we support (Jazzy, Kilted), kept in one place.

Imports no rclpy at module level: the flight recorder's bag writer asks `ros_distro()` offline.
"""
from __future__ import annotations

import functools
from importlib import metadata
import os
import re

#: rclpy major version of each distribution, for installs without a `ros-<distro>-rclpy` pin.
RCLPY_MAJOR_DISTRO = {3: 'humble', 5: 'iron', 7: 'jazzy', 9: 'kilted'}
#: First rclpy major whose change_state answers an invalid transition (ros2/rclpy#1209).
RCLPY_FIXED_MAJOR = 8
_PIN = re.compile(r'ros-([a-z]+)-rclpy')


def ros_distro() -> str:
    """
    Return the running ROS 2 distribution.

    $ROS_DISTRO where set, else the installed wheels' metadata (a `ros-<distro>-rclpy` pin, else
    the `ros-rclpy` version), else 'unknown'.
    """
    return os.environ.get('ROS_DISTRO') or _distro_from_wheels()


@functools.lru_cache(maxsize=None)
def _distro_from_wheels() -> str:
    """Return the distro named by an installed pin, or implied by rclpy's major version."""
    for dist in metadata.distributions():
        match = _PIN.fullmatch(_normalized(dist.metadata['Name'] or ''))
        if match:
            return match.group(1)
    return RCLPY_MAJOR_DISTRO.get(_rclpy_major(), 'unknown')


def _normalized(name: str) -> str:
    """Return a distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def _rclpy_major() -> int | None:
    """Major version of the installed rclpy wheel; None for a source or apt install."""
    try:
        return int(metadata.version('ros-rclpy').split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def events_executor():
    """
    Return (rclpy's EventsExecutor factory, '') or (None, why it is not available).

    rclpy.experimental.EventsExecutor exists from Jazzy's rclpy 7.1.4 and on Kilted.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError as exc:
        return None, f'rclpy.experimental.EventsExecutor is not in this rclpy ({exc})'
    return EventsExecutor, ''


def harden_change_state(node) -> None:
    """
    Make the lifecycle change_state service answer success=False on invalid transitions.

    rclpy < 8 (Jazzy) lets the RCLError of a transition not valid from the current state escape
    the service callback: no reply, and the executor re-raises, ending the process. Wrap the
    callback there; rclpy >= 8 already answers success=False, so it is left untouched.
    """
    major = _rclpy_major()
    if major is not None and major >= RCLPY_FIXED_MAJOR:
        return
    from lifecycle_msgs.srv import ChangeState
    for service in node.services:
        if service.srv_type is ChangeState:
            service.callback = _refusing_invalid(service.callback, node.get_logger())


def _refusing_invalid(callback, logger):
    """Wrap `callback`: the rcl error of an invalid transition becomes success=False."""
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    def change_state(request, response):
        try:
            return callback(request, response)
        except _rclpy.RCLError as exc:
            transition = request.transition
            logger.error(f'refused transition id={transition.id} label={transition.label!r}: '
                         f'{str(exc).strip()}')
            response.success = False
            return response
    return change_state
