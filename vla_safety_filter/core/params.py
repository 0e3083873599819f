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
The files calibration hands to the nodes: the filter's ROS parameter YAML and the calibration file.

The YAML follows ROS 2 parameter-file rules (flat per-joint double arrays, floats with a decimal
point) so `--params-file` accepts it; `calibration_file` names the .npz holding the calibration
scores the monitor turns into conformal p-values.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
import zipfile

import numpy as np
import yaml

from .contract import Contract
from .errors import InputError
from .limits import optional_limit_params, with_optional_limits

FILTER_NODE = 'safety_filter'


@dataclass(frozen=True)
class CalibrationData:
    """What the monitor needs from calibration: per-joint centre/scale and the sorted scores."""

    joint_names: tuple[str, ...]
    mu: np.ndarray
    sigma: np.ndarray
    scores: np.ndarray          # sorted position nonconformity scores of the calibration episodes
    velocity_scale: np.ndarray  # per-joint typical |velocity| (units/s), scales jerk and deadbands
    q: float
    alpha: float
    dt: float
    motion: object = None       # core.sequential.MotionCalibration (step scores), if calibrated

    def save(self, path: str) -> None:
        extra = {} if self.motion is None else self.motion.to_arrays()
        np.savez(path, joint_names=np.array(self.joint_names), mu=self.mu, sigma=self.sigma,
                 scores=self.scores, velocity_scale=self.velocity_scale,
                 q=self.q, alpha=self.alpha, dt=self.dt, **extra)

    @classmethod
    def load(cls, path: str) -> 'CalibrationData':
        """Read and validate a calibration file; any defect is one InputError naming the field."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {key: z[key] for key in CALIBRATION_FIELDS}
                arrays.update({key: z[key] for key in z.files if key.startswith('motion_')})
        except FileNotFoundError:
            raise InputError(f'{path}: calibration file not found') from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f'{path}: not a calibration file ({exc})') from None
        names = _joint_names(path, arrays['joint_names'])
        d = len(names)
        vectors = {key: _finite_vector(path, key, arrays[key], d)
                   for key in ('mu', 'sigma', 'velocity_scale', 'scores')}
        for key in ('sigma', 'velocity_scale'):
            if not np.all(vectors[key] > 0):
                raise InputError(f'{path}: field {key!r} must be > 0 for every joint')
        q, alpha, dt = (_finite_scalar(path, key, arrays[key]) for key in ('q', 'alpha', 'dt'))
        if not 0.0 < alpha < 1.0:
            raise InputError(f"{path}: field 'alpha' must be in (0, 1), got {alpha}")
        if not dt > 0:
            raise InputError(f"{path}: field 'dt' must be > 0, got {dt}")
        return cls(names, vectors['mu'], vectors['sigma'], np.sort(vectors['scores']),
                   vectors['velocity_scale'], q, alpha, dt, _motion(path, arrays, d))


def _motion(path: str, arrays: dict, dim: int):
    """Return the step-score calibration a file carries (None for files that predate it)."""
    from .sequential import MotionCalibration   # sequential imports this module
    try:
        motion = MotionCalibration.from_arrays(arrays)
    except InputError as exc:
        raise InputError(f'{path}: {exc}') from None
    if motion is not None and motion.step_scale.shape != (dim,):
        raise InputError(f'{path}: motion calibration has {motion.step_scale.size} joints, '
                         f'expected {dim}')
    return motion


CALIBRATION_FIELDS = ('joint_names', 'mu', 'sigma', 'scores', 'velocity_scale', 'q', 'alpha', 'dt')


def _joint_names(path: str, value: np.ndarray) -> tuple[str, ...]:
    """Non-empty, unique joint names from a 1-D string array."""
    if value.ndim != 1 or value.size == 0 or value.dtype.kind != 'U':
        raise InputError(f"{path}: field 'joint_names' must be a non-empty 1-D array of names")
    names = tuple(str(n) for n in value)
    if len(set(names)) != len(names) or not all(names):
        raise InputError(f'{path}: joint names must be unique and non-empty: {list(names)}')
    return names


def _finite_vector(path: str, key: str, value: np.ndarray, dim: int) -> np.ndarray:
    """Return a finite float64 vector: D values per joint, or (scores) any non-empty 1-D array."""
    ok = value.dtype.kind in 'iuf' and value.ndim == 1 and value.size > 0
    if ok and key != 'scores':
        ok = value.shape == (dim,)
    if not ok or not np.all(np.isfinite(value)):
        want = 'a non-empty 1-D array of finite numbers' if key == 'scores' else \
            f'{dim} finite values (one per joint)'
        raise InputError(f'{path}: field {key!r} must be {want}, got {value.dtype} {value.shape}')
    return value.astype(np.float64)


def _finite_scalar(path: str, key: str, value: np.ndarray) -> float:
    if value.dtype.kind not in 'iuf' or value.shape != () or not np.isfinite(value):
        raise InputError(f'{path}: field {key!r} must be one finite number, got {value!r}')
    return float(value)


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64)]


def contract_to_params(contract: Contract, calibration_file: str | None = None) -> dict:
    """ROS parameters of the safety_filter node for this contract."""
    params = {
        'joint_names': list(contract.joint_names),
        'lower': _floats(contract.lower),
        'upper': _floats(contract.upper),
        'max_velocity': _floats(contract.max_velocity),
        'control_rate_hz': float(1.0 / contract.dt),
        'velocity_scaling': contract.velocity_scaling,
        'mode': contract.mode,
    }
    if contract.max_acceleration is not None:
        params['max_acceleration'] = _floats(contract.max_acceleration)
    if contract.max_deceleration is not None:
        params['max_deceleration'] = _floats(contract.max_deceleration)
    params.update(optional_limit_params(contract))
    if calibration_file is not None:
        params['calibration_file'] = calibration_file
    return params


def contract_from_params(params: dict, source: str = 'parameters') -> Contract:
    """Build the contract from safety_filter parameters (YAML or live ROS parameters)."""
    missing = [k for k in ('joint_names', 'lower', 'upper', 'max_velocity', 'control_rate_hz')
               if k not in params]
    if missing:
        raise InputError(f'{source}: missing parameter(s) {", ".join(missing)}')
    rate = params['control_rate_hz']
    if not isinstance(rate, (int, float)) or not rate > 0:
        raise InputError(f'{source}: control_rate_hz must be a positive number, got {rate!r}')
    acc, dec = params.get('max_acceleration'), params.get('max_deceleration')
    try:
        contract = Contract(joint_names=tuple(params['joint_names']), lower=params['lower'],
                            upper=params['upper'], max_velocity=params['max_velocity'],
                            dt=1.0 / float(rate), max_acceleration=acc if acc else None,
                            velocity_scaling=params.get('velocity_scaling', 'per_joint'),
                            mode=params.get('mode', 'enforce'),
                            max_deceleration=dec if dec else None)
    except (TypeError, ValueError) as exc:
        raise InputError(f'{source}: {exc}') from None
    return with_optional_limits(contract, params, source)


def write_filter_params(path: str, contract: Contract, calibration_file: str | None = None,
                        extra: dict | None = None) -> None:
    """Write `safety_filter: ros__parameters: ...` (extra keys are merged in)."""
    params = contract_to_params(contract, calibration_file)
    params.update(extra or {})
    with open(path, 'w') as fh:
        fh.write('# Generated by `vla-safety calibrate`; the contract parameters are read-only '
                 'in the node.\n')
        yaml.safe_dump({FILTER_NODE: {'ros__parameters': params}}, fh, sort_keys=False,
                       default_flow_style=None, width=100)


def read_node_params(path: str, node: str = FILTER_NODE) -> dict:
    """Return one node's ros__parameters from a ROS 2 parameter file (`/**` entries merged)."""
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError(f'{path}: parameter file not found') from None
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f'{path}: cannot read parameter YAML '
                         f'({str(exc).splitlines()[0]})') from None
    if not isinstance(doc, dict):
        raise InputError(f'{path}: not a ROS 2 parameter file')
    params: dict = {}
    for key in ('/**', node, '/' + node):
        entry = doc.get(key)
        if isinstance(entry, dict) and isinstance(entry.get('ros__parameters'), dict):
            params.update(entry['ros__parameters'])
    if not params:
        raise InputError(f'{path}: no `{node}: ros__parameters:` section')
    return params


def load_filter_params(path: str) -> tuple[Contract, dict]:
    """Contract and raw parameters from a parameter YAML; relative calibration_file resolved."""
    params = read_node_params(path)
    cal = params.get('calibration_file')
    if cal and not os.path.isabs(cal):
        params['calibration_file'] = os.path.join(os.path.dirname(os.path.abspath(path)), cal)
    return contract_from_params(params, path), params


def load_calibration_for(path: str) -> tuple[Contract, CalibrationData]:
    """Contract and calibration data named by a parameter YAML; joint names must agree."""
    contract, params = load_filter_params(path)
    if not params.get('calibration_file'):
        raise InputError(f'{path}: parameter calibration_file is not set')
    cal = CalibrationData.load(params['calibration_file'])
    if cal.joint_names != contract.joint_names:
        raise InputError(f'{params["calibration_file"]}: joint names {list(cal.joint_names)} '
                         f'do not match {path} {list(contract.joint_names)}')
    return contract, cal
