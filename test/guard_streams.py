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
Hypothesis strategies for what a policy may send the guard: vectors, non-finite values and junk.

A plain helper module (test modules import it; they never import each other).
"""
from hypothesis import strategies as st

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0.0, 1e308, -1e308, float('nan'), float('inf')]))


@st.composite
def actions_for(draw, d):
    """Mostly right-length vectors (finite or not), sometimes the wrong length or not numbers."""
    kind = draw(st.sampled_from(['near', 'near', 'finite', 'anything', 'wrong_length', 'junk']))
    if kind == 'wrong_length':
        return draw(st.lists(finite, max_size=d + 3).filter(lambda v: len(v) != d))
    if kind == 'junk':
        return draw(st.sampled_from([None, 'abc', [[1.0, 2.0]], {'a': 1}]))
    if kind == 'anything':
        return draw(st.lists(anything, min_size=d, max_size=d))
    scale = 30.0 if kind == 'near' else 1e6
    return draw(st.lists(st.floats(-scale, scale), min_size=d, max_size=d))
