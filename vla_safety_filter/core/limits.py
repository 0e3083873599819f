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
Hardware joint limits from a URDF or a ros2_control joint_limits YAML.

Calibrated bounds are intersected with these so a contract never allows more than the arm's own
limits. A limit the file does not state is NaN (no limit), never a guessed default. Soft limits
narrow the position bounds (the ros2_control soft limiter clamps positions to the soft range)
and, with `k_position`, shape the velocity near them. `contract_limits` turns the optional limits
into Contract fields; `with_optional_limits` / `optional_limit_params` map them to and from the
safety_filter node's parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import os
import xml.etree.ElementTree as ET

import numpy as np
import yaml

from .errors import InputError
from .workspace import workspace_from_params

#: Per-joint limits a HardwareLimits carries, in file order of the ros2_control YAML.
FIELDS = ('lower', 'upper', 'max_velocity', 'max_acceleration', 'max_deceleration', 'max_jerk',
          'soft_lower', 'soft_upper', 'k_position')
#: Optional per-joint limits the Contract takes only when every joint has them.
ALL_JOINTS = ('max_acceleration', 'max_deceleration', 'max_jerk')
#: safety_filter parameter name of each optional Contract field (ros2_control's names).
PARAMETERS = {'max_jerk': 'max_jerk', 'soft_lower': 'soft_lower_limit',
              'soft_upper': 'soft_upper_limit', 'k_position': 'k_position'}


@dataclass(frozen=True)
class HardwareLimits:
    """Per-joint limits in contract joint order (NaN = none); `missing` joints are not in it."""

    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    max_deceleration: np.ndarray | None = None   # ros2_control YAML only (None: not given)
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = ''
    max_jerk: np.ndarray | None = None           # ros2_control YAML only
    soft_lower: np.ndarray | None = None         # URDF <safety_controller> or YAML soft limits
    soft_upper: np.ndarray | None = None
    k_position: np.ndarray | None = None


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
        raise InputError(f'{path}: hardware limits must be a .urdf/.xml or a joint_limits .yaml '
                         f'file')
    found = [n for n in names if n in table]
    if not found:
        raise InputError(f'{path}: none of the joints {list(names)} is in the file '
                         f'(it has {sorted(table)[:10]})')
    arrays = {key: np.full(len(names), np.nan) for key in FIELDS}
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
    """Return a rate limit, or None for <= 0 ('not given' in many URDFs; noted and skipped)."""
    if value <= 0:
        notes.append((joint, f'{key} {value:g} <= 0 in the file, ignored'))
        return None
    return value


def _from_urdf(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """
    Read `<robot><joint name type><limit lower upper velocity/>` and `<safety_controller>`.

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
            _urdf_soft_limits(path, name, soft, entry, notes)
        table[name] = entry
    return table, notes


def _urdf_soft_limits(path: str, name: str, soft, entry: dict, notes: list) -> None:
    """
    Read `<safety_controller soft_lower_limit soft_upper_limit k_position>` into `entry`.

    The soft bounds narrow the position bounds; with k_position > 0 (the URDF default is 0:
    none) they are also kept, with k_position, as soft limits that shape the velocity.
    """
    given = {}
    for attr, key, pick in (('soft_lower_limit', 'lower', max),
                            ('soft_upper_limit', 'upper', min)):
        if soft.get(attr) is not None:
            value = _number(path, name, attr, soft.get(attr))
            given['soft_' + key] = value
            entry[key] = pick(value, entry[key]) if key in entry else value
    k = _number(path, name, 'k_position', soft.get('k_position', '0'))
    if k > 0 and given:
        entry.update(given, k_position=k)
    elif k > 0:
        notes.append((name, 'k_position without soft_lower_limit/soft_upper_limit, ignored'))


def _number(path: str, joint: str, key: str, text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f'{path}: joint {joint!r} {key}={text!r} is not a number') from None
    if not np.isfinite(value):
        raise InputError(f'{path}: joint {joint!r} {key} is not finite')
    return value


def _find_joint_limits(doc) -> dict | None:
    """Find `joint_limits:` at the top or under `<node>: ros__parameters:` (nodes merged)."""
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
    """Read ros2_control joint_limits; a value counts only when its `has_*_limits` flag is true."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f'{path}: cannot read YAML ({str(exc).splitlines()[0]})') from None
    limits = _find_joint_limits(doc)
    if limits is None:
        raise InputError(f'{path}: no `joint_limits:` section')
    table, notes = {}, []
    for name, spec in limits.items():
        if not isinstance(spec, dict):
            raise InputError(f'{path}: joint_limits.{name} must be a mapping')
        entry = _yaml_joint(path, str(name), spec, notes)
        if 'k_position' in entry:     # the soft limiter clamps positions to the soft range too
            entry['lower'] = max(entry['soft_lower'], entry.get('lower', -np.inf))
            entry['upper'] = min(entry['soft_upper'], entry.get('upper', np.inf))
        table[str(name)] = entry
    return table, notes


#: ros2_control joint_limits keys by flag: (YAML key, HardwareLimits field).
YAML_GROUPS = (
    ('has_position_limits', (('min_position', 'lower'), ('max_position', 'upper'))),
    ('has_velocity_limits', (('max_velocity', 'max_velocity'),)),
    ('has_acceleration_limits', (('max_acceleration', 'max_acceleration'),)),
    ('has_deceleration_limits', (('max_deceleration', 'max_deceleration'),)),
    ('has_jerk_limits', (('max_jerk', 'max_jerk'),)),
    ('has_soft_limits', (('soft_lower_limit', 'soft_lower'), ('soft_upper_limit', 'soft_upper'),
                         ('k_position', 'k_position'))))
#: Fields that are rates (<= 0 means 'not given' and is skipped with a note).
RATES = ('max_velocity', 'max_acceleration', 'max_deceleration', 'max_jerk', 'k_position')


def _yaml_joint(path: str, name: str, spec: dict, notes: list) -> dict:
    """Return one joint's limits: a value counts only when its `has_*_limits` flag is true."""
    entry = {}
    for flag, fields in YAML_GROUPS:
        if spec.get(flag) is not True:
            continue
        values = {}
        for src, key in fields:
            value = spec.get(src)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f'{path}: joint_limits.{name}.{flag} is true but {src} is '
                                 f'{value!r}, not a number')
            value = _number(path, name, src, value)
            values[key] = _positive(name, src, value, notes) if key in RATES else value
        if flag == 'has_soft_limits':
            if values['k_position'] is None:
                continue
            if values['soft_lower'] > values['soft_upper']:
                raise InputError(f'{path}: joint {name!r} has soft_lower_limit > '
                                 f'soft_upper_limit')
        entry.update({key: value for key, value in values.items() if value is not None})
    return entry


def contract_limits(hw: HardwareLimits) -> tuple[dict, list[str]]:
    """
    Return the optional Contract fields that hardware limits give, and notes on those left out.

    Acceleration, deceleration and jerk limits count only when every joint has one; soft limits
    are per joint (a joint or side without them gets an infinite soft bound, which never binds).
    """
    fields, notes = {}, []
    for key in ALL_JOINTS:
        given = getattr(hw, key)
        if given is None or not np.any(np.isfinite(given)):
            continue
        if np.all(np.isfinite(given)):
            fields[key] = given
        else:
            notes.append(f'hardware {key} not used: not given for every joint')
    k = hw.k_position
    if k is not None and np.any(np.isfinite(k)):
        has = np.isfinite(k)
        fields['soft_lower'] = np.where(has & ~np.isnan(hw.soft_lower), hw.soft_lower, -np.inf)
        fields['soft_upper'] = np.where(has & ~np.isnan(hw.soft_upper), hw.soft_upper, np.inf)
        fields['k_position'] = np.where(has, k, 1.0)
    return fields, notes


def optional_limit_params(contract) -> dict:
    """Return the safety_filter parameters of the contract's soft and jerk limits (if set)."""
    return {name: [float(v) for v in getattr(contract, key)]
            for key, name in PARAMETERS.items() if getattr(contract, key) is not None}


def with_optional_limits(contract, params: dict, source: str = 'parameters'):
    """
    Return `contract` with the soft limits, jerk limit and workspace box the parameters name.

    `params` are safety_filter parameters (see PARAMETERS and core.workspace.PARAMETERS); unset
    or empty ones leave the contract's own values.
    """
    fields = {key: params[name] for key, name in PARAMETERS.items()
              if params.get(name) is not None and len(params[name])}
    workspace = workspace_from_params(params, contract.joint_names, source)
    if workspace is not None:
        fields['workspace'] = workspace
    if not fields:
        return contract
    try:
        return dataclasses.replace(contract, **fields)
    except (TypeError, ValueError) as exc:
        raise InputError(f'{source}: {exc}') from None
