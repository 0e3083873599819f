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

"""Episode readers: real npz streams, LeRobot v2.1 / v3.0 datasets written here, csv, bad input."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vla_safety_filter.core.episodes import read_episodes, read_many
from vla_safety_filter.core.errors import InputError

ALOHA, PUSHT = 'aloha_sim_lerobot_4ep.npz', 'pusht_cchi_v7_replay.npz'
SO101 = 'so101_record_test_4ep.npz'
SO101_NAMES = ('shoulder_pan.pos', 'shoulder_lift.pos', 'elbow_flex.pos', 'wrist_flex.pos',
               'wrist_roll.pos', 'gripper.pos')


def test_real_npz_files_read_whole_episodes_with_rate_and_names(data_file):
    aloha_path = data_file(ALOHA)
    pusht_path = data_file(PUSHT)
    so101_path = data_file(SO101)
    aloha = read_episodes(aloha_path)
    assert len(aloha.episodes) == 4 and aloha.fps == 50.0
    assert aloha.joint_names == tuple(f'joint_{j}' for j in range(14))
    raw = np.load(aloha_path)
    first = raw['actions'][raw['episode_index'] == 0]
    np.testing.assert_array_equal(aloha.episodes[0].actions, first.astype(np.float64))
    assert aloha.episodes[0].actions.dtype == np.float64
    assert aloha.episodes[0].state.shape == first.shape

    pusht = read_episodes(pusht_path)
    assert len(pusht.episodes) == 206 and pusht.fps == 10.0 and pusht.dim == 2
    assert sum(len(e.actions) for e in pusht.episodes) == 25650
    assert pusht.episodes[0].state.shape[1] == 5

    so101 = read_episodes(so101_path, fps=15.0)
    assert so101.joint_names == SO101_NAMES and so101.fps == 15.0


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_frames_are_ordered_by_frame_index_within_episodes(tmp_path):
    actions = np.arange(16, dtype=np.float64).reshape(8, 2)
    path = _save(tmp_path / 'x.npz', actions=actions[::-1],
                 episode_index=np.array([1] * 4 + [0] * 4),
                 frame_index=np.array([3, 2, 1, 0] * 2))
    eps = read_episodes(path).episodes
    assert [e.index for e in eps] == [0, 1]
    np.testing.assert_array_equal(eps[0].actions, actions[:4])
    np.testing.assert_array_equal(eps[1].actions, actions[4:])
    assert read_episodes(path).fps is None


@pytest.mark.parametrize('arrays, message', [
    ({'episode_index': np.zeros(5, dtype=int)}, 'no `actions`'),
    ({'actions': np.zeros(5)}, '[T, D]'),
    ({'actions': np.zeros((5, 2)), 'episode_index': np.zeros(4, dtype=int)}, 'episode_index'),
    ({'actions': np.zeros((5, 2)), 'action_names': np.array(['a'])}, '1 action names'),
    ({'actions': np.zeros((3, 2))}, 'episode 0 has 3 steps'),
    ({'actions': np.zeros((5, 2)), 'observation.state': np.zeros((4, 2))}, 'observation.state'),
])
def test_bad_npz_is_refused_with_the_field_named(tmp_path, arrays, message):
    path = _save(tmp_path / 'bad.npz', **arrays)
    with pytest.raises(InputError, match=message.replace('[', r'\[').replace(']', r'\]')):
        read_episodes(path)


def test_nonfinite_action_is_reported_with_episode_and_step_not_dropped(tmp_path):
    actions = np.zeros((10, 3))
    actions[7, 2] = np.nan
    path = _save(tmp_path / 'nan.npz', actions=actions, episode_index=np.array([4] * 5 + [9] * 5))
    with pytest.raises(InputError, match=r'nan\.npz: episode 9 step 2: action\[2\] is not finite'):
        read_episodes(path)


def test_missing_corrupt_and_unknown_files_are_input_errors(tmp_path, data_file):
    so101_path = data_file(SO101)
    with pytest.raises(InputError, match='not found'):
        read_episodes(str(tmp_path / 'nope.npz'))
    corrupt = tmp_path / 'corrupt.npz'
    corrupt.write_bytes(b'PK\x03\x04 definitely not a zip')
    with pytest.raises(InputError, match='cannot read npz'):
        read_episodes(str(corrupt))
    other = tmp_path / 'x.txt'
    other.write_text('1,2')
    with pytest.raises(InputError, match='unsupported input'):
        read_episodes(str(other))
    with pytest.raises(InputError, match='not a LeRobot dataset'):
        read_episodes(str(tmp_path))
    with pytest.raises(InputError, match='fps must be a positive'):
        read_episodes(so101_path, fps=0.0)


# --- LeRobot datasets -------------------------------------------------------------------------

def _info(root, version, dim, names):
    os.makedirs(root / 'meta', exist_ok=True)
    info = {'codebase_version': version, 'fps': 30,
            'features': {'action': {'dtype': 'float32', 'shape': [dim], 'names': names}}}
    (root / 'meta' / 'info.json').write_text(json.dumps(info))


def _table(actions, episode, frames):
    return pa.table({
        'action': pa.array([list(map(float, a)) for a in actions], type=pa.list_(pa.float32())),
        'observation.state': pa.array([list(map(float, a + 1)) for a in actions],
                                      type=pa.list_(pa.float32())),
        'episode_index': pa.array(episode, type=pa.int64()),
        'frame_index': pa.array(frames, type=pa.int64()),
    })


def test_lerobot_v21_one_episode_per_file_with_dict_names(tmp_path):
    root = tmp_path / 'ds21'
    _info(root, 'v2.1', 3, {'motors': ['a', 'b', 'c']})
    os.makedirs(root / 'data' / 'chunk-000')
    rng = np.random.default_rng(0)
    episodes = [rng.normal(size=(6, 3)), rng.normal(size=(5, 3))]
    for k, acts in enumerate(episodes):
        pq.write_table(_table(acts, [k] * len(acts), list(range(len(acts)))),
                       root / 'data' / 'chunk-000' / f'episode_{k:06d}.parquet')
    seen = []
    result = read_episodes(str(root), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]                     # one report per data file read
    assert result.joint_names == ('a', 'b', 'c') and result.fps == 30.0
    assert [e.index for e in result.episodes] == [0, 1]
    for read, acts in zip(result.episodes, episodes):
        np.testing.assert_allclose(read.actions, acts.astype(np.float32))
        np.testing.assert_allclose(read.state, (acts + 1).astype(np.float32))


def test_lerobot_v30_episode_split_across_files_and_shuffled_frames(tmp_path):
    root = tmp_path / 'ds30'
    _info(root, 'v3.0', 2, ['x', 'y'])
    os.makedirs(root / 'data' / 'chunk-000')
    ep0 = np.arange(12.0).reshape(6, 2)
    ep1 = 100 + np.arange(10.0).reshape(5, 2)
    # file-000: frames 3,1,0 of episode 0; file-001: frames 2,5,4 of episode 0, all of episode 1.
    pq.write_table(_table(ep0[[3, 1, 0]], [0, 0, 0], [3, 1, 0]),
                   root / 'data' / 'chunk-000' / 'file-000.parquet')
    pq.write_table(_table(np.vstack([ep0[[2, 5, 4]], ep1]), [0, 0, 0] + [1] * 5,
                          [2, 5, 4, 0, 1, 2, 3, 4]),
                   root / 'data' / 'chunk-000' / 'file-001.parquet')
    result = read_episodes(str(root), fps=15.0)
    assert result.fps == 15.0 and result.joint_names == ('x', 'y')
    np.testing.assert_array_equal(result.episodes[0].actions, ep0)
    np.testing.assert_array_equal(result.episodes[1].actions, ep1)


def test_lerobot_ragged_or_corrupt_data_is_refused(tmp_path):
    root = tmp_path / 'bad'
    _info(root, 'v3.0', 2, None)
    os.makedirs(root / 'data' / 'chunk-000')
    ragged = pa.table({'action': pa.array([[0.0, 1.0]] * 4 + [[0.0]], type=pa.list_(pa.float64())),
                       'episode_index': pa.array([0] * 5, type=pa.int64())})
    pq.write_table(ragged, root / 'data' / 'chunk-000' / 'file-000.parquet')
    with pytest.raises(InputError, match='row 4 has 1 values'):
        read_episodes(str(root))
    (root / 'data' / 'chunk-000' / 'file-000.parquet').write_bytes(b'PAR1 garbage')
    with pytest.raises(InputError, match='cannot read parquet'):
        read_episodes(str(root))
    _info(root, 'v1.6', 2, None)
    with pytest.raises(InputError, match="codebase_version 'v1.6'"):
        read_episodes(str(root))


# --- csv ----------------------------------------------------------------------------------------

def test_csv_with_prefixed_action_columns_and_timestamps(tmp_path):
    lines = ['episode_index,frame_index,timestamp,task,action.shoulder,action.elbow']
    for ep in (0, 1):
        for t in range(5):
            lines.append(f'{ep},{t},{t * 0.05:.2f},pick,{ep + t * 0.1},{-t}')
    path = tmp_path / 'demo.csv'
    path.write_text('\n'.join(lines) + '\n')
    result = read_episodes(str(path))
    assert result.joint_names == ('shoulder', 'elbow') and result.fps == 20.0
    assert len(result.episodes) == 2
    np.testing.assert_allclose(result.episodes[1].actions[:, 0], 1 + 0.1 * np.arange(5))


def test_csv_without_prefix_uses_other_numeric_columns(tmp_path):
    path = tmp_path / 'plain.csv'
    path.write_text('j1,j2,label\n' + ''.join(f'{t},{2 * t},go\n' for t in range(6)))
    result = read_episodes(str(path))
    assert result.joint_names == ('j1', 'j2') and len(result.episodes) == 1 and result.fps is None
    bad = tmp_path / 'bad.csv'
    bad.write_text('j1,j2\n1,2\n3,oops\n5,6\n7,8\n')
    with pytest.raises(InputError, match="line 3 column 'j2': 'oops' is not a number"):
        read_episodes(str(bad))


# --- several files ----------------------------------------------------------------------------

def test_read_many_concatenates_and_renumbers(tmp_path, data_file):
    aloha_path = data_file(ALOHA)
    so101_path = data_file(SO101)
    calls = []
    both = read_many([so101_path, so101_path],
                     progress=lambda path, done, total: calls.append((path, done, total)))
    assert len(both.episodes) == 8 and [e.index for e in both.episodes] == list(range(8))
    assert both.fps == 30.0 and calls == [(so101_path, 1, 1), (so101_path, 1, 1)]
    with pytest.raises(InputError, match='has 14 action dimensions but .*so101'):
        read_many([so101_path, aloha_path])
    with pytest.raises(InputError, match='no input'):
        read_many([])


def test_policy_logs_may_keep_nonfinite_action_rows_when_asked(tmp_path):
    """
    Replay logs with NaN rows through `vla-safety filter`, which must show them (defect 14).

    Calibration keeps refusing them (the default).
    """
    actions = np.arange(24, dtype=float).reshape(12, 2)
    actions[3] = np.nan
    actions[8, 1] = -np.inf
    npz = tmp_path / 'log.npz'
    np.savez(npz, actions=actions, episode_index=np.repeat([0, 1], 6))
    csv_path = tmp_path / 'log.csv'
    csv_path.write_text('episode_index,a,b\n' + ''.join(
        f'{e},{x},{y}\n' for e, (x, y) in zip(np.repeat([0, 1], 6), actions)))
    for path in (npz, csv_path):
        with pytest.raises(InputError, match='not finite'):
            read_episodes(str(path))
        episodes = read_episodes(str(path), allow_nonfinite=True).episodes
        got = np.concatenate([ep.actions for ep in episodes])
        np.testing.assert_array_equal(got, actions)   # NaN compares equal position by position


def test_npz_episodes_carry_their_timestamps_in_frame_order(shared_data):
    data = read_episodes(os.path.join(shared_data, 'so101_record_test_4ep.npz'))
    for episode in data.episodes:
        assert episode.timestamps is not None
        assert episode.timestamps.shape == (len(episode.actions),)
        assert np.all(np.diff(episode.timestamps) > 0)


def test_a_dropped_frame_does_not_widen_the_calibrated_velocity(tmp_path):
    from vla_safety_filter.core.calibration import calibrate
    rng = np.random.default_rng(1)
    episodes = [np.cumsum(rng.normal(0, 0.01, (80, 2)), axis=0) for _ in range(30)]
    rows, eps, ts = [], [], []
    for k, e in enumerate(episodes):
        keep = np.ones(len(e), bool)
        keep[40] = False                                   # one dropped frame per episode
        rows.append(e[keep]), eps.append(np.full(keep.sum(), k)), ts.append(
            np.arange(len(e))[keep] * 0.1)
    path = tmp_path / 'dropped.npz'
    np.savez(path, actions=np.vstack(rows), episode_index=np.concatenate(eps),
             timestamps=np.concatenate(ts))
    data = read_episodes(str(path))
    with_ts = calibrate([e.actions for e in data.episodes], data.joint_names, 0.1, holdout=0.0,
                        timestamps=[e.timestamps for e in data.episodes])
    without = calibrate([e.actions for e in data.episodes], data.joint_names, 0.1, holdout=0.0)
    assert np.all(with_ts.contract.max_velocity <= without.contract.max_velocity + 1e-9)
    assert with_ts.report['n_skipped_velocity_steps'] == 30
