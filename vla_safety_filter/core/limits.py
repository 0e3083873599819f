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

"""Hardware joint limits from a URDF or a ros2_control joint_limits YAML.

Calibrated bounds are intersected with these so a contract never allows more than the arm's own
limits. A limit the file does not state is NaN (no limit), never a guessed default.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import yaml

from .errors import InputError


@dataclass(frozen=True)
class HardwareLimits:
    """Per-joint limits in contract joint order (NaN = none); `missing` joints are not in the file."""

    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    max_deceleration: np.ndarray | None = None   # ros2_control YAML only (None: not given)
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = ''


def read_hardware_limits(path: str, joint_names) -> HardwareLimits:
    """Limits of `joint_names` from a URDF (.urdf/.xml) or a joint_limits YAML (.yaml/.yml)."""
    names = tuple(str(n) for n in joint_names)
    if not os.path.isfile(path):
        raise InputError(f'{path}: hardware limits file not found')
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.yaml', '.yml'):
        table, notes = _from_yaml(path)
    elif ext in ('.urdf', '.xml'):
        table, notes = _from_urdf(path)
    else:
        raise InputError(f'{path}: hardware limits must be a .urdf/.xml or a joint_limits .yaml file')
    found = [n for n in names if n in table]
    if not found:
        raise InputError(f'{path}: none of the joints {list(names)} is in the file '
                         f'(it has {sorted(table)[:10]})')
    arrays = {key: np.full(len(names), np.nan)
              for key in ('lower', 'upper', 'max_velocity', 'max_acceleration',
                          'max_deceleration')}
    for j, name in enumerate(names):
        for key, value in table.get(name, {}).items():
            arrays[key][j] = value
        lo, hi = arrays['lower'][j], arrays['upper'][j]
        if lo > hi:
            raise InputError(f'{path}: joint {name!r} has lower limit {lo} > upper limit {hi}')
    missing = tuple(n for n in names if n not in table)
    relevant = tuple(f'{joint}: {text}' for joint, text in notes if joint in names)
    return HardwareLimits(**arrays, missing=missing, notes=relevant, source=path)


def _positive(joint: str, key: str, value: float, notes: list) -> float | None:
    """A velocity/acceleration limit; <= 0 means 'not given' in many URDFs, so it is skipped."""
    if value <= 0:
        notes.append((joint, f'{key} {value:g} <= 0 in the file, ignored'))
        return None
    return value


def _from_urdf(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """`<robot><joint name type><limit lower upper velocity/>` (+ `<safety_controller>` soft limits).

    Continuous joints have no position limits; an absent attribute sets nothing.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f'{path}: cannot parse URDF ({exc})') from None
    if root.tag != 'robot':
        raise InputError(f'{path}: root element is <{root.tag}>, expected <robot>')
    table, notes = {}, []
    for joint in root.findall('joint'):
        name = joint.get('name')
        if not name:
            continue
        entry = {}
        has_position = joint.get('type') not in ('continuous', 'fixed', 'floating', 'planar')
        limit = joint.find('limit')
        if limit is not None:
            values = {k: _number(path, name, k, limit.get(k))
                      for k in ('lower', 'upper', 'velocity') if limit.get(k) is not None}
            if has_position:
                entry.update({k: values[k] for k in ('lower', 'upper') if k in values})
            if 'velocity' in values:
                vmax = _positive(name, 'velocity', values['velocity'], notes)
                if vmax is not None:
                    entry['max_velocity'] = vmax
        soft = joint.find('safety_controller')
        if soft is not None and has_position:
            for attr, key, pick in (('soft_lower_limit', 'lower', max),
                                    ('soft_upper_limit', 'upper', min)):
                if soft.get(attr) is not None:
                    value = _number(path, name, attr, soft.get(attr))
                    entry[key] = pick(value, entry[key]) if key in entry else value
        table[name] = entry
    return table, notes


def _number(path: str, joint: str, key: str, text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f'{path}: joint {joint!r} {key}={text!r} is not a number') from None
    if not np.isfinite(value):
        raise InputError(f'{path}: joint {joint!r} {key} is not finite')
    return value


def _find_joint_limits(doc) -> dict | None:
    """`joint_limits:` at the top or under `<node>: ros__parameters:` (several nodes are merged)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get('joint_limits'), dict):
        return doc['joint_limits']
    merged = {}
    for entry in doc.values():
        params = entry.get('ros__parameters') if isinstance(entry, dict) else None
        if isinstance(params, dict) and isinstance(params.get('joint_limits'), dict):
            merged.update(params['joint_limits'])
    return merged or None


def _from_yaml(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """ros2_control joint_limits: a value counts only when its `has_*_limits` flag is true."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f'{path}: cannot read YAML ({str(exc).splitlines()[0]})') from None
    limits = _find_joint_limits(doc)
    if limits is None:
        raise InputError(f'{path}: no `joint_limits:` section')
    table, notes = {}, []
    groups = (('has_position_limits', (('min_position', 'lower'), ('max_position', 'upper'))),
              ('has_velocity_limits', (('max_velocity', 'max_velocity'),)),
              ('has_acceleration_limits', (('max_acceleration', 'max_acceleration'),)),
              ('has_deceleration_limits', (('max_deceleration', 'max_deceleration'),)))
    for name, spec in limits.items():
        if not isinstance(spec, dict):
            raise InputError(f'{path}: joint_limits.{name} must be a mapping')
        entry = {}
        for flag, fields in groups:
            if spec.get(flag) is not True:
                continue
            for src, key in fields:
                value = spec.get(src)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InputError(f'{path}: joint_limits.{name}.{flag} is true but {src} is '
                                     f'{value!r}, not a number')
                value = _number(path, name, src, value)
                if key in ('max_velocity', 'max_acceleration', 'max_deceleration'):
                    value = _positive(name, src, value, notes)
                if value is not None:
                    entry[key] = value
        table[str(name)] = entry
    return table, notes
