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
`vla-safety check`.

Exit codes 0/1/2, the printed certificate, the JSON report, one-line errors.
"""
import json
import subprocess
import sys

import pytest
from vla_safety_filter.cli import main
from vla_safety_filter.core.checkpoints import load_metadata, write_params_yaml
from vla_safety_filter.core.execspec import Metadata

REPORT_KEYS = ('verdict', 'reasons', 'mode', 'mask', 'per_dim_drift', 'mean_drift', 'max_drift',
               'scale', 'shift')


@pytest.fixture(scope='module')
def stats_file(data_file):
    """Return the real OpenVLA action statistics (bridge_orig and fractal keys)."""
    return data_file('openvla_oxe_bridge_orig_fractal_action_stats.json')


@pytest.fixture
def checkpoint(tmp_path, stats_file):
    """Return an OpenVLA checkpoint directory holding the real bridge/fractal norm_stats."""
    with open(stats_file) as fh:
        stats = json.load(fh)
    (tmp_path / 'ckpt').mkdir()
    with open(tmp_path / 'ckpt' / 'config.json', 'w') as fh:
        json.dump({'n_action_bins': 256, 'norm_stats': stats}, fh)
    return str(tmp_path / 'ckpt')


@pytest.fixture
def bridge_params(tmp_path, stats_file):
    """Return `(key='bridge_orig', name=...) -> path` of a bridge YAML of the real statistics."""
    def write(key: str = 'bridge_orig', name: str = 'policy_bridge.yaml') -> str:
        path = str(tmp_path / name)
        write_params_yaml(path, load_metadata(stats_file, unnorm_key=key))
        return path
    return write


def run_check(capsys, *argv):
    code = main(['check', *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_params_exit_0_with_zero_drift_report(tmp_path, capsys, checkpoint,
                                                        bridge_params):
    report = tmp_path / 'report.json'
    code, out, err = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                               '--params', bridge_params(), '--report', str(report))
    assert code == 0 and err == ''
    assert 'verdict:    IDENTICAL' in out
    data = json.loads(report.read_text())
    assert all(key in data for key in REPORT_KEYS)
    assert data['verdict'] == 'identical' and data['reasons'] == []
    assert data['per_dim_drift'] == [0.0] * 7
    assert data['mean_drift'] == 0.0 and data['max_drift'] == 0.0
    assert data['scale'] == [1.0] * 7 and data['shift'] == [0.0] * 7
    assert data['mode'] == 'quantile' and data['mask'] == [True] * 6 + [False]


def test_params_of_the_sibling_key_exit_1_and_print_the_certificate(tmp_path, capsys, checkpoint,
                                                                    bridge_params):
    report = tmp_path / 'report.json'
    code, out, _ = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             '--params', bridge_params('fractal20220817_data'),
                             '--report', str(report))
    assert code == 1
    assert 'verdict:    MISMATCH' in out and 'drift certificate' in out
    assert '(passed through)' in out
    data = json.loads(report.read_text())
    assert data['verdict'] == 'mismatch' and data['max_drift'] > 1
    assert data['mean_drift'] == pytest.approx(sum(data['per_dim_drift'][:6]) / 6)


def test_against_key_answers_the_substitution_what_if(tmp_path, capsys, checkpoint, stats_file):
    code, out, _ = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             '--against-key', 'fractal20220817_data')
    assert code == 1
    assert "unnorm key differs: checkpoint 'bridge_orig', deployed 'fractal20220817_data'" in out
    code, out, _ = run_check(capsys, '--checkpoint', stats_file, '--unnorm-key', 'bridge_orig',
                             '--against-key', 'bridge_orig')
    assert code == 0


def test_ambiguous_key_exits_2_with_one_line_error_and_a_report(tmp_path, capsys, checkpoint,
                                                                bridge_params):
    report = tmp_path / 'report.json'
    code, out, err = run_check(capsys, '--checkpoint', checkpoint,
                               '--params', bridge_params(), '--report', str(report))
    assert code == 2 and 'CANNOT_CHECK' in out
    assert err.count('\n') == 1 and err.startswith('vla-safety check: error: ')
    assert 'available keys: bridge_orig, fractal20220817_data' in err
    assert json.loads(report.read_text())['verdict'] == 'cannot_check'


def test_nan_in_deployed_params_exits_2_naming_file_and_field(tmp_path, capsys, checkpoint,
                                                              bridge_params):
    path = tmp_path / 'nan.yaml'
    text = open(bridge_params()).read()
    assert '0.028309678435325586' in text
    path.write_text(text.replace('0.028309678435325586', '.nan'))
    code, _, err = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             '--params', str(path))
    assert code == 2 and f'{path}: q99[0] is not finite (nan)' in err


@pytest.mark.parametrize('argv, message', [
    (['--params', 'missing.yaml'], 'missing.yaml: parameter file not found'),
    (['--against-key', 'libero_goal'], "'libero_goal' not found"),
    (['--against-key', 'fractal20220817_data', '--normalization-type', 'BOUNDS',
      '--format', 'openvla'],
     'applies to OpenVLA-OFT and openpi checkpoints only'),
])
def test_bad_inputs_exit_2(capsys, checkpoint, argv, message):
    code, _, err = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             *argv)
    assert code == 2 and message in err and err.count('\n') == 1


def test_unwritable_report_exits_2(tmp_path, capsys, checkpoint):
    code, _, err = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             '--against-key', 'bridge_orig',
                             '--report', str(tmp_path / 'no' / 'dir' / 'r.json'))
    assert code == 2 and 'cannot write report' in err


def test_console_script_truncated_checkpoint_no_traceback(tmp_path):
    truncated = '{"norm_stats": {"bridge_orig": {"action": {"q01": [0.1, '
    (tmp_path / 'config.json').write_text(truncated)
    proc = subprocess.run([sys.executable, '-m', 'vla_safety_filter.cli', 'check',
                           '--checkpoint', str(tmp_path), '--against-key', 'x'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr and proc.stderr.count('\n') == 1
    assert 'config.json: not valid JSON' in proc.stderr


def test_names_not_carried_by_the_checkpoint_are_reported_as_not_checked(capsys, checkpoint,
                                                                         bridge_params):
    code, out, _ = run_check(capsys, '--checkpoint', checkpoint, '--unnorm-key', 'bridge_orig',
                             '--params', bridge_params())
    assert code == 0 and 'note: dimension names: not checked (the checkpoint names none)' in out


def test_a_permuted_yaml_deployment_exits_1_naming_the_permutation(tmp_path, capsys, stats_file):
    meta = load_metadata(stats_file, unnorm_key='bridge_orig')
    named = Metadata(meta.mode, meta.mask, low=meta.low, high=meta.high, names=list('xyzrpwg'))
    permuted = Metadata(meta.mode, meta.mask, low=meta.low, high=meta.high,
                        names=list('yxzrpwg'))
    ckpt, params = str(tmp_path / 'ckpt.yaml'), str(tmp_path / 'params.yaml')
    write_params_yaml(ckpt, named)
    write_params_yaml(params, permuted)
    code, out, _ = run_check(capsys, '--checkpoint', ckpt, '--params', params)
    assert code == 1 and 'permutation' in out
