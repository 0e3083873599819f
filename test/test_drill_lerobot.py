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
The drill's nn: and replay: policies on LeRobot dataset folders (v2.1 and v3.0).

The folders are written here with pyarrow from the real PushT demonstrations
(pusht_cchi_v7_replay.npz): the same episodes as an npz and as a LeRobot folder must give the same
policy and the same calibration; a folder without observation.state is refused in one line.
"""
import json
import os

from drill_support import run_cli
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vla_safety_filter.core.drill.policies import load_demos, make_policy
from vla_safety_filter.core.drill.runner import safety_from_demos
from vla_safety_filter.core.errors import InputError

pytest.importorskip('gym_pusht')
EPISODES = 12  # the first episodes of the 206 demonstrations: small folders, real motion


@pytest.fixture(scope='module')
def demos(pusht_demos):
    """Return the arrays of the first EPISODES PushT demonstrations."""
    with np.load(pusht_demos) as z:
        keep = z['episode_index'] < EPISODES
        keys = ('actions', 'observation.state', 'episode_index', 'frame_index', 'timestamps')
        return {key: z[key][keep] for key in keys}


def _column(rows: np.ndarray) -> pa.Array:
    """Return a list<float32> column of [T, D] rows, as LeRobot stores vectors."""
    return pa.array(rows.astype(np.float32).tolist(), type=pa.list_(pa.float32()))


def _table(d: dict, rows, with_state: bool = True) -> pa.Table:
    """Return the LeRobot table of the selected rows of the demonstrations."""
    columns = {'action': _column(d['actions'][rows])}
    if with_state:
        columns['observation.state'] = _column(d['observation.state'][rows])
    columns.update({'episode_index': pa.array(d['episode_index'][rows], type=pa.int64()),
                    'frame_index': pa.array(d['frame_index'][rows], type=pa.int64()),
                    'timestamp': pa.array(d['timestamps'][rows], type=pa.float32())})
    return pa.table(columns)


def write_lerobot(root, d: dict, version: str, with_state: bool = True) -> str:
    """Write the demonstrations as a LeRobot dataset: v2.1 one file per episode, v3.0 one file."""
    os.makedirs(root / 'meta')
    info = {'codebase_version': version, 'fps': 10, 'features': {
        'action': {'dtype': 'float32', 'shape': [2], 'names': ['x', 'y']},
        'observation.state': {'dtype': 'float32', 'shape': [5]}}}
    (root / 'meta' / 'info.json').write_text(json.dumps(info))
    chunk = root / 'data' / 'chunk-000'
    os.makedirs(chunk)
    if version == 'v3.0':
        pq.write_table(_table(d, slice(None), with_state), chunk / 'file-000.parquet')
    else:
        for e in range(EPISODES):
            rows = np.flatnonzero(d['episode_index'] == e)
            pq.write_table(_table(d, rows, with_state), chunk / f'episode_{e:06d}.parquet')
    return str(root)


def write_npz(path, d: dict) -> str:
    """Write the same demonstrations as an npz (the layout of shared/data)."""
    np.savez(path, actions=d['actions'], episode_index=d['episode_index'],
             **{'observation.state': d['observation.state']})
    return str(path)


@pytest.mark.parametrize('version', ['v2.1', 'v3.0'])
def test_a_lerobot_folder_gives_the_npz_demonstrations(tmp_path, demos, version):
    folder = write_lerobot(tmp_path / 'ds', demos, version)
    got = load_demos(folder)
    want = load_demos(write_npz(tmp_path / 'd.npz', demos))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('version', ['v2.1', 'v3.0'])
def test_nn_policy_from_a_folder_acts_as_from_the_npz(tmp_path, demos, version):
    """Same chunks for demonstration states and for states in between."""
    from_folder = make_policy('nn:' + write_lerobot(tmp_path / 'ds', demos, version))
    from_npz = make_policy('nn:' + write_npz(tmp_path / 'd.npz', demos))
    rng = np.random.default_rng(0)
    states = demos['observation.state']
    queries = states[rng.integers(0, len(states), 40)] + rng.normal(0, 5, (40, 5))
    for state in queries.astype(np.float32):
        obs = {'observation.state': state}
        np.testing.assert_array_equal(from_folder.act(obs), from_npz.act(obs))


def test_calibration_from_a_folder_equals_the_npz_one(tmp_path, demos, pusht_world):
    folder = safety_from_demos(write_lerobot(tmp_path / 'ds', demos, 'v3.0'), pusht_world)
    npz = safety_from_demos(write_npz(tmp_path / 'd.npz', demos), pusht_world)
    np.testing.assert_array_equal(folder.contract.lower, npz.contract.lower)
    np.testing.assert_array_equal(folder.contract.max_velocity, npz.contract.max_velocity)


def test_a_folder_without_observation_state_is_refused(tmp_path, demos):
    folder = write_lerobot(tmp_path / 'ds', demos, 'v2.1', with_state=False)
    with pytest.raises(InputError, match='observation.state'):
        make_policy(f'nn:{folder}')


def test_the_drill_runs_on_a_lerobot_folder(tmp_path, demos):
    """`vla-safety drill --policy nn:FOLDER` calibrates on the folder and runs its episodes."""
    folder = write_lerobot(tmp_path / 'ds', demos, 'v3.0')
    out = tmp_path / 'out'
    code, _, err = run_cli('drill', '--policy', f'nn:{folder}', '--episodes', '2', '--max-steps',
                           '30', '--conditions', 'none,filter', '--no-plots', '--output', str(out))
    assert code == 0, err
    report = json.loads((out / 'drill.json').read_text())
    assert report['contract'] == folder
    assert [report['conditions'][c]['n'] for c in ('none', 'filter')] == [2, 2]
    with np.load(out / 'episodes.npz') as z:
        assert z['n_steps'].tolist() == [30] * 4
