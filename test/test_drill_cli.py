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
Run `vla-safety drill` end to end on the real gym-pusht world.

Outputs, pairing, determinism, a contract from `vla-safety calibrate`, worker processes, and
one-line errors for bad input.
"""
import json
import os

from drill_support import run_cli
import numpy as np
import pytest
from vla_safety_filter.core.contract import Contract
from vla_safety_filter.core.params import CalibrationData, write_filter_params

pytest.importorskip('gym_pusht')
CONDITIONS = 'none,filter,filter+stop,offset+filter'


def run(*argv) -> tuple[int, str, str]:
    """Run `vla-safety drill ARGV`; return (exit code, stdout, stderr)."""
    return run_cli('drill', *argv)


@pytest.fixture(scope='module')
def params(tmp_path_factory, pusht_demos):
    """Return the parameter file `vla-safety calibrate` writes for the PushT demonstrations."""
    path = tmp_path_factory.mktemp('cal') / 'pusht.yaml'
    code, _, err = run_cli('calibrate', pusht_demos, '--joint-names', 'x,y', '--output', str(path))
    assert code == 0, err
    return path


@pytest.fixture(scope='module')
def drilled(params, tmp_path_factory, pusht_demos):
    """Two identical drills (3 paired seeds, 4 conditions, 50 steps), calibrated contract."""
    outputs = []
    for name in ('a', 'b'):
        folder = tmp_path_factory.mktemp(name)
        code, out, err = run('--policy', f'nn:{pusht_demos}', '--params', str(params),
                             '--episodes', '3', '--seed', '4', '--conditions', CONDITIONS,
                             '--max-steps', '50', '--output', str(folder))
        assert code == 0, err
        outputs.append((folder, out))
    return outputs


def test_drill_json_reports_every_condition(drilled):
    folder, out = drilled[0]
    report = json.loads((folder / 'drill.json').read_text())
    assert list(report['conditions']) == CONDITIONS.split(',')
    for name, c in report['conditions'].items():
        assert c['n'] == 3 and 0 <= c['successes'] <= 3
        lo, hi = c['ci95']
        assert 0 <= lo <= c['success_rate'] <= hi <= 1
        assert (c['mcnemar_p_vs_none'] is None) == (name == 'none')
        assert {'mean_cost', 'max_cost', 'share_over_budget', 'quantiles'} <= set(c['cost'])
        assert set(c['auroc_whole']) == set(c['auroc_first_50_steps'])
        assert sum(c['mean_cost_by_kind'].values()) == pytest.approx(c['cost']['mean_cost'])
        assert name in out
    assert report['contract'].endswith('pusht.yaml')


def test_figures_and_html_page_are_written(drilled):
    folder, _ = drilled[0]
    for name in ('success.png', 'costs.png', 'roc.png'):
        assert (folder / name).read_bytes()[:4] == b'\x89PNG'
    page = (folder / 'index.html').read_text()
    assert all(f'<td>{name}</td>' in page for name in CONDITIONS.split(','))


def test_episodes_npz_holds_paired_replayable_episodes_without_pickles(drilled):
    folder, _ = drilled[0]
    with np.load(folder / 'episodes.npz', allow_pickle=False) as z:
        data = {key: z[key] for key in z.files}
    n = 3 * 4
    assert data['seed'].tolist() == [4, 5, 6] * 4
    assert data['condition'].tolist() == [c for c in CONDITIONS.split(',') for _ in range(3)]
    assert data['success'].shape == data['n_steps'].shape == data['cost'].shape == (n,)
    steps = int(data['n_steps'].sum())
    assert data['episode'].shape == (steps,)
    assert np.array_equal(np.bincount(data['episode'], minlength=n), data['n_steps'])
    assert data['raw_action'].shape == data['executed_action'].shape == (steps, 2)
    assert data['world_state'].shape == (steps, 5)
    assert data['scores_whole'].shape == data['scores_early'].shape == (n, 7)
    assert 'reversal_rate' in data['score_names'].tolist()
    assert data['first_alarm_step'].shape == (n,)


def test_the_same_command_reproduces_every_episode(drilled):
    (a, out_a), (b, out_b) = drilled
    assert out_a == out_b
    with np.load(a / 'episodes.npz') as za, np.load(b / 'episodes.npz') as zb:
        for key in za.files:
            assert np.array_equal(za[key], zb[key]), key


def test_calibrating_on_the_nn_policys_demos_when_no_params(tmp_path, pusht_demos):
    code, out, err = run('--policy', f'nn:{pusht_demos}', '--episodes', '1', '--max-steps', '10',
                         '--no-plots', '--output', str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / 'drill.json').read_text())
    assert report['contract'] == pusht_demos and list(report['conditions']) == ['none', 'filter']
    assert sorted(os.listdir(tmp_path)) == ['drill.json', 'episodes.npz']


def test_a_policy_that_never_answers_is_counted_not_a_crash(tmp_path, params, data_file):
    """Demonstrations of another state size: every request is a policy fault at step 0."""
    other = data_file('pusht_lerobot_ep0_reward.npz')
    code, out, err = run('--policy', f'nn:{other}', '--params', str(params), '--episodes', '2',
                         '--conditions', 'none,filter', '--output', str(tmp_path))
    assert code == 0, err
    faults = [line for line in err.splitlines() if 'policy fault' in line]
    assert len(faults) == 2 and all('does not match' in line for line in faults), err
    report = json.loads((tmp_path / 'drill.json').read_text())
    assert all(c['policy_faults'] == 2 and c['successes'] == 0
               for c in report['conditions'].values())
    with np.load(tmp_path / 'episodes.npz', allow_pickle=False) as z:
        assert z['n_steps'].tolist() == [0] * 4 and z['world_state'].shape == (0, 5)


def contract_yaml(tmp_path, dim: int, dt: float) -> str:
    """Write a contract and its calibration file for `dim` joints at period dt."""
    names = tuple(f'j{i}' for i in range(dim))
    ones = np.ones(dim)
    CalibrationData(names, 250 * ones, 50 * ones, np.linspace(0, 3, 50), 80 * ones, 2.5, 0.05,
                    dt).save(str(tmp_path / 'c_calibration.npz'))
    contract = Contract(joint_names=names, lower=0 * ones, upper=500 * ones,
                        max_velocity=100 * ones, dt=dt)
    path = str(tmp_path / 'c.yaml')
    write_filter_params(path, contract, 'c_calibration.npz')
    return path


@pytest.mark.parametrize('dim, dt', [(3, 0.1), (2, 1 / 30)])
def test_a_contract_for_another_robot_or_rate_is_refused(tmp_path, dim, dt, pusht_demos):
    code, _, err = run('--policy', f'nn:{pusht_demos}', '--params',
                       contract_yaml(tmp_path, dim, dt), '--output', str(tmp_path / 'out'))
    assert code == 2 and 'world pusht needs 2 at dt 0.1 s' in err, err


@pytest.mark.parametrize('argv, message', [
    (['--policy', 'nn:/nowhere/demos.npz'], 'demonstration file not found'),
    (['--policy', 'nn:@PUSHT', '--conditions', 'none,warp'], "unknown condition 'warp'"),
    (['--policy', 'nn:@PUSHT', '--conditions', 'none,none'], 'listed twice'),
    (['--policy', 'magic:thing'], 'unknown policy'),
    (['--policy', 'ws://127.0.0.1:9'], 'give --params'),
    (['--policy', 'nn:@PUSHT', '--world', 'mars'], "unknown world 'mars'"),
    (['--policy', 'nn:@PUSHT', '--episodes', '0'], '--episodes must be >= 1'),
    (['--policy', 'nn:@PUSHT', '--conditions', 'wrong-unnormalizer'], '--sibling DEMOS.npz'),
    (['--policy', 'nn:@PUSHT', '--conditions', 'wrong-unnormalizer',
      '--sibling', 'DATA:so101_record_test_4ep.npz'], 'world pusht has 2'),
    (['--policy', 'nn:@PUSHT', '--params', '/nowhere/c.yaml'], 'parameter file not found'),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message, pusht_demos, data_file):
    argv = [data_file(a[5:]) if a.startswith('DATA:') else a.replace('@PUSHT', pusht_demos)
            for a in argv]
    code, out, err = run(*argv, '--output', str(tmp_path / 'out'))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'out').exists()
