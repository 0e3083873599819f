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
ExecSpec: normalization metadata, unnormalizers, activation check, drift certificate.

The same policy weights become a different robot when the unnormalizer changes, so before anything
moves the metadata a deployment runs with is compared with the checkpoint's, and any difference is
quantified in closed form (no inference, no rollout). `mask[j]` follows OpenVLA: True means
dimension j is unnormalized with the statistics, False means it is passed through (the gripper).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

# mode -> names of the two statistics it uses (low/high for bound modes, mean/std for mean_std)
STAT_NAMES = {
    'quantile': ('q01', 'q99'),
    'quantile10': ('q10', 'q90'),
    'min_max': ('min', 'max'),
    'mean_std': ('mean', 'std'),
    'identity': (),
}
MODES = tuple(STAT_NAMES)
# mode -> the Metadata fields holding its two statistics
STAT_FIELDS = {'mean_std': ('mean', 'std'), 'quantile': ('low', 'high'),
               'quantile10': ('low', 'high'), 'min_max': ('low', 'high')}
BOUND_MODES = ('quantile', 'quantile10', 'min_max')
MEAN_STD_RADIUS = 2.0   # a mean_std policy output is a standard score: certify over x in [-2, 2]
DEFAULT_TOL = 1e-6      # a statistic may differ by this fraction of the reference half-range
PARAM_PREFIX = 'unnormalizer.'


def _stat_vector(source: str, name: str, value) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f'{source}: field {name!r} must be a list of numbers') from None
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f'{source}: field {name!r} must be a non-empty flat list of numbers')
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Metadata:
    """One action unnormalizer: mode, the statistics that mode uses, mask, key, names, origin."""

    mode: str
    mask: np.ndarray
    low: np.ndarray | None = None    # q01 / q10 / min, by mode
    high: np.ndarray | None = None   # q99 / q90 / max, by mode
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    key: str | None = None
    names: tuple[str, ...] | None = None
    source: str = 'metadata'

    def __post_init__(self):
        if self.mode not in STAT_NAMES:
            raise InputError(f'{self.source}: unknown normalization mode {self.mode!r} '
                             f'(expected one of {", ".join(MODES)})')
        mask = np.array(self.mask).reshape(-1)
        if mask.size == 0 or mask.dtype != np.bool_:
            raise InputError(f"{self.source}: field 'mask' must be a non-empty list of booleans")
        if self.mode == 'identity':
            mask = np.zeros_like(mask)
        mask.setflags(write=False)
        object.__setattr__(self, 'mask', mask)
        needed = STAT_FIELDS.get(self.mode, ())
        for field_name in ('low', 'high', 'mean', 'std'):
            value = getattr(self, field_name)
            if field_name in needed and value is None:
                raise InputError(f'{self.source}: mode {self.mode!r} needs '
                                 f'{self.stat_label(field_name)}')
            if field_name not in needed:
                object.__setattr__(self, field_name, None)
                continue
            arr = _stat_vector(self.source, self.stat_label(field_name), value)
            if arr.size != mask.size:
                raise InputError(f'{self.source}: field {self.stat_label(field_name)!r} has '
                                 f'{arr.size} '
                                 f'values but mask has {mask.size}')
            object.__setattr__(self, field_name, arr)
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(names) != mask.size:
                raise InputError(f"{self.source}: field 'names' has {len(names)} entries, "
                                 f'expected {mask.size}')
            object.__setattr__(self, 'names', names)

    @property
    def dim(self) -> int:
        return int(self.mask.size)

    def stat_label(self, field_name: str) -> str:
        """
        Return the checkpoint's name for a field in this mode.

        (low -> 'q01' in quantile mode).
        """
        pair = STAT_NAMES[self.mode]
        index = {'low': 0, 'mean': 0, 'high': 1, 'std': 1}[field_name]
        return pair[index] if pair else field_name

    def stats(self) -> dict[str, np.ndarray]:
        """Return the statistics this mode uses, by field name (empty for identity)."""
        return {k: getattr(self, k) for k in ('low', 'high', 'mean', 'std')
                if getattr(self, k) is not None}

    def problems(self) -> list[str]:
        """
        Non-finite statistics anywhere and inverted ranges on normalized dims, one line each.

        A constant dimension (q99 == q01, std == 0: e.g. a gripper that never moved) is valid: it
        unnormalizes to the constant, as the policy's runtime does, and the check compares it
        exactly.
        """
        found = []
        for field_name, arr in self.stats().items():
            for j in np.flatnonzero(~np.isfinite(arr)):
                found.append(f'{self.source}: {self.stat_label(field_name)}[{j}] is not finite '
                             f'({arr[j]})')
        if found:
            return found
        if self.mode in BOUND_MODES:
            for j in np.flatnonzero(self.mask & (self.high < self.low)):
                found.append(f'{self.source}: {self.stat_label("high")}[{j}] = {self.high[j]:.9g} '
                             '< '
                             f'{self.stat_label("low")}[{j}] = {self.low[j]:.9g} (inverted range)')
        elif self.mode == 'mean_std':
            for j in np.flatnonzero(self.mask & (self.std < 0)):
                found.append(f'{self.source}: std[{j}] = {self.std[j]:.9g} is negative')
        return found

    def require_valid(self) -> 'Metadata':
        """
        Raise InputError naming the first non-finite statistic or inverted range.

        Return self.
        """
        found = self.problems()
        if found:
            more = f' (and {len(found) - 1} more)' if len(found) > 1 else ''
            raise InputError(found[0] + more)
        return self


def unnormalize(meta: Metadata, x) -> np.ndarray:
    """Policy output in normalized units -> action units, for one action [D] or a chunk [T, D]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[-1] != meta.dim:
        raise InputError(f'{meta.source}: action of shape {list(x.shape)} does not match '
                         f'{meta.dim} dimensions (expected [{meta.dim}] or [T, {meta.dim}])')
    if meta.mode in BOUND_MODES:
        out = 0.5 * (x + 1.0) * (meta.high - meta.low) + meta.low
    elif meta.mode == 'mean_std':
        out = x * meta.std + meta.mean
    else:
        return x.copy()
    return np.where(meta.mask, out, x)


def normalize(meta: Metadata, a) -> np.ndarray:
    """
    Map action units to the policy's normalized units (the inverse of unnormalize).

    E.g. to replay a demonstration as the raw outputs a policy trained on these statistics
    would produce.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim not in (1, 2) or a.shape[-1] != meta.dim:
        raise InputError(f'{meta.source}: action of shape {list(a.shape)} does not match '
                         f'{meta.dim} dimensions (expected [{meta.dim}] or [T, {meta.dim}])')
    slope, offset = _affine(meta.require_valid())
    constant = np.flatnonzero(slope == 0)
    if constant.size:
        raise InputError(f'{meta.source}: dims {_dims(constant)} are constant in the statistics; '
                         'a value in action units has no normalized preimage there')
    return (a - offset) / slope


def _affine(meta: Metadata) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension slope and offset of the unnormalizer (a = slope * x + offset)."""
    slope, offset = np.ones(meta.dim), np.zeros(meta.dim)
    if meta.mode in BOUND_MODES:
        slope = np.where(meta.mask, (meta.high - meta.low) / 2.0, 1.0)
        offset = np.where(meta.mask, (meta.high + meta.low) / 2.0, 0.0)
    elif meta.mode == 'mean_std':
        slope = np.where(meta.mask, meta.std, 1.0)
        offset = np.where(meta.mask, meta.mean, 0.0)
    return slope, offset


def expected_abs_affine(a, b) -> np.ndarray:
    """
    Return closed form of E_{u~U[-1,1]} |a u + b|, elementwise.

    |b| if |b| >= |a|, else (a²+b²)/(2|a|).
    """
    a, b = np.abs(np.asarray(a, dtype=np.float64)), np.abs(np.asarray(b, dtype=np.float64))
    crossing = b < a   # the line changes sign inside [-1, 1]
    safe_a = np.where(crossing, a, 1.0)
    return np.where(crossing, (a * a + b * b) / (2.0 * safe_a), b)


@dataclass(frozen=True)
class Certificate:
    """
    Closed-form drift of the deployed unnormalizer from the reference, per dimension.

    deployed(x) = reference(x) + half_range * ((scale - 1) u + shift), u = x / radius ~ U[-1, 1];
    per_dim_drift = E|(scale - 1) u + shift| in reference half-ranges. `mask` marks the dims
    normalized in either unnormalizer; mean_drift and max_drift are taken over them.
    """

    mode: str
    mask: np.ndarray
    radius: float
    half_range: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    per_dim_drift: np.ndarray
    mean_drift: float
    max_drift: float

    @property
    def per_dim_drift_abs(self) -> np.ndarray:
        """E|deployed(x) - reference(x)| in action units."""
        return self.half_range * self.per_dim_drift


def drift_certificate(reference: Metadata, deployed: Metadata) -> Certificate:
    """
    Return the drift certificate for any pair of modes and masks of equal dimension.

    A dimension constant in the reference (half-range 0) has no relative scale: its drift is 0 when
    the deployed unnormalizer is the same constant and infinite otherwise (exact comparison).
    """
    if reference.dim != deployed.dim:
        raise InputError(f'cannot certify {deployed.source} ({deployed.dim} dims) against '
                         f'{reference.source} ({reference.dim} dims)')
    radius = MEAN_STD_RADIUS if reference.mode == 'mean_std' else 1.0
    ref_slope, ref_offset = _affine(reference)
    dep_slope, dep_offset = _affine(deployed)
    half_range = ref_slope * radius
    constant = half_range == 0
    unit = np.where(constant, 1.0, half_range)
    scale = np.where(constant, np.where(dep_slope == 0, 1.0, np.inf), dep_slope * radius / unit)
    offset_delta = dep_offset - ref_offset
    shift = np.where(constant, np.where(offset_delta == 0, 0.0, np.copysign(np.inf, offset_delta)),
                     offset_delta / unit)
    exact = (dep_slope == 0) & (offset_delta == 0)
    regular = expected_abs_affine(np.where(constant, 0.0, scale - 1.0),
                                  np.where(constant, 0.0, shift))
    drift = np.where(constant, np.where(exact, 0.0, np.inf), regular)
    mask = reference.mask | deployed.mask
    certified = drift[mask]
    return Certificate(mode=reference.mode, mask=mask, radius=radius, half_range=half_range,
                       scale=scale, shift=shift, per_dim_drift=drift,
                       mean_drift=float(certified.mean()) if certified.size else 0.0,
                       max_drift=float(certified.max()) if certified.size else 0.0)


def _dims(indices) -> str:
    return ','.join(str(int(j)) for j in indices)


def name_differences(reference: tuple, deployed, what: str) -> list[str]:
    """
    Why `deployed` dimension names are not the checkpoint's, in order (empty when equal).

    The same names in another order are called a permutation: dimension j would drive another
    joint.
    """
    deployed = tuple(deployed)
    if deployed == tuple(reference):
        return []
    if sorted(deployed) == sorted(reference):
        return [f'dimension order differs (a permutation): checkpoint {list(reference)}, '
                f'{what} {list(deployed)}']
    return [f'dimension names differ: checkpoint {list(reference)}, {what} {list(deployed)}']


def _differences(reference: Metadata, deployed: Metadata, tol: float) -> list[str]:
    """Why the deployed unnormalizer is not the reference one (empty when identical within tol)."""
    reasons = []
    if reference.key and deployed.key and reference.key != deployed.key:
        reasons.append(f'unnorm key differs: checkpoint {reference.key!r}, deployed '
                       f'{deployed.key!r}')
    if reference.mode != deployed.mode:
        reasons.append(f'mode differs: checkpoint {reference.mode!r}, deployed {deployed.mode!r}')
    if reference.dim != deployed.dim:
        reasons.append(f'dimension differs: checkpoint {reference.dim}, deployed {deployed.dim}')
        return reasons
    if reference.names and deployed.names:
        reasons += name_differences(reference.names, deployed.names, 'deployed')
    if not np.array_equal(reference.mask, deployed.mask):
        diff = np.flatnonzero(reference.mask != deployed.mask)
        reasons.append(f'mask differs on dims {_dims(diff)}: checkpoint '
                       f'{reference.mask.tolist()}, '
                       f'deployed {deployed.mask.tolist()}')
    if reference.mode != deployed.mode:
        return reasons
    both = reference.mask & deployed.mask
    radius = MEAN_STD_RADIUS if reference.mode == 'mean_std' else 1.0
    allowed = tol * np.abs(_affine(reference)[0]) * radius
    for field_name, ref_values in reference.stats().items():
        delta = np.abs(getattr(deployed, field_name) - ref_values)
        bad = np.flatnonzero(both & (delta > allowed))
        if bad.size:
            reasons.append(f'{reference.stat_label(field_name)} differs on dims {_dims(bad)} '
                           f'(max |difference| {delta[bad].max():.6g}; tolerance {tol:g} of the '
                           'half-range)')
    return reasons


@dataclass(frozen=True)
class CheckResult:
    """Outcome of the activation check: verdict, one-line reasons, certificate when dims agree."""

    verdict: str
    reasons: list
    certificate: Certificate | None = None
    reference: Metadata | None = None
    deployed: Metadata | None = None
    notes: tuple = ()    # what was checked beyond the statistics, or why it was not
    unnormalization: str = 'bridge'   # who applies the statistics: 'bridge' or 'server'

    def to_report(self) -> dict:
        """JSON-serializable report (verdict, reasons, mode, mask, drift, scale, shift, ...)."""
        cert = self.certificate

        def floats(values):
            return None if values is None else [float(v) for v in values]

        def describe(meta):
            if meta is None:
                return None
            return {'source': meta.source, 'key': meta.key, 'mode': meta.mode, 'dim': meta.dim,
                    'mask': meta.mask.tolist()}
        reference = self.reference
        return {
            'verdict': self.verdict,
            'reasons': list(self.reasons),
            'mode': self.reference.mode if self.reference else None,
            'mask': cert.mask.tolist() if cert else (reference.mask.tolist() if reference
                                                     else None),
            'per_dim_drift': floats(cert.per_dim_drift) if cert else None,
            'per_dim_drift_abs': floats(cert.per_dim_drift_abs) if cert else None,
            'mean_drift': cert.mean_drift if cert else None,
            'max_drift': cert.max_drift if cert else None,
            'scale': floats(cert.scale) if cert else None,
            'shift': floats(cert.shift) if cert else None,
            'half_range': floats(cert.half_range) if cert else None,
            'radius': cert.radius if cert else None,
            'reference': describe(self.reference),
            'deployed': describe(self.deployed),
            'notes': list(self.notes),
            'unnormalization': self.unnormalization,
        }


def check_metadata(reference: Metadata, deployed: Metadata,
                   tol: float = DEFAULT_TOL) -> CheckResult:
    """
    Compare the deployed unnormalizer with the checkpoint's.

    Identical, mismatch or cannot_check.
    """
    if not (np.isfinite(tol) and tol >= 0):
        raise InputError(f'tolerance must be a finite number >= 0, got {tol!r}')
    invalid = reference.problems() + deployed.problems()
    if invalid:
        return CheckResult('cannot_check', invalid, None, reference, deployed)
    reasons = _differences(reference, deployed, tol)
    certificate = drift_certificate(reference, deployed) if reference.dim == deployed.dim else None
    return CheckResult('mismatch' if reasons else 'identical', reasons, certificate, reference,
                       deployed, (_names_note(reference, deployed),))


def _names_note(reference: Metadata, deployed: Metadata) -> str:
    """Whether the dimension names could be compared (only where both sides carry them)."""
    if not reference.names:
        return 'dimension names: not checked (the checkpoint names none)'
    if not deployed.names:
        return 'dimension names: not checked (the deployed unnormalizer names none)'
    return 'dimension names: checked'


def check_loaded(reference: Metadata, loaded: dict, outputs_normalized: bool,
                 tol: float = DEFAULT_TOL) -> CheckResult:
    """
    Check what a bridge loaded at its last configure against the checkpoint.

    `loaded` is the bridge's report: `configured`, `parameters` (its `unnormalizer.*` values),
    `normalized_input`, `joint_names` (the order its actions are published in) and
    `pending_changes` (parameters changed since). `outputs_normalized` says whether the source
    emits normalized policy outputs, i.e. whether the bridge must unnormalize. When it does
    not and the bridge runs identity against a checkpoint with statistics, the policy server
    unnormalizes: only the bridge's half is checked and the result says so (`unnormalization`
    'server', the first note). `source_kind`, `server_uri` and `server_unnorm_key` (the key a
    REST bridge sends) come with that report too.
    """
    source = str(loaded.get('source', 'bridge'))
    if not loaded.get('configured'):
        return CheckResult('cannot_check', [f'{source} is not configured (nothing loaded to '
                                            'check)'])
    try:
        deployed = metadata_from_params(loaded.get('parameters') or {}, f'{source} (loaded)')
    except InputError as exc:
        return CheckResult('cannot_check', [str(exc)], reference=reference)
    if server_unnormalizes(reference, deployed, outputs_normalized):
        return _check_delegated(reference, deployed, loaded, source)
    result = check_metadata(reference, deployed, tol)
    if result.verdict == 'cannot_check':
        return result
    reasons, notes = list(result.reasons), list(result.notes)
    reasons += _pending_reasons(loaded, source)
    reasons += _normalization_reasons(reference, bool(loaded.get('normalized_input')),
                                      outputs_normalized, source, notes)
    reasons += _joint_name_reasons(reference, list(loaded.get('joint_names') or []), source, notes)
    verdict = 'mismatch' if reasons else 'identical'
    return CheckResult(verdict, reasons, result.certificate, reference, deployed, tuple(notes))


def _pending_reasons(loaded: dict, source: str) -> list[str]:
    """Parameters changed since the bridge's configure: what it runs is not what it shows."""
    pending = list(loaded.get('pending_changes') or [])
    if not pending:
        return []
    return [f'{source}: {", ".join(pending)} changed since configure (not loaded)']


def server_unnormalizes(reference: Metadata, deployed: Metadata,
                        outputs_normalized: bool) -> bool:
    """
    Tell whether the policy server applies the checkpoint's statistics, not the bridge.

    That is the declared case `policy_outputs_normalized` false (openpi servers unnormalize
    inside the server, OpenVLA's REST server with its `unnorm_key`) with a checkpoint that has
    statistics and a bridge that passes actions through (identity).
    """
    return (not outputs_normalized and reference.mode != 'identity'
            and deployed.mode == 'identity')


def _check_delegated(reference: Metadata, deployed: Metadata, loaded: dict,
                     source: str) -> CheckResult:
    """
    Check the bridge's half of a deployment whose policy server unnormalizes.

    The statistics a server applies never cross the wire (openpi's metadata frame carries the
    training config's `policy_metadata`, not its norm stats; OpenVLA's REST server sends
    nothing), so they are stated as unverified. What is checked: the bridge passes actions
    through, does not unnormalize, publishes the checkpoint's dimensions in its order, and
    asks a REST server for the checkpoint's key.
    """
    invalid = reference.problems()
    if invalid:
        return CheckResult('cannot_check', invalid, None, reference, deployed)
    where = f' at {loaded["server_uri"]}' if loaded.get('server_uri') else ''
    notes = [f'unnormalization: delegated to the policy server{where} '
             "(policy_outputs_normalized false): it must apply the checkpoint's "
             f'{reference.mode} statistics; NOT verified here (no drift certificate); '
             'the bridge passes actions through (identity: checked)']
    reasons = _pending_reasons(loaded, source)
    if deployed.dim != reference.dim:
        reasons.append(f'dimension differs: checkpoint {reference.dim}, {source} '
                       f'{deployed.dim}')
    if loaded.get('normalized_input'):
        reasons.append(f'{source}: normalized_input is true, but the policy server returns '
                       'actions in action units (policy_outputs_normalized false)')
    reasons += _server_key_reasons(reference, loaded, source, notes)
    reasons += _joint_name_reasons(reference, list(loaded.get('joint_names') or []), source,
                                   notes)
    return CheckResult('mismatch' if reasons else 'identical', reasons, None, reference,
                       deployed, tuple(notes), unnormalization='server')


def _server_key_reasons(reference: Metadata, loaded: dict, source: str,
                        notes: list) -> list[str]:
    """
    Whether the bridge asks a REST server for the checkpoint's statistics key.

    A sibling key is the classic silent failure (one dataset's statistics on another's policy);
    a REST bridge that sends no key leaves the choice to the server, which is refused too.
    """
    sent = loaded.get('server_unnorm_key') or None
    if loaded.get('source_kind') != 'openvla_rest':
        notes.append('server unnorm_key: not applicable (the openpi protocol sends none; '
                     "the server reads its checkpoint's norm stats)")
        return []
    if not reference.key:
        notes.append('server unnorm_key: not checked (the checkpoint names no key)')
        return []
    if sent is None:
        return [f'{source} sends no unnorm_key: the server would choose the statistics; set '
                f"unnorm_key to the checkpoint's {reference.key!r}"]
    if sent != reference.key:
        return [f"{source} asks the server for unnorm_key {sent!r}, the checkpoint's is "
                f'{reference.key!r}']
    notes.append(f'server unnorm_key: checked ({sent!r}; the server must honour it)')
    return []


def _normalization_reasons(reference: Metadata, normalized_input: bool, outputs_normalized: bool,
                           source: str, notes: list) -> list[str]:
    """Whether the bridge unnormalizes exactly when the source's outputs are normalized."""
    if reference.mode == 'identity':
        notes.append('normalized_input: not checked (identity unnormalizer: no-op either way)')
        return []
    if normalized_input == outputs_normalized:
        notes.append(f'normalized_input: checked ({str(normalized_input).lower()})')
        return []
    if outputs_normalized:
        return [f'{source}: normalized_input is false, but the policy outputs normalized actions '
                f'(mode {reference.mode}): they would reach the arm un-unnormalized']
    return [f'{source}: normalized_input is true, but the source emits actions in action units: '
            'they would be unnormalized a second time']


def _joint_name_reasons(reference: Metadata, joint_names: list, source: str,
                        notes: list) -> list[str]:
    """Return the bridge's published joint order against the checkpoint's dimension names."""
    if len(joint_names) != reference.dim:
        return [f"{source} publishes {len(joint_names)} joints for the checkpoint's "
                f'{reference.dim} action dimensions']
    if not reference.names:
        return []
    found = name_differences(reference.names, joint_names, f'{source} joint_names')
    if not found:
        notes.append("joint order: checked (joint_names in the checkpoint's order)")
    return found


def metadata_to_params(meta: Metadata) -> dict:
    """
    Return the bridge's ROS parameters for this unnormalizer.

    Flat dotted names, flat double/bool arrays.
    """
    params = {PARAM_PREFIX + 'mode': meta.mode, PARAM_PREFIX + 'dim': meta.dim,
              PARAM_PREFIX + 'mask': [bool(m) for m in meta.mask]}
    if meta.key:
        params[PARAM_PREFIX + 'key'] = meta.key
    if meta.names:
        params[PARAM_PREFIX + 'names'] = list(meta.names)
    for field_name, values in meta.stats().items():
        params[PARAM_PREFIX + field_name] = [float(v) for v in values]
    return params


def flatten_params(params: dict, prefix: str = '') -> dict:
    """Nested parameter maps (as in a YAML file) -> dotted names (as ROS declares them)."""
    flat = {}
    for name, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten_params(value, f'{prefix}{name}.'))
        else:
            flat[f'{prefix}{name}'] = value
    return flat


def _is_number_list(values) -> bool:
    """Tell whether a parameter value is a list of numbers (bools are not numbers here)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, '__len__'):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def metadata_from_params(params: dict, source: str = 'parameters') -> Metadata:
    """
    Metadata from `unnormalizer.*` parameters (dotted or nested); other parameters are ignored.

    Structural errors raise InputError; non-finite or degenerate values are left for the check.
    """
    flat = {k[len(PARAM_PREFIX):]: v for k, v in flatten_params(params).items()
            if k.startswith(PARAM_PREFIX)}
    if 'mode' not in flat:
        raise InputError(f'{source}: missing parameter {PARAM_PREFIX}mode')
    mode = flat['mode']
    if not isinstance(mode, str):
        raise InputError(f'{source}: parameter {PARAM_PREFIX}mode must be a string, got {mode!r}')
    for name in ('low', 'high', 'mean', 'std'):
        values = flat.get(name)
        if values is not None and not _is_number_list(values):
            raise InputError(f'{source}: parameter {PARAM_PREFIX}{name} must be a list of numbers')
    dim = flat.get('dim')
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise InputError(f'{source}: parameter {PARAM_PREFIX}dim must be a positive integer, got '
                         f'{dim!r}')
    mask = flat.get('mask')
    if mask is None:
        sizes = [len(flat[n]) for n in ('low', 'high', 'mean', 'std', 'names')
                 if flat.get(n) is not None]
        size = dim if dim is not None else (sizes[0] if sizes else None)
        if size is None:
            raise InputError(f'{source}: set {PARAM_PREFIX}dim or {PARAM_PREFIX}mask to give the '
                             'dimension')
        mask = [mode != 'identity'] * size
    elif isinstance(mask, (str, bytes)) or not all(isinstance(m, bool) for m in mask):
        raise InputError(f'{source}: parameter {PARAM_PREFIX}mask must be a list of booleans')
    if dim is not None and len(mask) != dim:
        raise InputError(f'{source}: {PARAM_PREFIX}mask has {len(mask)} entries but '
                         f'{PARAM_PREFIX}dim is {dim}')
    key = flat.get('key')
    if key is not None and not isinstance(key, str):
        raise InputError(f'{source}: parameter {PARAM_PREFIX}key must be a string, got {key!r}')
    names = flat.get('names')
    if names is not None and (isinstance(names, str)
                              or not all(isinstance(n, str) for n in names)):
        raise InputError(f'{source}: parameter {PARAM_PREFIX}names must be a list of strings')
    return Metadata(mode=mode, mask=np.array(list(mask), dtype=bool), low=flat.get('low'),
                    high=flat.get('high'), mean=flat.get('mean'), std=flat.get('std'),
                    key=key or None, names=tuple(names) if names else None, source=source)
