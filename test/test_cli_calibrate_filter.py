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

"""`vla-safety calibrate` and `vla-safety filter` end to end on real data, and error exits."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from vla_safety_filter.cli import main
from vla_safety_filter.core.contract import Guard, REASONS
from vla_safety_filter.core.params import load_calibration_for


@pytest.fixture(scope='module')
def so101(data_file):
    """Return the real recording so101_record_test_4ep.npz."""
    return data_file('so101_record_test_4ep.npz')


@pytest.fixture(scope='module')
def aloha(data_file):
    """Return the real recording aloha_sim_lerobot_4ep.npz."""
    return data_file('aloha_sim_lerobot_4ep.npz')


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory, so101):
    """One calibration (with report and plot) shared by the tests of this module."""
    folder = tmp_path_factory.mktemp('cal')
    params = folder / 'so101.yaml'
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(['calibrate', so101, '--output', str(params),
                     '--report', str(folder / 'r.json'), '--plot', str(folder / 'p.png'),
                     '--alpha', '0.1'])
    assert code == 0
    return params, stdout.getvalue()


def test_calibrate_writes_params_calibration_report_and_plot(calibrated):
    params, out = calibrated
    tmp_path = params.parent
    contract, cal = load_calibration_for(str(params))
    assert contract.dim == 6 and contract.dt == pytest.approx(1 / 30)
    assert os.path.exists(tmp_path / 'so101_calibration.npz')
    assert 'calibration_file: so101_calibration.npz' in params.read_text()
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['alpha'] == 0.1 and report['fps'] == 30.0
    assert cal.q == pytest.approx(report['q']) and np.all(np.diff(cal.scores) >= 0)
    np.testing.assert_allclose(contract.lower, report['lower'])
    assert (tmp_path / 'p.png').read_bytes()[:4] == b'\x89PNG'
    assert 'gripper.pos' in out and 'held-out position coverage' in out
    assert f'{report["holdout_position_coverage"]:.3f}' in out
    # 4 episodes: K = 2 score episodes, far below the 9 that alpha 0.1 needs: no claim, a warning.
    assert report['n_score_episodes'] == 2 and report['coverage_claimed'] is False
    assert report['coverage'] == 'episode' and 'NOT claimed' in out
    assert 'NO coverage is claimed' in ' '.join(out.split())


def test_calibrate_coverage_option_frame_gives_narrower_bounds_than_whole_episode(tmp_path,
                                                                                  data_file):
    pusht = data_file('pusht_cchi_v7_replay.npz')
    reports = {}
    for mode in ('episode', 'frame'):
        params, path = tmp_path / f'{mode}.yaml', tmp_path / f'{mode}.json'
        assert main(['calibrate', pusht, '--coverage', mode, '--output', str(params),
                     '--report', str(path)]) == 0
        reports[mode] = json.loads(path.read_text())
    assert reports['frame']['coverage'] == 'frame' and reports['frame']['coverage_claimed']
    assert reports['frame']['q'] < reports['episode']['q']
    assert (reports['episode']['holdout_position_episode_coverage']
            > reports['frame']['holdout_position_episode_coverage'])


def test_filter_runs_the_guard_per_episode_and_counts_interventions(tmp_path, calibrated, so101):
    params, _ = calibrated
    out = tmp_path / 'filtered.npz'
    assert main(['filter', so101, '--params', str(params), '--output', str(out)]) == 0
    result = np.load(out)
    raw = np.load(so101)
    assert result['executed'].shape == raw['actions'].shape
    np.testing.assert_array_equal(result['episode_index'], raw['episode_index'])
    contract, _ = load_calibration_for(str(params))
    # Episode 2 replayed by hand: seeded from observation.state at its first step.
    rows = raw['episode_index'] == 2
    guard = Guard(contract)
    guard.reset(raw['observation.state'][rows][0])
    expected, _ = guard.run(raw['actions'][rows].astype(np.float64))
    # the executive limits by elapsed simulated time (t * dt differences): equal up to round-off
    np.testing.assert_allclose(result['executed'][rows], expected, rtol=0, atol=1e-9)
    step = np.abs(np.diff(result['executed'][rows], axis=0))
    assert np.all(step <= contract.max_velocity * contract.dt + 1e-9)
    counts = {r: int(result[f'count_{r}']) for r in REASONS}
    assert counts['velocity'] > 0 and counts['nonfinite'] == 0
    assert set(result['state']) == {'running'}


def test_filter_replays_a_log_with_nonfinite_rows_as_holds_and_lists_them(tmp_path, calibrated,
                                                                          capsys, so101):
    """Regression (defect 14): one NaN row made `vla-safety filter` refuse the whole log."""
    params, _ = calibrated
    raw = dict(np.load(so101))
    actions = raw['actions'].astype(np.float64)
    start = int(np.flatnonzero(raw['episode_index'] == 1)[0])
    bad = [start + 40, start + 41, start + 42, start + 90]
    actions[bad[:3]] = np.nan
    actions[bad[3], 2] = np.inf
    log = tmp_path / 'policy_log.npz'
    np.savez(log, **{**raw, 'actions': actions})
    out = tmp_path / 'filtered.npz'
    assert main(['filter', str(log), '--params', str(params), '--output', str(out)]) == 0
    printed = capsys.readouterr().out
    result = np.load(out)
    assert int(result['count_nonfinite']) == 4
    nonfinite = result['event_row'][result['event_reason'] == 'nonfinite']
    assert sorted(nonfinite.tolist()) == bad
    assert f'refused/held (nonfinite): 4 at rows (episode:row) 1:{bad[0]}' in printed
    executed = result['executed']
    assert np.all(np.isfinite(executed)) and executed.shape == actions.shape
    contract, _ = load_calibration_for(str(params))
    rows = raw['episode_index'] == 1
    step = np.abs(np.diff(executed[rows], axis=0))
    assert np.all(step <= contract.max_velocity * contract.dt + 1e-9)   # holds brake, no jump
    assert np.all(executed >= contract.lower - 1e-9) and np.all(executed <= contract.upper + 1e-9)
    for row in bad:                                  # a held row never takes the NaN request
        assert np.all(np.abs(executed[row] - executed[row - 1])
                      <= contract.max_velocity * contract.dt + 1e-9)


def test_calibrate_still_refuses_nonfinite_demonstrations(tmp_path, capsys, so101):
    raw = dict(np.load(so101))
    actions = raw['actions'].astype(np.float64)
    actions[7, 1] = np.nan
    log = tmp_path / 'demos.npz'
    np.savez(log, **{**raw, 'actions': actions})
    assert main(['calibrate', str(log), '--output', str(tmp_path / 'p.yaml')]) == 2
    assert 'step 7: action[1] is not finite' in capsys.readouterr().err


def test_filter_refuses_params_of_another_dimension(tmp_path, calibrated, capsys, aloha):
    params, _ = calibrated
    code = main(['filter', aloha, '--params', str(params), '--output', str(tmp_path / 'x.npz')])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1
    assert err.startswith('vla-safety filter: error: ') and '14 action dimensions' in err
    assert not (tmp_path / 'x.npz').exists()


def test_calibrate_needs_fps_when_the_input_has_none(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = enumerate(rng.normal(size=(40, 2)))
    lines = ['episode_index,a,b'] + [f'{t // 10},{x:.4f},{y:.4f}' for t, (x, y) in rows]
    csv_path = tmp_path / 'demo.csv'
    csv_path.write_text('\n'.join(lines) + '\n')
    code = main(['calibrate', str(csv_path), '--output', str(tmp_path / 'p.yaml')])
    assert code == 2 and 'pass --fps' in capsys.readouterr().err
    assert main(['calibrate', str(csv_path), '--fps', '20',
                 '--output', str(tmp_path / 'p.yaml')]) == 0
    contract, _ = load_calibration_for(str(tmp_path / 'p.yaml'))
    assert contract.joint_names == ('a', 'b') and contract.dt == pytest.approx(0.05)


def test_calibrate_with_hardware_limits_and_bad_inputs(tmp_path, capsys, so101):
    limits = tmp_path / 'limits.yaml'
    limits.write_text('joint_limits:\n  gripper.pos: {has_position_limits: true, '
                      'min_position: 0.0, max_position: 30.0}\n')
    params = tmp_path / 'p.yaml'
    assert main(['calibrate', so101, '--hardware-limits', str(limits),
                 '--output', str(params)]) == 0
    out = capsys.readouterr().out
    contract, _ = load_calibration_for(str(params))
    assert contract.lower[5] == 0.0 and contract.upper[5] == 30.0
    assert 'no hardware limits for: shoulder_pan.pos' in out
    for argv, message in (
            (['calibrate', str(tmp_path / 'missing.npz'), '--output', str(params)], 'not found'),
            (['calibrate', so101, '--alpha', '2', '--output', str(params)], 'alpha must be in'),
            (['calibrate', so101, '--output', str(tmp_path / 'no' / 'p.yaml')], 'does not exist'),
            (['filter', so101, '--params', str(tmp_path / 'none.yaml'), '--output', 'x.npz'],
             'parameter file not found')):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err


URDF_NAMES = ('shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper')


@pytest.mark.parametrize('spec', [','.join(URDF_NAMES),
                                  ','.join(f'{n}.pos={n}' for n in URDF_NAMES)])
def test_calibrate_renames_joints_to_the_urdf_names(tmp_path, spec, capsys, so101):
    """
    Rename the joints to the URDF names and find hardware limits under them.

    Regression (defect 15): LeRobot feature names (shoulder_pan.pos) never match a real
    /joint_states; --joint-names maps them, and hardware limits are found under the new names.
    """
    limits = tmp_path / 'limits.yaml'
    limits.write_text('joint_limits:\n  gripper: {has_position_limits: true, '
                      'min_position: 0.0, max_position: 30.0}\n')
    params = tmp_path / 'p.yaml'
    assert main(['calibrate', so101, '--joint-names', spec, '--hardware-limits', str(limits),
                 '--output', str(params), '--report', str(tmp_path / 'r.json')]) == 0
    contract, cal = load_calibration_for(str(params))
    assert contract.joint_names == URDF_NAMES and cal.joint_names == URDF_NAMES
    assert contract.upper[5] == 30.0
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['input_joint_names'][0] == 'shoulder_pan.pos'
    assert 'no hardware limits for: shoulder_pan,' in capsys.readouterr().out


def test_calibrate_joint_names_partial_pairs_and_bad_specs(tmp_path, capsys, so101):
    params = tmp_path / 'p.yaml'
    assert main(['calibrate', so101, '--joint-names', 'gripper.pos=gripper',
                 '--output', str(params)]) == 0
    contract, _ = load_calibration_for(str(params))
    assert contract.joint_names[0] == 'shoulder_pan.pos' and contract.joint_names[5] == 'gripper'
    capsys.readouterr()
    for spec, message in (('a,b,c', 'gives 3 names but the input has 6'),
                          ('elbow=arm', "['elbow'] are not joints"),
                          ('a,a,b,c,d,e', 'unique'),
                          ('gripper.pos=', 'not an old=new pair'),
                          ('gripper.pos=wrist_roll.pos', 'unique')):
        assert main(['calibrate', so101, '--joint-names', spec, '--output', str(params)]) == 2
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err, (spec, err)


def test_shipped_so101_config_uses_urdf_joint_names():
    from vla_safety_filter.core.params import read_node_params
    path = os.path.join(os.path.dirname(__file__), '..', 'config', 'so101_pipeline.yaml')
    assert tuple(read_node_params(path)['joint_names']) == URDF_NAMES
    assert tuple(read_node_params(path, 'policy_bridge')['joint_names']) == URDF_NAMES
    assert '--joint-names' in open(path).read()


def test_calibrate_progress_goes_to_stderr_only_when_asked_off_a_terminal(tmp_path, so101, capsys):
    outputs = {}
    for flags in ((), ('--progress',)):
        assert main(['calibrate', so101, '--output', str(tmp_path / 'p.yaml'), *flags]) == 0
        outputs[flags] = capsys.readouterr()
    assert outputs[()].err == ''                       # captured stderr is not a terminal
    shown = outputs[('--progress',)]
    for stage in ('reading ', 'checking episodes', 'scoring positions',
                  'measuring velocities', 'calibrating motion scores',
                  'checking held-out episodes'):
        assert stage in shown.err and stage not in shown.out
    assert shown.out == outputs[()].out                # the summary is unchanged
