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

"""`vla-safety evaluate` end to end on real data: report layout, injections, labels, bad input."""
import json

import numpy as np
import pytest
from vla_safety_filter.cli import main
from vla_safety_filter.core.costs import CostModel
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.evaluation import auroc, EvalSettings, run_episode
from vla_safety_filter.core.params import load_calibration_for
from vla_safety_filter.core.profiles import get_profile


@pytest.fixture(scope='module')
def aloha(data_file):
    """Return the real recording aloha_sim_lerobot_4ep.npz."""
    return data_file('aloha_sim_lerobot_4ep.npz')


@pytest.fixture(scope='module')
def libero(data_file):
    """Return the real recording libero_smolvla_rollouts_7ep.npz."""
    return data_file('libero_smolvla_rollouts_7ep.npz')


@pytest.fixture(scope='module')
def so101(data_file):
    """Return the real recording so101_record_test_4ep.npz."""
    return data_file('so101_record_test_4ep.npz')


def calibrate(tmp_path, source, fps, stem):
    params = str(tmp_path / f'{stem}.yaml')
    report = str(tmp_path / f'{stem}_report.json')
    assert main(['calibrate', source, '--fps', str(fps), '--output', params,
                 '--report', report]) == 0
    return params, report


@pytest.fixture(scope='module')
def aloha_cal(tmp_path_factory, aloha):
    return calibrate(tmp_path_factory.mktemp('aloha'), aloha, 50, 'aloha')


def test_report_layout_on_held_out_aloha(aloha_cal, tmp_path, aloha):
    params, cal_report = aloha_cal
    out = tmp_path / 'eval.json'
    assert main(['evaluate', aloha, '--calibration', params, '--holdout-from', cal_report,
                 '--report', str(out)]) == 0
    report = json.loads(out.read_text())
    held_out = json.load(open(cal_report))['holdout_episodes']
    assert [ep['episode'] for ep in report['episodes']] == held_out
    for ep in report['episodes']:
        assert ep['n_steps'] == 400 or ep['n_steps'] == 500
        assert all(set(a) == {'kind', 'step'} for a in ep['alarms'])
        first = ep['alarms'][0]['step'] if ep['alarms'] else None
        assert ep['first_alarm_step'] == first
    hours = sum(ep['n_steps'] for ep in report['episodes']) / 50 / 3600
    assert report['in_control_hours'] == pytest.approx(hours)
    assert report['false_alarms_per_hour'] == pytest.approx(report['false_alarms'] / hours)
    budget = report['cost_budget']
    assert budget['n_episodes'] == len(held_out)
    assert budget['max_cost'] == pytest.approx(max(ep['cost'] for ep in report['episodes']))


def test_injected_nan_and_freeze_are_detected(aloha_cal, tmp_path, aloha):
    params, _ = aloha_cal
    out = tmp_path / 'inject.json'
    assert main(['evaluate', aloha, '--calibration', params, '--inject', 'nan,freeze',
                 '--at', '150', '--seed', '3', '--report', str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report['episodes']) == 4 and len(report['injections']) == 8
    nan_runs = [r for r in report['injections'] if r['fault']['family'] == 'nan']
    assert all(r['detection_step'] == 150 and r['detection_kind'] == 'nonfinite' for r in nan_runs)
    assert report['detection']['nan']['detected_within_deadline'] == 1.0
    assert report['detection']['freeze']['detected_within_deadline'] == 1.0
    assert report['detection']['freeze']['median_delay_s'] <= 2.0


def test_success_labels_give_auroc_per_metric(tmp_path, libero):
    params, _ = calibrate(tmp_path, libero, 20, 'libero')
    with np.load(libero, allow_pickle=False) as z:
        success = z['episode_success'].tolist()  # -1 = unknown
    labels = tmp_path / 'success.json'
    labels.write_text(json.dumps(success))
    out = tmp_path / 'labels.json'
    assert main(['evaluate', libero, '--calibration', params, '--profile', 'smolvla',
                 '--labels', str(labels), '--report', str(out)]) == 0
    report = json.loads(out.read_text())
    assert report['in_control_episodes'] == [1, 6]  # failures are not in control; 1 is unlabelled
    result = report['labels']
    assert result['n_labelled'] == 6 and result['n_failed'] == 5
    assert 0.0 <= result['auroc']['reversal_rate_mean'] <= 1.0
    assert 'episode_length_s' in result['auroc']


def test_auroc_by_hand():
    assert auroc([3, 4, 1, 2], [True, True, False, False]) == 1.0
    assert auroc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert auroc([1, 1, 1], [True, False, False]) == 0.5
    assert auroc([1, 2], [True, True]) is None


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('vla-safety evaluate: error:')
    assert needle in err, err


def test_bad_inputs_are_one_line_errors(aloha_cal, tmp_path, capsys, aloha, so101):
    params, _ = aloha_cal
    out = str(tmp_path / 'r.json')
    so101_params, _ = calibrate(tmp_path, so101, 30, 'so101')
    capsys.readouterr()
    one_line_error(capsys, ['evaluate', aloha, '--calibration', so101_params, '--fps', '30',
                            '--report', out], 'dimensions')
    one_line_error(capsys, ['evaluate', aloha, '--calibration', so101_params, '--report', out],
                   'calibrated at 30 Hz')
    one_line_error(capsys, ['evaluate', aloha, '--calibration', params, '--profile', 'rt2',
                            '--report', out], 'unknown monitor profile')
    one_line_error(capsys, ['evaluate', aloha, '--calibration', params, '--at', '5',
                            '--report', out], '--at needs --inject')
    one_line_error(capsys, ['evaluate', aloha, '--calibration', params, '--inject', 'gremlin',
                            '--report', out], 'unknown fault family')
    bad_labels = tmp_path / 'labels.json'
    bad_labels.write_text('{"0": "yes"}')
    one_line_error(capsys, ['evaluate', aloha, '--calibration', params,
                            '--labels', str(bad_labels), '--report', out], 'label of episode 0')
    with np.load(aloha, allow_pickle=False) as z:
        short = z['actions'][:20]
    short_path = tmp_path / 'short.npz'
    np.savez(short_path, actions=short, episode_index=np.zeros(20, dtype=np.int64))
    one_line_error(capsys, ['evaluate', str(short_path), '--fps', '50', '--calibration', params,
                            '--report', out], 'fewer than the monitor window')


def test_joint_order_mismatch_is_refused(aloha_cal):
    params, _ = aloha_cal
    contract, cal = load_calibration_for(params)
    settings = EvalSettings(cal, contract.dt, get_profile('generic'), CostModel(), contract)
    from vla_safety_filter.core.evaluation import check_compatible
    named = tuple(f'arm_{j}' for j in range(14))
    with pytest.raises(InputError, match='joint order'):
        check_compatible(EvalSettings(cal.__class__(named, cal.mu, cal.sigma, cal.scores,
                                                    cal.velocity_scale, cal.q, cal.alpha, cal.dt),
                                      contract.dt, settings.profile, settings.costs),
                         14, tuple(reversed(named)), 'x.npz')
    with pytest.raises(InputError, match='fewer than the monitor window'):
        run_episode(settings, 7, np.zeros((10, 14)))


def test_step_scores_calibrate_on_the_episodes_not_held_out(aloha_cal, tmp_path, aloha):
    params, cal_report = aloha_cal
    held_out = json.load(open(cal_report))['holdout_episodes']
    reports = {}
    for flag in ([], ['--no-motion']):
        out = tmp_path / f'eval{len(flag)}.json'
        assert main(['evaluate', aloha, '--calibration', params, '--holdout-from', cal_report,
                     '--inject', 'spike', '--at', '200', '--report', str(out)] + flag) == 0
        reports[bool(flag)] = json.loads(out.read_text())
    armed, disarmed = reports[False], reports[True]
    lengths = (500, 400, 400, 400)  # aloha episode lengths; each episode gives T - 2 step scores
    seen = sum(n - 2 for i, n in enumerate(lengths) if i not in held_out)
    assert armed['motion_calibration']['n_step_scores'] == seen
    assert armed['motion_calibration']['n_episodes'] == 4 - len(held_out)
    assert 'warning' in armed['motion_calibration']  # 2 episodes are far fewer than 19
    assert disarmed['motion_calibration'] is None
    for ep in armed['episodes']:
        assert 0.0 <= ep['step_exceedance_rate'] <= 1.0 and ep['step_score_max'] > 0
    spiked = [r for r in armed['injections'] if r['detection_kind'] == 'step_spike']
    assert spiked and all(r['detection_step'] in (200, 201) for r in spiked)
    assert not any(r['detection_kind'] == 'step_spike' for r in disarmed['injections'])


def test_pusht_report_carries_the_measured_cusum_and_catches_unnormalized_outputs(tmp_path,
                                                                                  data_file):
    """60 real PushT demos: the measured threshold beside the i.i.d. one; unnormalized alarmed."""
    with np.load(data_file('pusht_cchi_v7_replay.npz'), allow_pickle=False) as z:
        keep = z['episode_index'] < 60
        np.savez(tmp_path / 'pusht60.npz', actions=z['actions'][keep],
                 episode_index=z['episode_index'][keep])
    source, params = str(tmp_path / 'pusht60.npz'), str(tmp_path / 'p.yaml')
    cal_report, out = str(tmp_path / 'cal.json'), tmp_path / 'eval.json'
    assert main(['calibrate', source, '--fps', '10', '--output', params,
                 '--report', cal_report]) == 0
    assert main(['evaluate', source, '--calibration', params, '--holdout-from', cal_report,
                 '--inject', 'unnormalized,scale', '--report', str(out)]) == 0
    report = json.loads(out.read_text())
    cusum = report['motion_calibration']['cusum']
    assert cusum['n_episodes'] == 48 and cusum['h'] > cusum['h_iid']
    assert cusum['measured_iid_per_hour'] > cusum['iid_design_per_hour'] == 0.1
    assert report['false_alarms'] == 0
    assert report['detection']['unnormalized']['detected_within_deadline'] >= 0.95
    assert set(report['detection']) == {'unnormalized', 'scale'}
    calibration = json.loads(open(cal_report).read())['motion']['cusum']
    assert calibration['h_iid'] == cusum['h_iid']


def test_progress_counts_every_episode_run_clean_and_injected(aloha_cal, aloha):
    """The progress callback (the CLI's rich bar) sees every run, ending at its total."""
    from vla_safety_filter.core.evaluation import evaluate

    params, _ = aloha_cal
    contract, cal = load_calibration_for(params)
    settings = EvalSettings(cal, contract.dt, get_profile('generic'), CostModel(), contract)
    actions = np.load(aloha)['actions'].astype(float)[:300]
    calls = []
    evaluate(settings, [(0, actions), (1, actions)], families=['nan', 'freeze'], repeats=2,
             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 2 * (1 + 2 * 2)) for k in range(1, 11)]
