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
Load a checkpoint's action unnormalizer: OpenVLA, OpenVLA-OFT, LeRobot, openpi, our YAML.

Each loader reads only the documented files, picks the statistics the runtime would use, and turns
every unreadable or inconsistent input into a one-line InputError naming the file and field. The
key
is never guessed: no key with several entries, or a missing key, is refused with the keys listed.
"""
from __future__ import annotations

import json
import os

import numpy as np
import yaml

from .errors import InputError
from .execspec import Metadata, metadata_from_params, metadata_to_params, STAT_NAMES
from .params import read_node_params

FORMATS = ('auto', 'openvla', 'openvla-oft', 'lerobot', 'openpi', 'yaml')
OFT_TYPES = {'BOUNDS': 'min_max', 'BOUNDS_Q99': 'quantile'}
OPENPI_TYPES = {'MEAN_STD': 'mean_std', 'QUANTILE': 'quantile'}
OPENPI_STATS = 'norm_stats.json'
LEROBOT_MODES = {'MEAN_STD': 'mean_std', 'MIN_MAX': 'min_max', 'QUANTILES': 'quantile',
                 'QUANTILE10': 'quantile10', 'IDENTITY': 'identity'}
OPENVLA_STATS = ('mean', 'std', 'min', 'max', 'q01', 'q99')
BRIDGE_NODE = 'policy_bridge'
POSTPROCESSOR = 'policy_postprocessor.json'
UNNORMALIZER_STEP = 'unnormalizer_processor'


def _read_json(path: str):
    try:
        with open(path, encoding='utf-8') as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(f'{path}: file not found') from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f'{path}: not valid JSON ({str(exc).splitlines()[0]})') from None


def _read_tensors(path: str, names: list[str]) -> dict[str, np.ndarray]:
    """
    Return the named tensors of a .safetensors file (only those present).

    Other tensors are not read.
    """
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise InputError(f'{path}: reading .safetensors needs the `safetensors` package') from None
    try:
        with safe_open(path, framework='numpy') as fh:
            present = set(fh.keys())
            return {n: np.asarray(fh.get_tensor(n), dtype=np.float64)
                    for n in names if n in present}
    except FileNotFoundError:
        raise InputError(f'{path}: file not found') from None
    except (OSError, SafetensorError, TypeError, ValueError) as exc:
        raise InputError(f'{path}: not a readable safetensors file '
                         f'({str(exc).splitlines()[0]})') from None


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f'{where} must be a JSON object')
    return value


def _vectors(fields: dict, where: str) -> dict[str, np.ndarray]:
    """Statistic name -> finite 1-D float vector, all of one length."""
    out = {}
    for name, value in fields.items():
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f'{where}.{name} must be a list of numbers') from None
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f'{where}.{name} must be a non-empty flat list of numbers, got shape '
                             f'{list(arr.shape)}')
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(f'{where}.{name}[{bad[0]}] is not finite ({arr[bad[0]]})')
        out[name] = arr
    lengths = {name: arr.size for name, arr in out.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f'{where}: statistics have different lengths {lengths}')
    return out


def _select_key(entries: dict, key: str | None, where: str) -> str:
    """
    Return the entry to use: the given key, or the only entry.

    Never a guess, never a `_no_noops` fallback.
    """
    keys = sorted(k for k, v in entries.items() if isinstance(v, dict))
    if key is None:
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise InputError(f'{where}: no statistics entries')
        raise InputError(f'{where}: {len(keys)} entries and no --unnorm-key: ambiguous; '
                         f'available keys: {", ".join(keys)}')
    if key in keys:
        return key
    siblings = [k for k in keys if k.startswith(key) or key.startswith(k)]
    hint = f' (similar: {", ".join(siblings)}; not used automatically)' if siblings else ''
    raise InputError(f'{where}: unnorm key {key!r} not found{hint}; available keys: '
                     f'{", ".join(keys)}')


def _openvla_metadata(entries: dict, key: str | None, mode: str, path: str,
                      field: str) -> Metadata:
    """
    Read one OpenVLA-style `{key: {"action": {...}}}` entry in a bound mode.

    FIELD is where the entries sit in the file (`norm_stats`, or '' at the top level).
    """
    key = _select_key(entries, key, f'{path}: {field}' if field else path)
    entry_where = f'{path}: {field}[{key!r}]'
    action = entries[key].get('action')
    if action is None:
        raise InputError(f"{entry_where} has no 'action' statistics")
    action = _mapping(action, f'{entry_where}.action')
    action_where = f'{entry_where}.action'
    stats = _vectors({n: action[n] for n in OPENVLA_STATS if n in action}, action_where)
    low_name, high_name = STAT_NAMES[mode]
    for name in (low_name, high_name):
        if name not in stats:
            raise InputError(f'{action_where} has no {name!r} (needed by mode {mode!r})')
    dim = stats[low_name].size
    mask = action.get('mask', [True] * dim)
    if not isinstance(mask, list) or len(mask) != dim \
            or not all(isinstance(m, bool) for m in mask):
        raise InputError(f'{action_where}.mask must be a list of {dim} booleans')
    return Metadata(mode=mode, mask=np.array(mask, dtype=bool), low=stats[low_name],
                    high=stats[high_name], key=key, source=action_where).require_valid()


def _openvla_entries(path: str) -> tuple[dict, str, str]:
    """
    Return the `{key: stats}` map of an OpenVLA checkpoint, the file it came from and its field.

    PATH is a checkpoint directory, config.json or statistics file; dataset_statistics.json wins
    over config.json as in the OpenVLA and OFT evaluation scripts.
    """
    if os.path.isdir(path):
        stats_file = os.path.join(path, 'dataset_statistics.json')
        path = stats_file if os.path.isfile(stats_file) else os.path.join(path, 'config.json')
    doc = _mapping(_read_json(path), path)
    if 'norm_stats' in doc:
        return _mapping(doc['norm_stats'], f'{path}: norm_stats'), path, 'norm_stats'
    if os.path.basename(path) == 'config.json':
        raise InputError(f"{path}: no 'norm_stats' (not an OpenVLA config.json)")
    return doc, path, ''


def load_openvla(path: str, unnorm_key: str | None = None) -> Metadata:
    """
    Load OpenVLA statistics: `norm_stats` of config.json or dataset_statistics.json.

    OpenVLA unnormalizes with BOUNDS_Q99 (q01/q99) and the mask.
    """
    entries, source, field = _openvla_entries(path)
    return _openvla_metadata(entries, unnorm_key, 'quantile', source, field)


def load_openvla_oft(path: str, normalization_type: str | None,
                     unnorm_key: str | None = None) -> Metadata:
    """
    Load OpenVLA-OFT statistics: dataset_statistics.json (else config.json).

    OFT unnormalizes with BOUNDS (min/max) or BOUNDS_Q99 (q01/q99), chosen per platform.
    """
    if normalization_type not in OFT_TYPES:
        raise InputError(f'{path}: OpenVLA-OFT needs --normalization-type BOUNDS or BOUNDS_Q99 '
                         '(OFT picks it '
                         f'per platform: LIBERO and Bridge BOUNDS_Q99, ALOHA BOUNDS), got '
                         f'{normalization_type!r}')
    entries, source, field = _openvla_entries(path)
    return _openvla_metadata(entries, unnorm_key, OFT_TYPES[normalization_type], source, field)


def load_openpi(path: str, normalization_type: str | None) -> Metadata:
    """
    Load the action statistics of an openpi checkpoint (`assets/<asset_id>/norm_stats.json`).

    The file is `{"norm_stats": {"actions": {mean, std, q01, q99}, ...}}`; which pair the server
    uses depends on the model config (`use_quantile_norm`: pi0-FAST and pi0.5 QUANTILE, pi0
    MEAN_STD), which the file does not record, so it is required.
    """
    if normalization_type not in OPENPI_TYPES:
        raise InputError(f'{path}: openpi needs --normalization-type MEAN_STD or QUANTILE (the '
                         'model config decides: pi0 MEAN_STD, pi0-FAST and pi0.5 QUANTILE), '
                         f'got {normalization_type!r}')
    if os.path.isdir(path):
        path = os.path.join(path, OPENPI_STATS)
    where = f'{path}: norm_stats.actions'
    stats = _mapping(_mapping(_read_json(path), path).get('norm_stats'), f'{path}: norm_stats')
    actions = _mapping(stats.get('actions'), where)
    mode = OPENPI_TYPES[normalization_type]
    names = STAT_NAMES[mode]
    missing = [n for n in names if n not in actions]
    if missing:
        raise InputError(f'{where} lacks {", ".join(missing)} (needed by {normalization_type})')
    vectors = _vectors({n: actions[n] for n in names}, where)
    low, high = vectors[names[0]], vectors[names[1]]
    fields = {'mean': low, 'std': high} if mode == 'mean_std' else {'low': low, 'high': high}
    return Metadata(mode=mode, mask=np.ones(low.size, dtype=bool), source=path,
                    **fields).require_valid()


def _is_openpi(doc) -> bool:
    """Tell an openpi norm_stats.json (an `actions` entry of statistics) from OpenVLA's."""
    stats = doc.get('norm_stats') if isinstance(doc, dict) else None
    return isinstance(stats, dict) and isinstance(stats.get('actions'), dict) \
        and 'mean' in stats['actions']


def _lerobot_mode(norm_map, where: str) -> str:
    norm_map = _mapping(norm_map, where)
    name = norm_map.get('ACTION')
    if name not in LEROBOT_MODES:
        raise InputError(f'{where}.ACTION must be one of {", ".join(LEROBOT_MODES)}, got {name!r}')
    return LEROBOT_MODES[name]


def _action_feature(features, where: str) -> tuple[str, int | None]:
    """Name and dimension of the single ACTION feature."""
    features = _mapping(features, where)
    actions = [n for n, f in features.items() if isinstance(f, dict) and f.get('type') == 'ACTION']
    if len(actions) != 1:
        raise InputError(f'{where}: expected one feature of type ACTION, found {actions}')
    shape = features[actions[0]].get('shape')
    if shape is None:
        return actions[0], None
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)
            and shape[0] > 0):
        raise InputError(f'{where}.{actions[0]}.shape must be [D] with D > 0, got {shape!r}')
    return actions[0], shape[0]


def _lerobot_metadata(tensor_file: str, prefix: str, mode: str, dim: int | None) -> Metadata:
    """
    Metadata from the `<prefix><stat>` tensors the mode uses.

    A missing one is refused: LeRobot would silently pass the actions through.
    """
    tensors = _read_tensors(tensor_file, [prefix + s for s in STAT_NAMES[mode]])
    stats = _vectors({name[len(prefix):]: value for name, value in tensors.items()},
                     f'{tensor_file}: {prefix.rstrip(".")}')
    for name in STAT_NAMES[mode]:
        if name not in stats:
            raise InputError(f'{tensor_file}: no tensor {prefix + name!r} for mode {mode!r} '
                             f'(LeRobot would pass the actions through un-normalized)')
    size = stats[STAT_NAMES[mode][0]].size
    if dim is not None and size != dim:
        raise InputError(f'{tensor_file}: {prefix}* statistics have {size} values but the ACTION '
                         f'shape is [{dim}]')
    fields = dict(zip(('mean', 'std') if mode == 'mean_std' else ('low', 'high'),
                      (stats[n] for n in STAT_NAMES[mode])))
    return Metadata(mode=mode, mask=np.ones(size, dtype=bool), source=f'{tensor_file} ({prefix}*)',
                    **fields).require_valid()


def _load_lerobot_postprocessor(json_path: str) -> Metadata:
    """Load LeRobot >= 0.4: policy_postprocessor.json's `unnormalizer_processor` and state_file."""
    doc = _mapping(_read_json(json_path), json_path)
    steps = doc.get('steps')
    if not isinstance(steps, list):
        raise InputError(f"{json_path}: field 'steps' must be a list")
    found = [i for i, s in enumerate(steps)
             if isinstance(s, dict) and s.get('registry_name') == UNNORMALIZER_STEP]
    if len(found) != 1:
        names = [s.get('registry_name') for s in steps if isinstance(s, dict)]
        raise InputError(f'{json_path}: expected one step with registry_name '
                         f'{UNNORMALIZER_STEP!r}, '
                         f'found {len(found)} among {names}')
    where = f'{json_path}: steps[{found[0]}]'
    step = steps[found[0]]
    config = _mapping(step.get('config'), f'{where}.config')
    mode = _lerobot_mode(config.get('norm_map'), f'{where}.config.norm_map')
    feature, dim = _action_feature(config.get('features'), f'{where}.config.features')
    state_file = step.get('state_file')
    if mode == 'identity':
        if dim is None:
            raise InputError(f'{where}.config.features.{feature}.shape is needed for mode '
                             'IDENTITY')
        return Metadata(mode='identity', mask=np.zeros(dim, dtype=bool), source=where)
    if not isinstance(state_file, str) or not state_file:
        raise InputError(f'{where}.state_file must name the .safetensors file of the statistics')
    tensor_file = os.path.join(os.path.dirname(os.path.abspath(json_path)), state_file)
    return _lerobot_metadata(tensor_file, feature + '.', mode, dim)


def _load_lerobot_legacy(config_path: str) -> Metadata:
    """
    Load LeRobot 0.3.

    config.json `normalization_mapping` and model.safetensors `unnormalize_outputs` buffers.
    """
    config = _mapping(_read_json(config_path), config_path)
    mode = _lerobot_mode(config.get('normalization_mapping'), f'{config_path}: '
                                                              'normalization_mapping')
    feature, dim = 'action', None
    if 'output_features' in config:
        feature, dim = _action_feature(config['output_features'], f'{config_path}: '
                                                                  'output_features')
    if mode == 'identity':
        if dim is None:
            raise InputError(f'{config_path}: output_features with the ACTION shape is needed for '
                             'mode IDENTITY')
        return Metadata(mode='identity', mask=np.zeros(dim, dtype=bool), source=config_path)
    weights = os.path.join(os.path.dirname(os.path.abspath(config_path)), 'model.safetensors')
    prefix = f'unnormalize_outputs.buffer_{feature.replace(".", "_")}.'
    return _lerobot_metadata(weights, prefix, mode, dim)


def load_lerobot(path: str) -> Metadata:
    """
    Load a LeRobot checkpoint directory (or its policy_postprocessor.json / config.json).

    LeRobot >= 0.4 is tried first, then 0.3.
    """
    if os.path.isdir(path):
        post = os.path.join(path, POSTPROCESSOR)
        return _load_lerobot_postprocessor(post) if os.path.isfile(post) else \
            _load_lerobot_legacy(os.path.join(path, 'config.json'))
    doc = _mapping(_read_json(path), path)
    return _load_lerobot_postprocessor(path) if 'steps' in doc else _load_lerobot_legacy(path)


def load_params_yaml(path: str, node: str = BRIDGE_NODE) -> Metadata:
    """
    Return the unnormalizer a bridge would run with.

    It is read from `policy_bridge: ros__parameters: unnormalizer:` in a parameter file.

    Not validated for finiteness: the check reports non-finite values or inverted ranges as
    cannot_check.
    """
    return metadata_from_params(read_node_params(path, node), source=path)


def write_params_yaml(path: str, meta: Metadata, node: str = BRIDGE_NODE) -> None:
    """Write the metadata as a ROS 2 parameter file for the bridge (nested `unnormalizer:` map)."""
    nested = {name.split('.', 1)[1]: value for name, value in metadata_to_params(meta).items()}
    with open(path, 'w') as fh:
        yaml.safe_dump({node: {'ros__parameters': {'unnormalizer': nested}}}, fh, sort_keys=False,
                       default_flow_style=None, width=100)


def detect_format(path: str, normalization_type: str | None = None) -> str:
    """
    Return the checkpoint format from the files present.

    (and, for OpenVLA, whether OFT's type was given).
    """
    openvla = 'openvla-oft' if normalization_type else 'openvla'
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, POSTPROCESSOR)):
            return 'lerobot'
        if os.path.isfile(os.path.join(path, OPENPI_STATS)):
            return 'openpi'
        if os.path.isfile(os.path.join(path, 'dataset_statistics.json')):
            return openvla
        config = os.path.join(path, 'config.json')
        if not os.path.isfile(config):
            raise InputError(f'{path}: no {POSTPROCESSOR}, dataset_statistics.json or '
                             'config.json: '
                             'not a checkpoint directory')
        path = config
    elif not os.path.exists(path):
        raise InputError(f'{path}: file not found')
    if path.endswith(('.yaml', '.yml')):
        return 'yaml'
    doc = _read_json(path)
    if _is_openpi(doc):
        return 'openpi'
    if isinstance(doc, dict):
        if 'norm_stats' in doc:
            return openvla
        if 'steps' in doc or 'normalization_mapping' in doc:
            return 'lerobot'
        entries = [v for v in doc.values() if isinstance(v, dict)]
        if entries and all('action' in v for v in entries):
            return openvla
    raise InputError(f'{path}: unknown checkpoint metadata (expected OpenVLA norm_stats, LeRobot '
                     'normalization_mapping or policy_postprocessor steps)')


def load_metadata(path: str, fmt: str = 'auto', unnorm_key: str | None = None,
                  normalization_type: str | None = None) -> Metadata:
    """
    Return the checkpoint's action unnormalizer, validated (finite, no inverted range).

    Unreadable or invalid input raises InputError. A constant dimension (q99 == q01) is valid:
    the check compares it exactly.
    """
    if fmt not in FORMATS:
        raise InputError(f'unknown format {fmt!r} (expected one of {", ".join(FORMATS)})')
    if fmt == 'auto':
        fmt = detect_format(path, normalization_type)
    if normalization_type and fmt not in ('openvla-oft', 'openpi'):
        raise InputError(f'{path}: --normalization-type applies to OpenVLA-OFT and openpi '
                         f'checkpoints only (format {fmt})')
    if fmt == 'openpi':
        if unnorm_key:
            raise InputError(f'{path}: an openpi norm_stats.json holds one set of statistics; '
                             'unnorm keys do not apply')
        return load_openpi(path, normalization_type)
    if fmt == 'openvla':
        return load_openvla(path, unnorm_key)
    if fmt == 'openvla-oft':
        return load_openvla_oft(path, normalization_type, unnorm_key)
    if fmt == 'lerobot':
        if unnorm_key:
            raise InputError(f'{path}: a LeRobot checkpoint holds one set of statistics; unnorm '
                             'keys do not apply')
        return load_lerobot(path)
    meta = load_params_yaml(path).require_valid()
    if unnorm_key and meta.key != unnorm_key:
        raise InputError(f'{path}: unnormalizer.key is {meta.key!r}, not {unnorm_key!r}')
    return meta
