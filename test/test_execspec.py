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
ExecSpec core.

Unnormalizers, the activation check's refusal reasons, the closed-form drift certificate.
"""
import json

from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy import integrate
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.execspec import (check_loaded, check_metadata, CheckResult,
                                             drift_certificate, expected_abs_affine, Metadata,
                                             metadata_from_params, metadata_to_params,
                                             name_differences, normalize, unnormalize)

BIN_CENTRES = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2


@pytest.fixture(scope='module')
def real(data_file):
    """Return `(key, mode='quantile') -> Metadata` of the real OpenVLA action statistics."""
    with open(data_file('openvla_oxe_bridge_orig_fractal_action_stats.json')) as fh:
        stats = json.load(fh)

    def metadata(key: str, mode: str = 'quantile') -> Metadata:
        action = stats[key]['action']
        low, high = {'quantile': ('q01', 'q99'), 'min_max': ('min', 'max')}[mode]
        return Metadata(mode=mode, mask=np.array(action['mask']), low=action[low],
                        high=action[high], key=key, source=key)
    return metadata


def replace(meta: Metadata, **changes) -> Metadata:
    fields = {'mode': meta.mode, 'mask': meta.mask, 'low': meta.low, 'high': meta.high,
              'mean': meta.mean, 'std': meta.std, 'key': meta.key, 'names': meta.names,
              'source': meta.source}
    fields.update(changes)
    return Metadata(**fields)


# ---- unnormalizers
# -------------------------------------------------------------------------------

def test_quantile_matches_openvla_formula_on_bin_centres_and_passes_the_gripper_through(real):
    meta = real('bridge_orig')
    x = np.tile(BIN_CENTRES[::16], (7, 1)).T          # chunk [16, 7]
    out = unnormalize(meta, x)
    q01, q99 = meta.low, meta.high
    expected = np.where(meta.mask, 0.5 * (x + 1) * (q99 - q01) + q01, x)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[:, 6], x[:, 6])   # gripper mask False: untouched
    np.testing.assert_array_equal(unnormalize(meta, x[3]), out[3])   # a single action [D]
    np.testing.assert_allclose(unnormalize(meta, -np.ones(7))[:6], q01[:6])
    np.testing.assert_allclose(unnormalize(meta, np.ones(7))[:6], q99[:6])


def test_min_max_mean_std_quantile10_and_identity_formulas():
    x = np.array([[-1.0, 0.5], [0.25, 1.0]])
    bounds = {'mask': np.array([True, True]), 'low': [0.0, -2.0], 'high': [4.0, 2.0]}
    for mode in ('min_max', 'quantile10'):
        np.testing.assert_allclose(unnormalize(Metadata(mode=mode, **bounds), x),
                                   [[0.0, 1.0], [2.5, 2.0]])
    meta = Metadata(mode='mean_std', mask=np.array([True, False]), mean=[1.0, 5.0], std=[2.0, 3.0])
    np.testing.assert_allclose(unnormalize(meta, x), [[-1.0, 0.5], [1.5, 1.0]])
    ident = Metadata(mode='identity', mask=np.array([True, True]))
    assert not ident.mask.any()
    np.testing.assert_array_equal(unnormalize(ident, x), x)


@pytest.mark.parametrize('shape', [(6,), (3, 6), (2, 3, 7), ()])
def test_unnormalize_refuses_wrong_shapes(shape, real):
    with pytest.raises(InputError, match='does not match 7 dimensions'):
        unnormalize(real('bridge_orig'), np.zeros(shape))


def test_oft_epsilon_changes_actions_by_at_most_1e_8_and_is_not_part_of_the_comparison(real):
    meta = real('bridge_orig', 'min_max')
    x = np.tile(BIN_CENTRES, (7, 1)).T
    oft = np.where(meta.mask, 0.5 * (x + 1) * (meta.high - meta.low + 1e-8) + meta.low, x)
    gap = np.abs(oft - unnormalize(meta, x))
    assert gap.max() <= 1e-8 and gap.max() > 0
    assert check_metadata(meta, meta).verdict == 'identical'


# ---- metadata validation
# -------------------------------------------------------------------------

@pytest.mark.parametrize('changes, message', [
    ({'mode': 'zscore'}, 'unknown normalization mode'),
    ({'mask': [1, 1, 1, 1, 1, 1, 0]}, 'mask'),
    ({'low': [0.0] * 6}, "'q01' has 6 values but mask has 7"),
    ({'high': None}, 'needs q99'),
    ({'names': ('a', 'b')}, "'names' has 2 entries"),
    ({'low': [[0.0] * 7]}, 'flat list'),
])
def test_structurally_bad_metadata_is_refused(changes, message, real):
    with pytest.raises(InputError, match=message):
        replace(real('bridge_orig'), **changes)


def test_problems_name_non_finite_and_inverted_fields_but_ignore_unnormalized_dims(real):
    meta = real('bridge_orig')
    low = meta.low.copy()
    low[2] = np.nan
    assert replace(meta, low=low).problems() == ['bridge_orig: q01[2] is not finite (nan)']
    high = meta.high.copy()
    high[4] = meta.low[4] - 0.5
    assert 'q99[4]' in replace(meta, high=high).problems()[0]
    high[4] = meta.low[4]                      # constant: valid, compared exactly by the check
    assert replace(meta, high=high).problems() == []
    high[4] = meta.high[4]
    high[6] = -1.0   # gripper is passed through: its range is never used
    assert replace(meta, high=high).problems() == []
    std = Metadata(mode='mean_std', mask=np.array([True]), mean=[0.0], std=[-1.0], source='s')
    assert std.problems() == ['s: std[0] = -1 is negative']
    with pytest.raises(InputError, match='std'):
        std.require_valid()


# ---- the check: every refusal reason
# ---------------------------------------------------------------

def test_identical_metadata_gives_exactly_zero_drift(real):
    for key in ('bridge_orig', 'fractal20220817_data'):
        result = check_metadata(real(key), real(key))
        assert result.verdict == 'identical' and result.reasons == []
        cert = result.certificate
        assert np.all(cert.per_dim_drift == 0) and cert.mean_drift == 0 and cert.max_drift == 0
        assert np.all(cert.scale == 1) and np.all(cert.shift == 0)


def test_sibling_key_substitution_is_a_mismatch_with_a_large_certificate(real):
    result = check_metadata(real('bridge_orig'), real('fractal20220817_data'))
    assert result.verdict == 'mismatch'
    assert any('unnorm key differs' in r for r in result.reasons)
    assert any(r.startswith('q01 differs on dims 0,1,2,3,4,5') for r in result.reasons)
    assert result.certificate.max_drift > 1.0       # deployed actions move by over a half-range
    assert result.certificate.per_dim_drift[6] == 0  # the gripper is passed through by both


def test_mode_difference_is_a_mismatch_and_still_certified(real):
    result = check_metadata(real('bridge_orig', 'quantile'), real('bridge_orig', 'min_max'))
    assert result.verdict == 'mismatch'
    assert result.reasons == ["mode differs: checkpoint 'quantile', deployed 'min_max'"]
    assert result.certificate.max_drift > 10     # min/max is far wider than q01/q99 on Bridge


def test_dimension_difference_is_a_mismatch_without_certificate(real):
    ref = real('bridge_orig')
    dep = Metadata(mode='quantile', mask=ref.mask[:6], low=ref.low[:6], high=ref.high[:6],
                   key='bridge_orig')
    result = check_metadata(ref, dep)
    assert result.verdict == 'mismatch' and result.certificate is None
    assert result.reasons == ['dimension differs: checkpoint 7, deployed 6']
    with pytest.raises(InputError):
        drift_certificate(ref, dep)


def test_mask_difference_is_a_mismatch_and_the_gripper_drift_is_certified(real):
    ref = real('bridge_orig')
    dep = replace(ref, mask=np.ones(7, dtype=bool))   # gripper now unnormalized with q01=0, q99=1
    result = check_metadata(ref, dep)
    assert result.verdict == 'mismatch'
    assert result.reasons[0].startswith('mask differs on dims 6')
    # gripper: deployed = 0.5 x + 0.5 vs identity x, so (s - 1) u + t = -0.5 u + 0.5 -> E = 0.5
    assert result.certificate.per_dim_drift[6] == pytest.approx(0.5)
    assert result.certificate.mask.all()


def test_statistic_beyond_tolerance_is_a_mismatch_within_tolerance_is_identical(real):
    ref = real('bridge_orig')
    half = (ref.high - ref.low) / 2
    high = ref.high.copy()
    high[3] += 2e-6 * half[3]
    result = check_metadata(ref, replace(ref, high=high))
    assert result.verdict == 'mismatch' and result.reasons[0].startswith('q99 differs on dims 3 ')
    assert 0 < result.certificate.max_drift < 1e-5
    high[3] = ref.high[3] + 0.5e-6 * half[3]
    assert check_metadata(ref, replace(ref, high=high)).verdict == 'identical'
    assert check_metadata(ref, replace(ref, high=high), tol=0).verdict == 'mismatch'


def test_float32_rounded_statistics_are_identical(real):
    ref = real('fractal20220817_data')
    dep = replace(ref, low=ref.low.astype(np.float32), high=ref.high.astype(np.float32))
    assert check_metadata(ref, dep).verdict == 'identical'


def test_key_and_name_differences_are_mismatches_but_an_absent_key_is_not(real):
    ref = replace(real('bridge_orig'), names=tuple('xyzrpwg'))
    assert check_metadata(ref, replace(ref, key='bridge_orig_no_noops')).reasons == [
        "unnorm key differs: checkpoint 'bridge_orig', deployed 'bridge_orig_no_noops'"]
    assert 'names differ' in check_metadata(ref, replace(ref, names=tuple('xyzrpwG'))).reasons[0]
    assert check_metadata(ref, replace(ref, key=None, names=None)).verdict == 'identical'


def test_non_finite_or_degenerate_statistics_cannot_be_checked(real):
    ref = real('bridge_orig')
    low = ref.low.copy()
    low[0] = np.inf
    result = check_metadata(ref, replace(ref, low=low, source='deployed.yaml'))
    assert result.verdict == 'cannot_check' and result.certificate is None
    assert result.reasons == ['deployed.yaml: q01[0] is not finite (inf)']
    high = ref.high.copy()
    high[1] = ref.low[1] - 0.01
    assert check_metadata(replace(ref, high=high), ref).verdict == 'cannot_check'
    with pytest.raises(InputError, match='tolerance'):
        check_metadata(ref, ref, tol=float('nan'))


def test_report_is_json_with_the_required_keys(real):
    result = check_metadata(real('bridge_orig'), real('fractal20220817_data'))
    report = json.loads(json.dumps(result.to_report()))
    for key in ('verdict', 'reasons', 'mode', 'mask', 'per_dim_drift', 'mean_drift', 'max_drift',
                'scale', 'shift'):
        assert key in report
    assert report['verdict'] == 'mismatch' and report['mode'] == 'quantile'
    assert len(report['scale']) == 7
    empty = json.loads(json.dumps(CheckResult('cannot_check', ['x: missing']).to_report()))
    assert empty['verdict'] == 'cannot_check' and empty['per_dim_drift'] is None


# ---- the certificate against numerical integration ----------------------------------------------

def quad_abs(a: float, b: float) -> float:
    points = [-b / a] if a != 0 and abs(b / a) < 1 else None
    value, _ = integrate.quad(lambda u: abs(a * u + b), -1, 1, points=points, epsabs=1e-13,
                              epsrel=1e-12)
    return value / 2


def test_closed_form_matches_numerical_integration_to_1e_9():
    rng = np.random.default_rng(4)
    a = np.concatenate([rng.normal(0, 3, 40), [0.0, 0.0, 1.0, -1.0, 2.0]])
    b = np.concatenate([rng.normal(0, 2, 40), [0.0, -0.7, 1.0, 1.0, -0.3]])
    closed = expected_abs_affine(a, b)
    numeric = np.array([quad_abs(ai, bi) for ai, bi in zip(a, b)])
    np.testing.assert_allclose(closed, numeric, rtol=0, atol=1e-9)


@pytest.mark.parametrize('ref_key, dep_key', [('bridge_orig', 'fractal20220817_data'),
                                              ('fractal20220817_data', 'bridge_orig')])
def test_certificate_is_the_mean_action_drift_of_the_real_unnormalizers(ref_key, dep_key, real):
    ref, dep = real(ref_key), real(dep_key)
    cert = drift_certificate(ref, dep)
    for j in range(7):
        def gap(x, j=j):
            e = np.zeros(7)
            e[:] = x
            return abs(unnormalize(dep, e)[j] - unnormalize(ref, e)[j])
        slope_ref = (ref.high[j] - ref.low[j]) / 2 if ref.mask[j] else 1.0
        slope_dep = (dep.high[j] - dep.low[j]) / 2 if dep.mask[j] else 1.0
        centres = ((ref.high[j] + ref.low[j]) - (dep.high[j] + dep.low[j])) / 2
        kink = centres / (slope_dep - slope_ref) if ref.mask[j] else None
        points = [kink] if kink is not None and -1 < kink < 1 else None
        numeric = integrate.quad(gap, -1, 1, points=points, epsabs=1e-14, epsrel=1e-14)[0] / 2
        assert cert.per_dim_drift_abs[j] == pytest.approx(numeric, abs=1e-9)
        assert cert.per_dim_drift[j] == pytest.approx(numeric / cert.half_range[j], abs=1e-9)
    assert cert.mean_drift == pytest.approx(cert.per_dim_drift[:6].mean())
    assert cert.max_drift == cert.per_dim_drift[:6].max()


def test_mean_std_certificate_covers_two_standard_deviations():
    ref = Metadata(mode='mean_std', mask=np.array([True, True]), mean=[0.0, 1.0], std=[1.0, 2.0])
    dep = Metadata(mode='mean_std', mask=np.array([True, True]), mean=[0.5, 1.0], std=[1.0, 3.0])
    cert = drift_certificate(ref, dep)
    assert cert.radius == 2.0
    np.testing.assert_allclose(cert.half_range, [2.0, 4.0])
    np.testing.assert_allclose(cert.scale, [1.0, 1.5])
    np.testing.assert_allclose(cert.shift, [0.25, 0.0])
    for j in range(2):   # E over x ~ U[-2, 2] of |deployed - reference|
        def gap(x, j=j):
            return abs(unnormalize(dep, np.full(2, x))[j] - unnormalize(ref, np.full(2, x))[j])
        numeric = integrate.quad(gap, -2, 2, points=[0.0], epsabs=1e-14)[0] / 4
        assert cert.per_dim_drift_abs[j] == pytest.approx(numeric, abs=1e-9)


# ---- the ROS parameter form
# ------------------------------------------------------------------------

def test_params_round_trip_and_follow_ros_parameter_rules(real):
    meta = replace(real('bridge_orig'), names=tuple(f'j{i}' for i in range(7)))
    params = metadata_to_params(meta)
    for name, value in params.items():
        assert name.startswith('unnormalizer.')
        if isinstance(value, list):
            assert value and len({type(v) for v in value}) == 1
            assert type(value[0]) in (float, bool, str)
    assert isinstance(params['unnormalizer.low'][6], float)   # 0.0, never the integer 0
    back = metadata_from_params(params)
    assert check_metadata(meta, back).verdict == 'identical'
    assert np.all(drift_certificate(meta, back).per_dim_drift == 0)
    assert back.names == meta.names and back.key == 'bridge_orig'
    nested = {'other': 1, 'unnormalizer': {k.split('.', 1)[1]: v for k, v in params.items()}}
    assert check_metadata(meta, metadata_from_params(nested)).verdict == 'identical'


def test_params_without_mask_default_to_all_normalized_and_identity_needs_a_dimension():
    meta = metadata_from_params({'unnormalizer.mode': 'min_max', 'unnormalizer.low': [0, 1],
                                 'unnormalizer.high': [1.0, 2.0]})
    assert meta.mask.tolist() == [True, True]
    assert metadata_from_params({'unnormalizer.mode': 'identity', 'unnormalizer.dim': 3}).dim == 3
    with pytest.raises(InputError, match='dim'):
        metadata_from_params({'unnormalizer.mode': 'identity'})


@pytest.mark.parametrize('params, message', [
    ({}, 'missing parameter unnormalizer.mode'),
    ({'unnormalizer.mode': 3}, 'must be a string'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': ['a'], 'unnormalizer.high': [1.0]},
     'list of numbers'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [True], 'unnormalizer.high': [1.0]},
     'list of numbers'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0], 'unnormalizer.high': [1.0],
      'unnormalizer.mask': [1]}, 'list of booleans'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0],
      'unnormalizer.high': [1.0, 2.0]}, 'has 2 values'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0], 'unnormalizer.high': [1.0],
      'unnormalizer.dim': 2}, 'has 1 values but mask has 2'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0], 'unnormalizer.high': [1.0],
      'unnormalizer.mask': [True], 'unnormalizer.dim': 2}, 'dim is 2'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0], 'unnormalizer.high': [1.0],
      'unnormalizer.dim': 0}, 'positive integer'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0], 'unnormalizer.high': [1.0],
      'unnormalizer.key': 5}, 'key must be a string'),
    ({'unnormalizer.mode': 'quantile', 'unnormalizer.low': [0.0]}, 'needs q99'),
])
def test_bad_params_are_one_line_input_errors(params, message):
    with pytest.raises(InputError, match=message) as info:
        metadata_from_params(params, source='bridge')
    assert str(info.value).startswith('bridge: ') and '\n' not in str(info.value)


def test_certificate_predicts_the_mean_drift_over_openvla_bin_centres(real):
    ref, dep = real('bridge_orig'), real('fractal20220817_data')
    x = np.tile(BIN_CENTRES, (7, 1)).T
    empirical = np.abs(unnormalize(dep, x) - unnormalize(ref, x)).mean(axis=0)
    np.testing.assert_allclose(drift_certificate(ref, dep).per_dim_drift_abs, empirical,
                               rtol=1e-4, atol=1e-12)


# ---- constant dimensions, dimension names, what a bridge loaded ---------------------------------

def _constant(meta: Metadata, j: int, value: float) -> Metadata:
    low, high = meta.low.copy(), meta.high.copy()
    low[j] = high[j] = value
    return replace(meta, low=low, high=high)


@given(st.floats(-10, 10), st.floats(1e-9, 1.0))
def test_a_constant_dimension_is_compared_exactly_not_refused(real, value, delta):
    ref = _constant(real('bridge_orig'), 2, value)       # e.g. a gripper that never moved
    same = check_metadata(ref, _constant(real('bridge_orig'), 2, value))
    assert same.verdict == 'identical' and same.certificate.per_dim_drift[2] == 0.0
    moved = check_metadata(ref, _constant(real('bridge_orig'), 2, value + delta))
    assert moved.verdict == 'mismatch' and 'dims 2' in moved.reasons[0]
    assert moved.certificate.per_dim_drift[2] == np.inf
    opened = ref.high.copy()
    opened[2] += delta                                    # no longer constant
    assert check_metadata(ref, replace(ref, high=opened)).verdict == 'mismatch'
    assert np.allclose(unnormalize(ref, np.zeros(7))[2], value)


def test_a_constant_mean_std_dimension_is_compared_exactly():
    ref = Metadata('mean_std', np.array([True, True]), mean=[0.5, 1.0], std=[0.0, 2.0], source='r')
    assert check_metadata(ref, ref).verdict == 'identical'
    moved = Metadata('mean_std', ref.mask, mean=[0.5 + 1e-12, 1.0], std=[0.0, 2.0], source='d')
    assert check_metadata(ref, moved).verdict == 'mismatch'
    with pytest.raises(InputError, match='constant'):
        normalize(ref, [0.5, 1.0])


def test_a_permutation_of_dimension_names_is_called_one(real):
    ref = replace(real('bridge_orig'), names=tuple('xyzrpwg'))
    reasons = check_metadata(ref, replace(ref, names=tuple('yxzrpwg'))).reasons
    assert reasons and 'permutation' in reasons[0]
    assert name_differences(('a', 'b'), ['a', 'c'], 'bridge')[0].startswith('dimension names')


def _loaded(meta: Metadata, **changes) -> dict:
    report = {'configured': True, 'source': '/policy_bridge', 'normalized_input': True,
              'parameters': metadata_to_params(meta), 'pending_changes': [],
              'joint_names': list(meta.names or [f'j{i}' for i in range(meta.dim)])}
    report.update(changes)
    return report


def test_check_loaded_verifies_normalized_input_both_ways(real):
    ref = real('bridge_orig')
    assert check_loaded(ref, _loaded(ref), True).verdict == 'identical'
    off = check_loaded(ref, _loaded(ref, normalized_input=False), True)
    assert off.verdict == 'mismatch' and 'normalized_input is false' in off.reasons[0]
    twice = check_loaded(ref, _loaded(ref), False)
    assert twice.verdict == 'mismatch' and 'second time' in twice.reasons[0]
    assert 'normalized_input: checked (true)' in check_loaded(ref, _loaded(ref), True).notes
    identity = Metadata('identity', np.zeros(3, dtype=bool), source='i')
    result = check_loaded(identity, _loaded(identity, normalized_input=False), True)
    assert result.verdict == 'identical' and 'not checked' in result.notes[0]


def test_check_loaded_compares_joint_order_where_the_checkpoint_names_dimensions(real):
    ref = real('bridge_orig')
    unnamed = check_loaded(ref, _loaded(ref), True)
    assert 'dimension names: not checked (the checkpoint names none)' in unnamed.notes
    named = replace(ref, names=tuple('xyzrpwg'))
    same = check_loaded(named, _loaded(named), True)
    assert same.verdict == 'identical' and 'joint order: checked' in same.notes[-1]
    permuted = check_loaded(named, _loaded(named, joint_names=list('yxzrpwg')), True)
    assert permuted.verdict == 'mismatch' and 'permutation' in permuted.reasons[0]
    short = check_loaded(ref, _loaded(ref, joint_names=['a']), True)
    assert short.verdict == 'mismatch' and 'publishes 1 joints' in short.reasons[0]


def test_check_loaded_refuses_unconfigured_pending_and_different_statistics(real):
    ref = real('bridge_orig')
    assert check_loaded(ref, {'configured': False}, True).verdict == 'cannot_check'
    pending = check_loaded(ref, _loaded(ref, pending_changes=['unnormalizer.high']), True)
    assert pending.verdict == 'mismatch' and 'changed since configure' in pending.reasons[0]
    other = check_loaded(ref, _loaded(real('fractal20220817_data')), True)
    assert other.verdict == 'mismatch' and other.certificate.max_drift > 0
    broken = check_loaded(ref, _loaded(ref, parameters={'unnormalizer.dim': 7}), True)
    assert broken.verdict == 'cannot_check'


def _server_side(ref: Metadata, **changes) -> dict:
    """Report a live bridge passing a server's actions through (identity, not normalized)."""
    identity = Metadata('identity', np.zeros(ref.dim, dtype=bool), source='bridge')
    fields = {'parameters': metadata_to_params(identity), 'normalized_input': False,
              'source_kind': 'openpi', 'server_uri': 'ws://gpu:8000'}
    return _loaded(ref, **{**fields, **changes})


def test_server_side_unnormalization_is_accepted_and_stated_unverified(real):
    ref = real('bridge_orig')
    result = check_loaded(ref, _server_side(ref), False)
    assert result.verdict == 'identical' and result.unnormalization == 'server'
    assert result.certificate is None
    assert 'delegated to the policy server at ws://gpu:8000' in result.notes[0]
    assert 'NOT verified here' in result.notes[0]
    report = result.to_report()
    assert report['unnormalization'] == 'server' and report['max_drift'] is None
    assert check_loaded(ref, _loaded(ref), True).to_report()['unnormalization'] == 'bridge'


def test_server_side_needs_the_declaration_an_identity_bridge_and_the_checkpoint_shape(real):
    ref = replace(real('bridge_orig'), names=tuple('xyzrpwg'))
    declared_normalized = check_loaded(ref, _server_side(ref), True)
    assert declared_normalized.verdict == 'mismatch'
    assert declared_normalized.unnormalization == 'bridge'
    unnormalizing = check_loaded(ref, _server_side(ref, normalized_input=True), False)
    assert 'normalized_input is true' in unnormalizing.reasons[0]
    permuted = check_loaded(ref, _server_side(ref, joint_names=list('yxzrpwg')), False)
    assert 'permutation' in permuted.reasons[0]
    six = {'unnormalizer.mode': 'identity', 'unnormalizer.dim': 6}
    narrow = check_loaded(ref, _server_side(ref, parameters=six), False)
    assert narrow.verdict == 'mismatch' and 'dimension differs' in narrow.reasons[0]
    pending = check_loaded(ref, _server_side(ref, pending_changes=['unnormalizer.mode']), False)
    assert 'changed since configure' in pending.reasons[0]
    broken = replace(ref, high=np.full(7, np.nan))
    assert check_loaded(broken, _server_side(broken), False).verdict == 'cannot_check'


@pytest.mark.parametrize('sent, verdict, text', [
    ('bridge_orig', 'identical', "server unnorm_key: checked ('bridge_orig'"),
    ('fractal20220817_data', 'mismatch', "asks the server for unnorm_key 'fractal20220817_data'"),
    (None, 'mismatch', 'sends no unnorm_key'),
])
def test_a_rest_bridge_must_ask_the_server_for_the_checkpoints_key(sent, verdict, text, real):
    ref = real('bridge_orig')
    result = check_loaded(ref, _server_side(ref, source_kind='openvla_rest',
                                            server_unnorm_key=sent), False)
    assert result.verdict == verdict
    assert any(text in line for line in [*result.reasons, *result.notes])
    unkeyed = replace(ref, key=None)
    free = check_loaded(unkeyed, _server_side(unkeyed, source_kind='openvla_rest'), False)
    assert free.verdict == 'identical' and 'not checked' in free.notes[1]
