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

"""core.observation: sensor_msgs/Image fields -> HxWx3 RGB, JointState by name -> state."""
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.observation import image_rgb, state_vector

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)


def test_rgb8_bgr8_mono8():
    np.testing.assert_array_equal(image_rgb(2, 3, 'rgb8', 9, RGB.tobytes()), RGB)
    bgr = RGB[:, :, ::-1].tobytes()
    np.testing.assert_array_equal(image_rgb(2, 3, 'bgr8', 9, bgr), RGB)
    mono = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)
    out = image_rgb(2, 3, 'mono8', 3, list(mono.tobytes()))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], mono)


def test_padded_rows_are_cropped_and_the_result_is_a_writable_copy():
    padded = np.zeros((2, 12), dtype=np.uint8)
    padded[:, :9] = RGB.reshape(2, 9)
    padded[:, 9:] = 77
    data = bytearray(padded.tobytes())
    out = image_rgb(2, 3, 'rgb8', 12, data)
    np.testing.assert_array_equal(out, RGB)
    data[0] = 200                       # the message buffer is reused by the next message
    assert out[0, 0, 0] == 0 and out.flags.writeable and out.flags.c_contiguous


@given(height=st.integers(1, 6), width=st.integers(1, 6), pad=st.integers(0, 5),
       encoding=st.sampled_from(['rgb8', 'bgr8', 'mono8']), data=st.data())
def test_any_well_formed_image_gives_its_pixels(height, width, pad, encoding, data):
    channels = 1 if encoding == 'mono8' else 3
    pixels = np.array(data.draw(st.lists(st.integers(0, 255), min_size=height * width * channels,
                                         max_size=height * width * channels)),
                      dtype=np.uint8).reshape(height, width, channels)
    step = width * channels + pad
    rows = np.full((height, step), 9, dtype=np.uint8)
    rows[:, :width * channels] = pixels.reshape(height, -1)
    out = image_rgb(height, width, encoding, step, rows.tobytes())
    expected = {'rgb8': pixels, 'bgr8': pixels[:, :, ::-1],
                'mono8': np.repeat(pixels, 3, axis=2)}[encoding]
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('fields, reason', [
    ((2, 3, 'rgba8', 12, bytes(24)), "encoding 'rgba8'"),
    ((2, 3, '16UC1', 6, bytes(12)), 'not supported'),
    ((0, 3, 'rgb8', 9, b''), 'is 0x3'),
    ((2, 3, 'rgb8', 8, bytes(18)), 'step 8 is shorter'),
    ((2, 3, 'rgb8', 9, bytes(17)), 'has 17 bytes'),
])
def test_malformed_images_are_refused_with_the_reason(fields, reason):
    with pytest.raises(InputError, match=reason):
        image_rgb(*fields)


def test_state_by_name_in_the_wanted_order():
    state = state_vector(['b', 'a'], ['a', 'b', 'c'], [1.0, 2.0, 3.0])
    assert state.dtype == np.float32
    np.testing.assert_array_equal(state, [2.0, 1.0])


@pytest.mark.parametrize('names, positions, reason', [
    (['a'], [1.0], 'lacks b'),
    (['a', 'b'], [1.0], '2 names but 1 positions'),
    (['a', 'b'], [1.0, float('nan')], 'NaN or Inf'),
])
def test_bad_joint_states_are_refused(names, positions, reason):
    with pytest.raises(InputError, match=reason):
        state_vector(['a', 'b'], names, positions)
