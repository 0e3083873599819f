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

"""Checkpoint metadata loaders on fixtures of each documented layout and real OpenVLA stats."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file
from vla_safety_filter.core.checkpoints import (detect_format, load_metadata, load_params_yaml,
                                                write_params_yaml)
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.execspec import check_metadata


@pytest.fixture(scope='module')
def stats_file(data_file):
    """Return the real OpenVLA action statistics (bridge_orig and fractal keys)."""
    return data_file('openvla_oxe_bridge_orig_fractal_action_stats.json')


@pytest.fixture
def real_stats(stats_file):
    """Return `() -> dict`: a fresh copy of the real statistics (tests edit their copy)."""
    def load() -> dict:
        with open(stats_file) as fh:
            return json.load(fh)
    return load


def write_json(path, doc) -> str:
    with open(path, 'w') as fh:
        json.dump(doc, fh)
    return str(path)


@pytest.fixture
def openvla_dir(real_stats):
    """Return `(folder, norm_stats=real) -> folder`, an OpenVLA HF checkpoint directory."""
    def write(folder, norm_stats=None) -> str:
        write_json(folder / 'config.json', {'model_type': 'openvla', 'n_action_bins': 256,
                                            'norm_stats': norm_stats or real_stats()})
        return str(folder)
    return write


# ---- OpenVLA
# ---------------------------------------------------------------------------------------

def test_openvla_config_json_gives_quantile_q01_q99_with_gripper_mask(tmp_path, openvla_dir,
                                                                      real_stats):
    ckpt = openvla_dir(tmp_path)
    assert detect_format(ckpt) == 'openvla'
    meta = load_metadata(ckpt, unnorm_key='bridge_orig')
    stats = real_stats()['bridge_orig']['action']
    assert meta.mode == 'quantile' and meta.key == 'bridge_orig' and meta.dim == 7
    np.testing.assert_array_equal(meta.low, stats['q01'])
    np.testing.assert_array_equal(meta.high, stats['q99'])
    assert meta.mask.tolist() == [True] * 6 + [False]
    assert 'config.json' in meta.source and "norm_stats['bridge_orig']" in meta.source


def test_openvla_statistics_file_and_single_entry_needs_no_key(tmp_path, stats_file, real_stats):
    fractal = {'fractal20220817_data': real_stats()['fractal20220817_data']}
    single = write_json(tmp_path / 'dataset_statistics.json', fractal)
    assert load_metadata(single).key == 'fractal20220817_data'
    assert load_metadata(str(tmp_path), 'openvla').key == 'fractal20220817_data'
    fractal = load_metadata(stats_file, unnorm_key='fractal20220817_data')
    assert fractal.high[3] == pytest.approx(0.5892666035890578)


def test_openvla_dataset_statistics_json_wins_over_config_json(tmp_path, openvla_dir, real_stats):
    stats = real_stats()
    openvla_dir(tmp_path, {'bridge_orig': stats['bridge_orig']})
    write_json(tmp_path / 'dataset_statistics.json',
               {'bridge_orig': stats['fractal20220817_data']})
    meta = load_metadata(str(tmp_path), unnorm_key='bridge_orig')
    assert 'dataset_statistics.json' in meta.source
    np.testing.assert_array_equal(meta.low, stats['fractal20220817_data']['action']['q01'])


def test_missing_mask_means_every_dimension_is_normalized(tmp_path, real_stats):
    action = dict(real_stats()['bridge_orig']['action'])
    del action['mask']
    path = write_json(tmp_path / 'stats.json', {'k': {'action': action}})
    assert load_metadata(path).mask.all()


def test_ambiguous_key_is_refused_with_the_available_keys(tmp_path, openvla_dir):
    with pytest.raises(InputError, match='2 entries and no --unnorm-key: ambiguous; '
                                         'available keys: bridge_orig, fractal20220817_data'):
        load_metadata(openvla_dir(tmp_path))


def test_missing_key_never_falls_back_to_a_no_noops_sibling(tmp_path, openvla_dir, real_stats):
    stats = real_stats()
    ckpt = openvla_dir(tmp_path, {'libero_goal_no_noops': stats['bridge_orig'],
                                  'libero_10_no_noops': stats['fractal20220817_data']})
    with pytest.raises(InputError, match=r"unnorm key 'libero_goal' not found \(similar: "
                                         r'libero_goal_no_noops; '
                                         r'not used automatically\); available keys: '
                                         r'libero_10_no_noops, libero_goal_no_noops'):
        load_metadata(ckpt, unnorm_key='libero_goal')
    with pytest.raises(InputError, match="'nope' not found; available keys"):
        load_metadata(ckpt, unnorm_key='nope')


@pytest.mark.parametrize('edit, message', [
    (lambda a: a.pop('q99'), r"\['k'\]\.action has no 'q99'"),
    (lambda a: a.__setitem__('q01', a['q01'][:6]), 'statistics have different lengths'),
    (lambda a: a.__setitem__('std', [float('nan')] * 7), r"\['k'\]\.action\.std\[0\] is not "
                                                         r'finite'),
    (lambda a: a.__setitem__('q99', [v - 1.0 for v in a['q01']]),
     r"\['k'\]\.action: q99\[0\] = .* < q01\[0\] = .* \(inverted range\)"),
    (lambda a: a.__setitem__('mask', [1] * 7), r'action\.mask must be a list of 7 booleans'),
    (lambda a: a.__setitem__('q01', 'abc'), r'action\.q01 must be a list of numbers'),
])
def test_bad_openvla_entries_name_the_file_and_field(tmp_path, edit, message, real_stats):
    action = dict(real_stats()['bridge_orig']['action'])
    edit(action)
    path = write_json(tmp_path / 'stats.json', {'k': {'action': action}})
    with pytest.raises(InputError, match=message) as info:
        load_metadata(path)
    assert str(info.value).startswith(path) and '\n' not in str(info.value)


def test_a_constant_dimension_loads_and_unnormalizes_to_its_constant(tmp_path, real_stats):
    action = dict(real_stats()['bridge_orig']['action'])
    action['q99'] = [action['q01'][0], *action['q99'][1:]]   # dimension 0 never moved
    meta = load_metadata(write_json(tmp_path / 'stats.json', {'k': {'action': action}}))
    assert meta.low[0] == meta.high[0] == action['q01'][0]


def test_entry_without_action_and_nan_in_json_are_refused(tmp_path, real_stats):
    path = write_json(tmp_path / 'config.json', {'norm_stats': {'k': {'proprio': {}}}})
    with pytest.raises(InputError, match=r"norm_stats\['k'\] has no 'action' statistics"):
        load_metadata(path)
    nan_file = tmp_path / 'nan.json'
    nan_file.write_text(json.dumps(real_stats()).replace('0.028309678435325586', 'NaN'))
    with pytest.raises(InputError, match=r"\['bridge_orig'\]\.action\.q99\[0\] is not finite"):
        load_metadata(str(nan_file), unnorm_key='bridge_orig')


def test_corrupt_truncated_and_missing_files(tmp_path, stats_file, real_stats):
    text = json.dumps({'norm_stats': real_stats()})
    (tmp_path / 'config.json').write_text(text[:len(text) // 2])
    with pytest.raises(InputError, match='config.json: not valid JSON'):
        load_metadata(str(tmp_path), 'openvla', 'bridge_orig')
    with pytest.raises(InputError, match='file not found'):
        load_metadata(str(tmp_path / 'absent.json'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(InputError, match='not a checkpoint directory'):
        load_metadata(str(tmp_path / 'empty'))
    with pytest.raises(InputError, match='unknown checkpoint metadata'):
        load_metadata(write_json(tmp_path / 'x.json', [1, 2]))
    with pytest.raises(InputError, match="unknown format 'onnx'"):
        load_metadata(stats_file, 'onnx')


# ---- OpenVLA-OFT
# -----------------------------------------------------------------------------------

def test_oft_bounds_uses_min_max_and_bounds_q99_uses_quantiles(tmp_path, real_stats):
    write_json(tmp_path / 'dataset_statistics.json', real_stats())
    stats = real_stats()['bridge_orig']['action']
    assert detect_format(str(tmp_path), 'BOUNDS') == 'openvla-oft'
    bounds = load_metadata(str(tmp_path), unnorm_key='bridge_orig', normalization_type='BOUNDS')
    assert bounds.mode == 'min_max'
    np.testing.assert_array_equal(bounds.low, stats['min'])
    np.testing.assert_array_equal(bounds.high, stats['max'])
    q99 = load_metadata(str(tmp_path), 'openvla-oft', 'bridge_orig', 'BOUNDS_Q99')
    assert q99.mode == 'quantile'
    openvla = load_metadata(str(tmp_path), 'openvla', 'bridge_orig')
    assert check_metadata(q99, openvla).verdict == 'identical'


def test_oft_without_statistics_file_uses_config_norm_stats(tmp_path, openvla_dir):
    ckpt = openvla_dir(tmp_path)
    meta = load_metadata(ckpt, 'openvla-oft', 'fractal20220817_data', 'BOUNDS_Q99')
    assert 'config.json' in meta.source


def test_oft_needs_an_explicit_normalization_type_and_others_refuse_it(tmp_path, openvla_dir):
    ckpt = openvla_dir(tmp_path)
    with pytest.raises(InputError, match='needs --normalization-type BOUNDS or BOUNDS_Q99'):
        load_metadata(ckpt, 'openvla-oft', 'bridge_orig')
    with pytest.raises(InputError, match='applies to OpenVLA-OFT and openpi checkpoints only'):
        load_metadata(ckpt, 'openvla', 'bridge_orig', 'BOUNDS')


# ---- LeRobot >= 0.4
# --------------------------------------------------------------------------------

ALOHA_MEAN = np.linspace(-0.5, 0.5, 14).astype(np.float32)
ALOHA_STD = np.linspace(0.1, 0.8, 14).astype(np.float32)


def lerobot_dir(tmp_path, norm='MEAN_STD', tensors=None, step_index=2, extra_config=None) -> str:
    """policy_postprocessor.json (unnormalizer at a varying step index) and its state_file."""
    state_file = f'policy_postprocessor_step_{step_index}_unnormalizer_processor.safetensors'
    step = {'registry_name': 'unnormalizer_processor', 'state_file': state_file,
            'config': {'eps': 1e-8, 'features': {'action': {'type': 'ACTION', 'shape': [14]}},
                       'norm_map': {'VISUAL': 'IDENTITY', 'STATE': 'MEAN_STD', 'ACTION': norm}}}
    step['config'].update(extra_config or {})
    rename = {'registry_name': 'rename_observations_processor', 'config': {}}
    steps = [rename] * step_index + [step]
    write_json(tmp_path / 'policy_postprocessor.json',
               {'name': 'policy_postprocessor', 'steps': steps})
    if tensors is None:
        tensors = {'action.mean': ALOHA_MEAN, 'action.std': ALOHA_STD,
                   'action.min': ALOHA_MEAN - 2, 'action.max': ALOHA_MEAN + 2,
                   'action.q01': ALOHA_MEAN - 1, 'action.q99': ALOHA_MEAN + 1,
                   'observation.state.mean': np.zeros(14, np.float32)}
    save_file(tensors, str(tmp_path / state_file))
    return str(tmp_path)


@pytest.mark.parametrize('norm, mode, low_name', [('MEAN_STD', 'mean_std', 'mean'),
                                                  ('MIN_MAX', 'min_max', 'min'),
                                                  ('QUANTILES', 'quantile', 'q01')])
def test_lerobot_postprocessor_modes(tmp_path, norm, mode, low_name):
    ckpt = lerobot_dir(tmp_path, norm)
    assert detect_format(ckpt) == 'lerobot'
    meta = load_metadata(ckpt)
    assert meta.mode == mode and meta.dim == 14 and meta.mask.all() and meta.key is None
    first = meta.mean if mode == 'mean_std' else meta.low
    expected = {'mean': ALOHA_MEAN, 'min': ALOHA_MEAN - 2, 'q01': ALOHA_MEAN - 1}[low_name]
    np.testing.assert_array_equal(first, expected.astype(np.float64))
    assert load_metadata(os.path.join(ckpt, 'policy_postprocessor.json'), 'lerobot').mode == mode


def test_lerobot_identity_and_missing_statistic(tmp_path):
    os.makedirs(tmp_path / 'a')
    os.makedirs(tmp_path / 'b')
    identity = load_metadata(lerobot_dir(tmp_path / 'a', 'IDENTITY'))
    assert identity.mode == 'identity' and identity.dim == 14 and not identity.mask.any()
    ckpt = lerobot_dir(tmp_path / 'b', 'QUANTILES',
                       tensors={'action.mean': ALOHA_MEAN, 'action.std': ALOHA_STD})
    with pytest.raises(InputError, match=r"no tensor 'action.q01' .*pass the actions through"):
        load_metadata(ckpt)


@pytest.mark.parametrize('change, message', [
    ({'norm_map': {'ACTION': 'ZSCORE'}}, r'norm_map\.ACTION must be one of'),
    ({'norm_map': {'STATE': 'MEAN_STD'}}, r'norm_map\.ACTION must be one of .* got None'),
    ({'features': {'action': {'type': 'ACTION', 'shape': [7]}}}, r'have 14 values but the ACTION '
                                                                 r'shape is \[7\]'),
    ({'features': {'obs': {'type': 'STATE', 'shape': [7]}}},
     'expected one feature of type ACTION'),
])
def test_bad_lerobot_configs(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        load_metadata(lerobot_dir(tmp_path, extra_config=change))


def test_lerobot_nan_tensor_truncated_and_missing_state_files(tmp_path):
    for sub in 'abc':
        os.makedirs(tmp_path / sub)
    bad = ALOHA_STD.copy()
    bad[5] = np.nan
    with pytest.raises(InputError, match=r'action\.std\[5\] is not finite'):
        load_metadata(lerobot_dir(tmp_path / 'a',
                                  tensors={'action.mean': ALOHA_MEAN, 'action.std': bad}))
    ckpt = lerobot_dir(tmp_path / 'b')
    state = os.path.join(ckpt, 'policy_postprocessor_step_2_unnormalizer_processor.safetensors')
    with open(state, 'rb') as fh:
        blob = fh.read()
    with open(state, 'wb') as fh:
        fh.write(blob[:-10])
    with pytest.raises(InputError, match='not a readable safetensors file'):
        load_metadata(ckpt)
    os.remove(state)
    with pytest.raises(InputError, match='unnormalizer_processor.safetensors: file not found'):
        load_metadata(ckpt)
    write_json(tmp_path / 'c' / 'policy_postprocessor.json',
               {'steps': [{'registry_name': 'device_processor'}]})
    with pytest.raises(InputError, match=r'expected one step with registry_name '
                                         r"'unnormalizer_processor', found 0"):
        load_metadata(str(tmp_path / 'c'))
    with pytest.raises(InputError, match='unnorm keys do not apply'):
        load_metadata(str(tmp_path / 'c'), unnorm_key='aloha')


# ---- LeRobot 0.3
# -----------------------------------------------------------------------------------

def lerobot_legacy_dir(tmp_path, norm='MIN_MAX', fill=None) -> str:
    write_json(tmp_path / 'config.json', {
        'type': 'act',
        'normalization_mapping': {'VISUAL': 'MEAN_STD', 'STATE': 'MEAN_STD', 'ACTION': norm},
        'output_features': {'action': {'type': 'ACTION', 'shape': [14]}}})
    prefix = 'unnormalize_outputs.buffer_action.'
    tensors = {prefix + 'mean': ALOHA_MEAN, prefix + 'std': ALOHA_STD,
               prefix + 'min': ALOHA_MEAN - 2, prefix + 'max': ALOHA_MEAN + 2,
               'model.layer.weight': np.ones((3, 3), np.float32)}
    if fill is not None:
        tensors = {k: np.full_like(v, fill) for k, v in tensors.items()}
    save_file(tensors, str(tmp_path / 'model.safetensors'))
    return str(tmp_path)


def test_lerobot_legacy_config_and_model_buffers(tmp_path):
    ckpt = lerobot_legacy_dir(tmp_path)
    assert detect_format(ckpt) == 'lerobot'
    meta = load_metadata(ckpt)
    assert meta.mode == 'min_max' and 'model.safetensors' in meta.source
    np.testing.assert_array_equal(meta.high, (ALOHA_MEAN + 2).astype(np.float64))


def test_lerobot_legacy_uninitialised_infinite_buffers_are_refused(tmp_path):
    with pytest.raises(InputError, match=r'buffer_action\.min\[0\] is not finite \(inf\)'):
        load_metadata(lerobot_legacy_dir(tmp_path, fill=np.inf))


# ---- our YAML
# ---------------------------------------------------------------------------------------

def test_yaml_round_trip_is_identical_with_zero_drift(tmp_path, stats_file):
    ref = load_metadata(stats_file, unnorm_key='bridge_orig')
    path = str(tmp_path / 'policy_bridge.yaml')
    write_params_yaml(path, ref)
    text = open(path).read()
    assert 'policy_bridge:' in text and 'ros__parameters:' in text and 'unnormalizer:' in text
    assert detect_format(path) == 'yaml'
    for meta in (load_metadata(path), load_params_yaml(path)):
        result = check_metadata(ref, meta)
        assert result.verdict == 'identical' and np.all(result.certificate.per_dim_drift == 0)
    assert load_metadata(path, unnorm_key='bridge_orig').key == 'bridge_orig'
    with pytest.raises(InputError, match="unnormalizer.key is 'bridge_orig', not 'fractal"):
        load_metadata(path, unnorm_key='fractal20220817_data')


def test_yaml_checkpoint_is_validated_but_params_yaml_leaves_it_to_the_check(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('policy_bridge:\n  ros__parameters:\n    unnormalizer:\n      mode: min_max\n'
                    '      low: [0.0, .nan]\n      high: [1.0, 1.0]\n')
    with pytest.raises(InputError, match=r'bad.yaml: min\[1\] is not finite'):
        load_metadata(str(path))
    meta = load_params_yaml(str(path))
    assert check_metadata(meta, meta).verdict == 'cannot_check'
    (tmp_path / 'other.yaml').write_text('safety_filter:\n  ros__parameters:\n    mode: enforce\n')
    with pytest.raises(InputError, match='no `policy_bridge: ros__parameters:` section'):
        load_params_yaml(str(tmp_path / 'other.yaml'))


def test_lerobot_reads_only_the_statistics_its_mode_uses(tmp_path):
    nan = np.full(14, np.nan, np.float32)
    ckpt = lerobot_dir(tmp_path, 'MEAN_STD',
                       tensors={'action.mean': ALOHA_MEAN, 'action.std': ALOHA_STD,
                                'action.q01': nan, 'action.q99': nan})
    assert load_metadata(ckpt).mode == 'mean_std'   # the runtime never reads q01/q99 here


@pytest.fixture
def openpi_stats(data_file):
    """Return `(folder) -> (path, actions)`: openpi norm_stats.json of real SO-101 actions."""
    actions = np.load(data_file('so101_record_test_4ep.npz'))['actions'].astype(float)

    def write(folder) -> tuple[str, np.ndarray]:
        stats = {'mean': actions.mean(0), 'std': actions.std(0),
                 'q01': np.quantile(actions, 0.01, axis=0),
                 'q99': np.quantile(actions, 0.99, axis=0)}
        doc = {'norm_stats': {'state': {k: v.tolist() for k, v in stats.items()},
                              'actions': {k: v.tolist() for k, v in stats.items()}}}
        os.makedirs(folder / 'so101', exist_ok=True)
        return write_json(folder / 'so101' / 'norm_stats.json', doc), actions.copy()
    return write


def test_openpi_norm_stats_load_in_the_mode_the_model_config_names(tmp_path, openpi_stats):
    path, actions = openpi_stats(tmp_path)
    assert detect_format(path) == 'openpi' and detect_format(str(tmp_path / 'so101')) == 'openpi'
    pi0 = load_metadata(path, normalization_type='MEAN_STD')
    assert pi0.mode == 'mean_std' and pi0.dim == 6 and pi0.mask.all()
    np.testing.assert_allclose(pi0.mean, actions.mean(0))
    pi05 = load_metadata(str(tmp_path / 'so101'), normalization_type='QUANTILE')
    assert pi05.mode == 'quantile'
    np.testing.assert_allclose(pi05.high, np.quantile(actions, 0.99, axis=0))
    assert check_metadata(pi0, pi05).verdict == 'mismatch'


@pytest.mark.parametrize('kwargs, text', [
    ({}, 'openpi needs --normalization-type MEAN_STD or QUANTILE'),
    ({'normalization_type': 'BOUNDS'}, 'openpi needs --normalization-type'),
    ({'normalization_type': 'QUANTILE', 'unnorm_key': 'so101'}, 'unnorm keys do not apply'),
])
def test_openpi_norm_stats_refuse_a_missing_mode_or_a_key(tmp_path, kwargs, text, openpi_stats):
    path, _ = openpi_stats(tmp_path)
    with pytest.raises(InputError, match=text):
        load_metadata(path, **kwargs)


def test_openpi_norm_stats_without_the_quantiles_refuse_quantile_mode(tmp_path, openpi_stats):
    path, actions = openpi_stats(tmp_path)
    doc = {'norm_stats': {'actions': {'mean': [0.0] * 6, 'std': [1.0] * 6}}}
    write_json(path, doc)
    with pytest.raises(InputError, match='lacks q01, q99'):
        load_metadata(path, 'openpi', normalization_type='QUANTILE')
    assert load_metadata(path, 'openpi', normalization_type='MEAN_STD').dim == 6
