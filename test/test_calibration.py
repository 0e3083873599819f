"""Split-conformal calibration and hardware limits: exact rules, coverage, repairs, real data."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from vla_safety_filter.core.calibration import calibrate, conformal_rank
from vla_safety_filter.core.episodes import read_episodes
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.limits import HardwareLimits, read_hardware_limits

from data_paths import DATA  # noqa: E402


def _nan(d):
    return np.full(d, np.nan)


def test_conformal_rank_is_the_exact_order_statistic_on_a_hand_example():
    assert conformal_rank(19, 0.1) == 18 and conformal_rank(19, 0.05) == 19
    assert conformal_rank(19, 0.01) == 20  # > n: falls back to the largest score
    # Two episodes: the fit episode (seed 0 -> episode 0) gives mu = 0, sigma = 1 exactly; the
    # score episode 1..19 then has scores 1..19, so the 18th smallest (alpha 0.1) is q = 18.
    fit = np.array([-1.0, 1.0, -1.0, 1.0])[:, None]
    score = np.arange(1.0, 20.0)[:, None]
    result = calibrate([fit, score], ['x'], dt=0.5, alpha=0.1, holdout=0.0, seed=0)
    assert result.report['fit_episodes'] == [0] and result.report['n_score_frames'] == 19
    assert result.data.q == 18.0 and result.data.mu[0] == 0.0 and result.data.sigma[0] == 1.0
    assert result.contract.lower[0] == -18.0 and result.contract.upper[0] == 18.0
    np.testing.assert_array_equal(result.data.scores, np.arange(1.0, 20.0))
    # Velocity uses every calibration episode: |diff|/dt = 4 (x3) and 2 (x18); m = 21, D = 1,
    # rank ceil(22 * 0.9) = 20 -> 4.
    assert result.report['velocity_rank'] == 20 and result.contract.max_velocity[0] == 4.0
    capped = calibrate([fit, score], ['x'], dt=0.5, alpha=0.01, holdout=0.0, seed=0)
    assert capped.data.q == 19.0
    assert any('rank 20 > n = 19' in note for note in capped.report['notes'])


def test_velocity_limit_is_per_joint_conformal_quantile_at_level_1_minus_alpha_over_d():
    rng = np.random.default_rng(3)
    episodes = [np.cumsum(rng.normal(size=(200, 2)) * [1.0, 5.0], axis=0) for _ in range(5)]
    result = calibrate(episodes, ['a', 'b'], dt=0.5, alpha=0.1, holdout=0.0)
    speed = np.abs(np.concatenate([np.diff(e, axis=0) for e in episodes])) / 0.5
    rank = int(np.ceil((len(speed) + 1) * (1 - 0.1 / 2)))
    np.testing.assert_allclose(result.contract.max_velocity, np.sort(speed, axis=0)[rank - 1])


def test_average_coverage_on_iid_data_is_at_least_1_minus_alpha():
    # Exchangeable i.i.d. frames: E[coverage of a new frame] >= 1 - alpha by the conformal argument.
    rng = np.random.default_rng(7)
    alpha, covered = 0.1, []
    for trial in range(200):
        episodes = [rng.standard_t(df=4, size=(10, 3)) for _ in range(3)]  # n = 30 frames
        contract = calibrate(episodes, 'abc', dt=0.1, alpha=alpha, holdout=0.0).contract
        test = rng.standard_t(df=4, size=(50, 3))
        covered.append(np.mean(np.all((test >= contract.lower) & (test <= contract.upper), axis=1)))
    # 200 trials: the standard error of the mean coverage is ~0.004; allow 3 of them.
    assert np.mean(covered) >= 1 - alpha - 0.012
    assert np.mean(covered) < 0.99  # and the bounds are not trivially wide


def test_split_is_by_episode_and_seeded():
    rng = np.random.default_rng(0)
    episodes = [np.full((8, 2), float(k)) + rng.normal(size=(8, 2)) * 0.01 for k in range(10)]
    result = calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.2, seed=5)
    report = result.report
    assert report['n_holdout_episodes'] == 2 and report['n_calibration_episodes'] == 8
    assert sorted(report['calibration_episodes'] + report['holdout_episodes']) == list(range(10))
    assert set(report['fit_episodes']) < set(report['calibration_episodes'])
    assert len(report['fit_episodes']) == 4 and report['n_score_frames'] == 32
    expected_mu = np.concatenate([episodes[i] for i in report['fit_episodes']]).mean(axis=0)
    np.testing.assert_allclose(result.data.mu, expected_mu)
    assert report['n_calibration_frames'] == 64
    again = calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.2, seed=5).report
    assert again['holdout_episodes'] == report['holdout_episodes']
    other = calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.2, seed=6).report
    assert other['holdout_episodes'] != report['holdout_episodes']
    three = calibrate(episodes[:3], ['a', 'b'], dt=0.1, holdout=0.1).report
    assert three['n_holdout_episodes'] == 1  # at least one held out when there are >= 3 episodes
    json.dumps(report)


def test_too_few_calibration_episodes_and_bad_arguments_are_input_errors():
    ep = np.zeros((5, 2)) + np.arange(5)[:, None]
    with pytest.raises(InputError, match='at least 2 calibration episodes'):
        calibrate([ep, ep, ep], ['a', 'b'], dt=0.1, holdout=0.5)
    with pytest.raises(InputError, match='alpha'):
        calibrate([ep, ep], ['a', 'b'], dt=0.1, alpha=1.5)
    with pytest.raises(InputError, match=r'expected \[T, 3\]'):
        calibrate([ep, ep], ['a', 'b', 'c'], dt=0.1)


def test_zero_variance_joint_is_repaired_and_reported():
    rng = np.random.default_rng(1)
    episodes = [np.column_stack([rng.normal(size=20), np.full(20, 2.0)]) for _ in range(4)]
    result = calibrate(episodes, ['moving', 'frozen'], dt=0.1, holdout=0.0)
    assert np.all(np.isfinite(result.data.scores))
    assert result.data.sigma[1] == pytest.approx(2e-6)
    assert result.contract.max_velocity[1] > 0
    repairs = ' '.join(result.report['repairs'])
    assert "'frozen'" in repairs and 'zero variance' in repairs and "'moving'" not in repairs
    assert result.contract.lower[1] <= 2.0 <= result.contract.upper[1]


def _limits(lower, upper, vmax, acc=None):
    d = len(lower)
    return HardwareLimits(np.array(lower, float), np.array(upper, float), np.array(vmax, float),
                          _nan(d) if acc is None else np.array(acc, float), missing=('b',),
                          source='hw.yaml')


def test_hardware_limits_intersect_and_are_reported():
    rng = np.random.default_rng(2)
    episodes = [np.cumsum(rng.normal(size=(50, 2)), axis=0) for _ in range(4)]
    free = calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.0).contract
    hw = _limits([free.lower[0] + 1, np.nan], [np.nan, free.upper[1] + 100],
                 [free.max_velocity[0] / 2, np.nan])
    result = calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.0, hardware=hw)
    c = result.contract
    assert c.lower[0] == free.lower[0] + 1 and c.upper[0] == free.upper[0]
    assert c.upper[1] == free.upper[1]  # the looser hardware limit changes nothing
    assert c.max_velocity[0] == free.max_velocity[0] / 2 and c.max_velocity[1] == free.max_velocity[1]
    assert result.report['hardware']['missing_joints'] == ['b']
    assert len(result.report['hardware']['clipped']) == 2
    with pytest.raises(InputError, match="joint 'a'.*does not overlap"):
        calibrate(episodes, ['a', 'b'], dt=0.1, holdout=0.0,
                  hardware=_limits([free.upper[0] + 1, np.nan], [np.nan, np.nan], [np.nan, np.nan]))


URDF = """<?xml version="1.0"?>
<robot name="arm">
  <joint name="pan" type="revolute"><limit lower="-1.5" upper="1.5" velocity="2.0" effort="5"/>
    <safety_controller soft_lower_limit="-1.4" soft_upper_limit="1.6" k_velocity="1"/></joint>
  <joint name="roll" type="continuous"><limit velocity="3.0" effort="5" lower="-9" upper="9"/></joint>
  <joint name="base" type="fixed"/>
  <transmission name="t"><joint name="lift"><limit lower="0" upper="0" velocity="0"/></joint></transmission>
</robot>
"""

JOINT_LIMITS_YAML = """
arm_controller:
  ros__parameters:
    joint_limits:
      pan: {has_position_limits: true, min_position: -1.0, max_position: 1.0,
            has_velocity_limits: false, max_velocity: 9.0}
      roll: {has_velocity_limits: true, max_velocity: 4.0,
             has_acceleration_limits: true, max_acceleration: 10.0}
"""


def test_urdf_limits_with_soft_limits_continuous_and_missing_joints(tmp_path):
    path = tmp_path / 'arm.urdf'
    path.write_text(URDF)
    hw = read_hardware_limits(str(path), ['pan', 'roll', 'lift'])
    np.testing.assert_array_equal(hw.lower[:2], [-1.4, np.nan])
    np.testing.assert_array_equal(hw.upper[:2], [1.5, np.nan])  # soft 1.6 is looser than 1.5
    np.testing.assert_array_equal(hw.max_velocity[:2], [2.0, 3.0])
    assert hw.missing == ('lift',)  # a <joint> inside <transmission> is not a joint definition
    with pytest.raises(InputError, match='none of the joints'):
        read_hardware_limits(str(path), ['elbow'])


def test_joint_limits_yaml_needs_the_has_flag(tmp_path):
    path = tmp_path / 'limits.yaml'
    path.write_text(JOINT_LIMITS_YAML)
    hw = read_hardware_limits(str(path), ['pan', 'roll'])
    np.testing.assert_array_equal(hw.lower, [-1.0, np.nan])
    np.testing.assert_array_equal(hw.max_velocity, [np.nan, 4.0])  # pan's 9.0 has its flag false
    np.testing.assert_array_equal(hw.max_acceleration, [np.nan, 10.0])
    bad = tmp_path / 'bad.yaml'
    bad.write_text('joint_limits:\n  pan: {has_velocity_limits: true}\n')
    with pytest.raises(InputError, match='has_velocity_limits is true but max_velocity is None'):
        read_hardware_limits(str(bad), ['pan'])
    (tmp_path / 'empty.yaml').write_text('foo: 1\n')
    with pytest.raises(InputError, match='no `joint_limits:` section'):
        read_hardware_limits(str(tmp_path / 'empty.yaml'), ['pan'])


# --- real data ------------------------------------------------------------------------------------

def _episode_cv_coverage(name, alpha=0.05, folds=5):
    """Per-episode held-out coverage with every episode held out once (K-fold by episode)."""
    es = read_episodes(os.path.join(DATA, name))
    eps = [e.actions for e in es.episodes]
    perm = np.random.default_rng(0).permutation(len(eps))
    position, velocity = np.empty(len(eps)), np.empty(len(eps))
    for fold in np.array_split(perm, min(folds, len(eps))):
        rest = [eps[i] for i in sorted(set(range(len(eps))) - set(fold))]
        c = calibrate(rest, es.joint_names, 1 / es.fps, alpha=alpha, holdout=0.0).contract
        for i in fold:
            position[i] = np.mean(np.all((eps[i] >= c.lower) & (eps[i] <= c.upper), axis=1))
            v = np.abs(np.diff(eps[i], axis=0)) * es.fps
            velocity[i] = np.mean(np.all(v <= c.max_velocity, axis=1))
    return position, velocity


def _slack(values):
    """One-sided 99 % sampling margin of a mean over k episodes: t_{0.99,k-1} sd / sqrt(k).

    Frames within an episode are strongly autocorrelated, so the episode, not the frame, is the
    independent unit; the margin is what episode-to-episode variation alone explains.
    """
    return stats.t.ppf(0.99, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))


@pytest.mark.parametrize('name', ['pusht_cchi_v7_replay.npz', 'so101_record_test_4ep.npz',
                                  'aloha_sim_lerobot_4ep.npz'])
def test_real_data_held_out_coverage_meets_target_within_episode_sampling_slack(name):
    # Same rule for every dataset. Slack: PushT ~0.01, SO-101 ~0.17, ALOHA ~0.8 (4 unlike
    # episodes: the test is then uninformative, which is why calibrate warns, see below).
    position, velocity = _episode_cv_coverage(name)
    assert position.mean() >= 0.95 - _slack(position)
    assert velocity.mean() >= 0.95 - _slack(velocity)


def test_pusht_report_coverage_and_tightness():
    es = read_episodes(os.path.join(DATA, 'pusht_cchi_v7_replay.npz'))
    report = calibrate([e.actions for e in es.episodes], es.joint_names, 1 / es.fps).report
    assert report['n_holdout_episodes'] == 41
    per_episode = np.array(report['holdout_position_coverage_per_episode'])
    assert report['holdout_position_coverage_slack'] == pytest.approx(_slack(per_episode))
    assert per_episode.mean() >= 0.95 - report['holdout_position_coverage_slack']
    assert report['warnings'] == []
    assert report['tightness_vs_heuristic']['mean'] < 0.9  # tighter than min/max ± 10 %


def test_aloha_mixes_four_tasks_and_the_report_says_the_contract_is_loose():
    # The 4 ALOHA episodes come from 4 different datasets (insertion / transfer-cube, human /
    # scripted): they are not exchangeable. The score episodes then sit far from the fit episode,
    # q explodes, and calibrate must say the contract is loose instead of reporting success.
    es = read_episodes(os.path.join(DATA, 'aloha_sim_lerobot_4ep.npz'))
    report = calibrate([e.actions for e in es.episodes], es.joint_names, 1 / es.fps).report
    assert report['tightness_vs_heuristic']['mean'] > 2.0
    assert any('wider than the calibration data' in w for w in report['warnings'])
