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
Observations for live policies from ROS message fields, without rclpy.

`image_rgb` turns the fields of a sensor_msgs/Image (rgb8, bgr8 or mono8) into the HxWx3 uint8
array policy servers take; `state_vector` reads named joints of a JointState into the ordered
float32 `observation.state`. Both raise InputError with one line naming what is wrong, so the
bridge can report it and skip the request instead of sending a policy a malformed observation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
"""Encodings accepted (sensor_msgs/image_encodings names) and their channels of one byte."""


def image_rgb(height: int, width: int, encoding: str, step: int, data) -> np.ndarray:
    """Return an Image's fields as a fresh HxWx3 uint8 RGB array (rows may be padded to `step`)."""
    channels = CHANNELS.get(encoding)
    if channels is None:
        raise InputError(f'image encoding {encoding!r} is not supported; use '
                         f'{", ".join(CHANNELS)}')
    if height < 1 or width < 1:
        raise InputError(f'image is {height}x{width}, expected at least 1x1')
    row = width * channels
    if step < row:
        raise InputError(f'image step {step} is shorter than a row of {row} bytes')
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    if raw.size < step * (height - 1) + row:
        raise InputError(f'image has {raw.size} bytes, {height} rows of step {step} need '
                         f'{step * (height - 1) + row}')
    rows = np.lib.stride_tricks.as_strided(raw, shape=(height, row), strides=(step, 1))
    pixels = rows.reshape(height, width, channels)
    if encoding == 'bgr8':
        pixels = pixels[:, :, ::-1]
    elif encoding == 'mono8':
        pixels = np.repeat(pixels, 3, axis=2)
    return np.array(pixels, dtype=np.uint8, order='C')   # a copy: the message may be reused


def state_vector(wanted: Sequence[str], names: Sequence[str], positions) -> np.ndarray:
    """
    Return the positions of the WANTED joints, in that order, as float32.

    (a JointState by name).
    """
    if len(positions) != len(names):
        raise InputError(f'joint state has {len(names)} names but {len(positions)} positions')
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in wanted if name not in index]
    if missing:
        raise InputError(f'joint state lacks {", ".join(missing)}')
    values = np.array([positions[index[name]] for name in wanted], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError('joint state has NaN or Inf positions')
    return values.astype(np.float32)
