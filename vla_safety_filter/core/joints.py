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

"""Map joint-name-ordered messages onto the contract's joint order (by name, never by position)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError


class JointMap:
    """Reorder values given with their joint names into a fixed target order (caches layouts)."""

    def __init__(self, target: Sequence[str]):
        self.target = tuple(target)
        self._cache: tuple[tuple[str, ...], bool, np.ndarray] | None = None

    def indices(self, names: Sequence[str], allow_extra: bool = False) -> np.ndarray:
        """Index into `names` for each target joint; unknown, missing or duplicate names raise."""
        names = tuple(names)
        if self._cache is not None and self._cache[:2] == (names, allow_extra):
            return self._cache[2]
        if len(set(names)) != len(names):
            raise InputError(f'duplicate joint names in {list(names)}')
        where = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.target if n not in where]
        if missing:
            raise InputError(f'missing joint(s) {missing}; expected {list(self.target)}')
        if not allow_extra:
            unknown = [n for n in names if n not in set(self.target)]
            if unknown:
                raise InputError(f'unknown joint(s) {unknown}; expected {list(self.target)}')
        idx = np.array([where[n] for n in self.target], dtype=np.intp)
        self._cache = (names, allow_extra, idx)
        return idx

    def reorder(self, names: Sequence[str], values, allow_extra: bool = False) -> np.ndarray:
        """Values in target order; length must match `names`."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != len(names):
            raise InputError(f'{values.shape[-1]} values for {len(names)} joint names')
        return values[..., self.indices(names, allow_extra)]
