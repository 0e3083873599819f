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
Forward kinematics of one URDF frame with pinocchio (the `pin` wheels on PyPI).

Used by the optional Cartesian workspace box (core.workspace). pinocchio is imported only when a
workspace is configured, so the rest of the package does not need it.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


class UrdfKinematics:
    """Position (m, URDF root frame) of one frame as a function of contract joint positions."""

    def __init__(self, path: str, frame: str, joint_names):
        pin = _pinocchio()
        try:
            model = pin.buildModelFromUrdf(path)
        except (ValueError, RuntimeError, OSError) as exc:
            raise InputError(f'{path}: cannot build a kinematic model ({exc})') from None
        if not model.existFrame(frame):
            names = sorted(f.name for f in model.frames)[:20]
            raise InputError(f'{path}: no frame {frame!r} (it has {names})')
        self._pin, self._model, self._data = pin, model, model.createData()
        self._frame = model.getFrameId(frame)
        self._q = pin.neutral(model)
        names = tuple(joint_names)
        self._source, self._target = self._index(path, frame, names)

    def _index(self, path: str, frame: str, names: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Map contract joints onto configuration entries; every joint moving `frame` must map."""
        model = self._model
        source, target = [], []
        for j, name in enumerate(names):
            if not model.existJointName(name):
                continue
            joint = model.joints[model.getJointId(name)]
            if joint.nq != 1:
                raise InputError(f'{path}: joint {name!r} has {joint.nq} configuration values; '
                                 f'the workspace box supports revolute and prismatic joints')
            source.append(j)
            target.append(joint.idx_q)
        moving = model.supports[model.frames[self._frame].parentJoint]
        unmapped = [model.names[i] for i in moving[1:] if model.names[i] not in names]
        if unmapped:
            raise InputError(f'{path}: joints {unmapped} move frame {frame!r} but are not '
                             f'contract joints')
        return np.array(source, dtype=np.intp), np.array(target, dtype=np.intp)

    def __call__(self, q) -> np.ndarray:
        """Return the frame's position for contract joint positions `q`."""
        self._q[self._target] = np.asarray(q, dtype=np.float64)[self._source]
        self._pin.forwardKinematics(self._model, self._data, self._q)
        placement = self._pin.updateFramePlacement(self._model, self._data, self._frame)
        return np.array(placement.translation)


def _pinocchio():
    """Import pinocchio, or explain how to install it."""
    try:
        import pinocchio
    except ImportError:
        raise InputError('the workspace box needs forward kinematics: pip install pin '
                         '(pinocchio)') from None
    return pinocchio
