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
Action-episode readers: the npz streams of shared/data, LeRobot datasets (v2.x, v3.0) and csv.

Every reader returns whole episodes in time order and refuses bad input with a one-line
`InputError` naming the file, episode and step: non-finite rows are reported, never dropped.
Replaying a policy log (`vla-safety filter`) asks for `allow_nonfinite=True`: non-finite *action*
rows are then kept as they are (the filter must show what it does with them); calibration never
asks, so demonstrations stay finite.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
import glob
import json
import os
import re
from typing import Callable
import zipfile

import numpy as np

from .errors import InputError

MIN_EPISODE_STEPS = 4
CSV_METADATA_COLUMNS = ('episode_index', 'frame_index', 'index', 'task_index', 'timestamp',
                        'timestamps')
CSV_ACTION_PREFIXES = ('action.', 'action_')
CSV_STATE_PREFIXES = ('observation.state.', 'observation.state_')
LEROBOT_VERSIONS = ('v2.0', 'v2.1', 'v3.0')


@dataclass(frozen=True)
class Episode:
    """
    One demonstration or rollout.

    Actions [T, D] (float64), observation.state [T, Ds] or None, and the frames' timestamps [T]
    (seconds) where the source records them.
    """

    index: int
    actions: np.ndarray
    state: np.ndarray | None
    timestamps: np.ndarray | None = None


@dataclass(frozen=True)
class EpisodeSet:
    """Episodes of one or more files with their joint names and frame rate (None when unknown)."""

    episodes: list[Episode]
    joint_names: tuple[str, ...]
    fps: float | None
    source: str

    @property
    def dim(self) -> int:
        return len(self.joint_names)


def generic_names(dim: int) -> tuple[str, ...]:
    """Joint names used when the source has none: joint_0 .. joint_{D-1}."""
    return tuple(f'joint_{j}' for j in range(dim))


def read_episodes(path: str, fps: float | None = None, allow_nonfinite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> EpisodeSet:
    """
    Read one source, detected from the path: LeRobot dataset directory, `.npz` or `.csv`.

    `fps` overrides the rate the source carries (LeRobot info.json, npz/csv timestamps);
    `allow_nonfinite` keeps non-finite action values instead of refusing the source.
    `progress(done, total)` is called after each data file read (one for npz and csv, each
    parquet file of a LeRobot dataset), so a large dataset shows it is moving.
    """
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise InputError(f'fps must be a positive number, got {fps!r}')
    if os.path.isdir(path):
        return _read_lerobot(path, fps, allow_nonfinite, progress)
    if not os.path.exists(path):
        raise InputError(f'{path}: file not found')
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.npz', '.csv'):
        read = _read_npz if ext == '.npz' else _read_csv
        result = read(path, fps, allow_nonfinite)
        if progress is not None:
            progress(1, 1)
        return result
    raise InputError(f'{path}: unsupported input (expected a .npz, a .csv or a LeRobot dataset '
                     f'directory)')


def read_many(paths: list[str], fps: float | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> EpisodeSet:
    """
    Read and concatenate several sources; with more than one file, episodes are renumbered 0..N-1.

    All sources must agree on dimension, joint names and frame rate. `progress(path, done,
    total)` reports the data files read within each source (see `read_episodes`).
    """
    if not paths:
        raise InputError('no input given')
    sets = []
    for path in paths:
        report = None if progress is None else (
            lambda done, total, path=path: progress(path, done, total))
        sets.append(read_episodes(path, fps, progress=report))
    if len(sets) == 1:
        return sets[0]
    first = sets[0]
    rate = first.fps
    for other in sets[1:]:
        if other.dim != first.dim:
            raise InputError(f'{other.source} has {other.dim} action dimensions but '
                             f'{first.source} has {first.dim}')
        if other.joint_names != first.joint_names:
            raise InputError(f'{other.source} joint names {list(other.joint_names)} differ from '
                             f'{first.source} {list(first.joint_names)}')
        if rate is None:
            rate = other.fps
        elif other.fps is not None and not np.isclose(other.fps, rate, rtol=1e-3):
            raise InputError(f'{other.source} runs at {other.fps:g} fps but {first.source} at '
                             f'{rate:g} fps (pass --fps to override both)')
    episodes = [Episode(i, ep.actions, ep.state)
                for i, ep in enumerate(ep for s in sets for ep in s.episodes)]
    return EpisodeSet(episodes, first.joint_names, rate, ', '.join(s.source for s in sets))


# ---------------------------------------------------------------------------------------------
# shared checks


def _check_actions(source: str, index: int, actions: np.ndarray, field: str = 'action',
                   allow_nonfinite: bool = False) -> None:
    """Episode must be [T >= 4, D] and (unless allowed) finite; the first bad step is named."""
    if actions.shape[0] < MIN_EPISODE_STEPS:
        raise InputError(f'{source}: episode {index} has {actions.shape[0]} steps (need at least '
                         f'{MIN_EPISODE_STEPS})')
    if allow_nonfinite:
        return
    finite = np.isfinite(actions)
    if not finite.all():
        step, joint = np.argwhere(~finite)[0]
        raise InputError(f'{source}: episode {index} step {step}: {field}[{joint}] is not finite '
                         f'({actions[step, joint]})')


def _fps_from_timestamps(source: str, timestamps: np.ndarray, episode_index: np.ndarray) -> float:
    """1 / median within-episode timestamp step, rounded to 1e-3 fps."""
    steps = np.diff(timestamps.astype(np.float64))[np.diff(episode_index) == 0]
    steps = steps[np.isfinite(steps)]
    if steps.size == 0 or not np.median(steps) > 0:
        raise InputError(f'{source}: timestamps do not increase within episodes; pass --fps')
    return round(1.0 / float(np.median(steps)), 3)


def _group(source: str, actions: np.ndarray, episode_index: np.ndarray,
           frame_index: np.ndarray | None, state: np.ndarray | None,
           allow_nonfinite: bool = False, timestamps: np.ndarray | None = None) -> list[Episode]:
    """Split rows into episodes (sorted by index), each ordered by frame_index when given."""
    order_key = np.arange(len(episode_index)) if frame_index is None else frame_index
    order = np.lexsort((order_key, episode_index))
    ids = episode_index[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    episodes = []
    for s, e in zip(starts, ends):
        rows = order[s:e]
        index = int(ids[s])
        acts = np.ascontiguousarray(actions[rows], dtype=np.float64)
        _check_actions(source, index, acts, allow_nonfinite=allow_nonfinite)
        st = None
        if state is not None:
            st = np.ascontiguousarray(state[rows], dtype=np.float64)
            _check_actions(source, index, st, 'observation.state')
        ts = None if timestamps is None else np.asarray(timestamps[rows], dtype=np.float64)
        episodes.append(Episode(index, acts, st, ts))
    if not episodes:
        raise InputError(f'{source}: no episodes')
    return episodes


def _names(source: str, names, dim: int) -> tuple[str, ...]:
    if names is None:
        return generic_names(dim)
    names = tuple(str(n) for n in names)
    if len(names) != dim:
        raise InputError(f'{source}: {len(names)} action names for {dim} action dimensions')
    if len(set(names)) != dim:
        raise InputError(f'{source}: action names are not unique: {list(names)}')
    return names


def _int_column(source: str, name: str, values: np.ndarray, rows: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (rows,):
        raise InputError(f'{source}: {name!r} has shape {values.shape}, expected ({rows},)')
    if values.dtype.kind not in 'iu':
        whole = np.isfinite(values) & (values == np.round(values))
        if values.dtype.kind != 'f' or not np.all(whole):
            raise InputError(f'{source}: {name!r} must hold integers')
    return values.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# npz


def _read_npz(path: str, fps: float | None, allow_nonfinite: bool = False) -> EpisodeSet:
    """
    Read the npz layout of shared/data.

    actions [T, D], episode_index [T] (absent: one episode), optional frame_index, timestamps,
    observation.state [T, Ds] and action_names [D].
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f'{path}: cannot read npz ({exc})') from None
    if 'actions' not in arrays:
        raise InputError(f'{path}: no `actions` array (found {sorted(arrays)})')
    actions = arrays['actions']
    if actions.ndim != 2 or actions.shape[1] == 0 or actions.dtype.kind not in 'iuf':
        raise InputError(f'{path}: `actions` must be a numeric [T, D] array, got {actions.dtype} '
                         f'{actions.shape}')
    rows = actions.shape[0]
    episode_index = (_int_column(path, 'episode_index', arrays['episode_index'], rows)
                     if 'episode_index' in arrays else np.zeros(rows, dtype=np.int64))
    frame_index = (_int_column(path, 'frame_index', arrays['frame_index'], rows)
                   if 'frame_index' in arrays else None)
    state = arrays.get('observation.state')
    if state is not None and (state.ndim != 2 or state.shape[0] != rows):
        raise InputError(f'{path}: `observation.state` has shape {state.shape}, '
                         f'expected ({rows}, Ds)')
    ts = arrays.get('timestamps')
    if ts is not None and (ts.shape != (rows,) or ts.dtype.kind not in 'iuf'):
        raise InputError(f'{path}: `timestamps` has shape {ts.shape}, expected ({rows},) numbers')
    episodes = _group(path, actions, episode_index, frame_index, state, allow_nonfinite, ts)
    if fps is None and ts is not None:
        within = np.arange(rows) if frame_index is None else frame_index
        order = np.lexsort((within, episode_index))
        fps = _fps_from_timestamps(path, ts[order], episode_index[order])
    names = _names(path, arrays.get('action_names'), actions.shape[1])
    return EpisodeSet(episodes, names, fps, path)


# ---------------------------------------------------------------------------------------------
# csv


def _read_csv(path: str, fps: float | None, allow_nonfinite: bool = False) -> EpisodeSet:
    """
    Read a CSV file with a header row, one row per step.

    Action columns: the columns named `action.<joint>` / `action_<joint>` if there are any (joint
    name = the suffix), otherwise every numeric column that is not `episode_index`, `frame_index`,
    `index`, `task_index`, `timestamp(s)` or `observation.state.*` (joint name = the header).
    A column is numeric when its first cell parses as a number; every later cell must then parse.
    Optional `episode_index` (absent: one episode), `frame_index` (row order within an episode),
    `timestamp`/`timestamps` (seconds, gives fps) and `observation.state.*` columns.
    """
    try:
        with open(path, newline='') as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f'{path}: cannot read csv ({exc})') from None
    if len(rows) < 2:
        raise InputError(f'{path}: csv needs a header row and at least one data row')
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(f'{path}: line {n} has {len(row)} cells, '
                             f'the header has {len(header)}')

    def is_number(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return False

    prefixed = [c for c, h in enumerate(header) if h.startswith(CSV_ACTION_PREFIXES)]
    state_cols = [c for c, h in enumerate(header) if h.startswith(CSV_STATE_PREFIXES)]
    if prefixed:
        action_cols = prefixed
        names = [header[c].split('.', 1)[1] if header[c].startswith('action.')
                 else header[c].split('_', 1)[1] for c in prefixed]
    else:
        action_cols = [c for c, h in enumerate(header)
                       if h not in CSV_METADATA_COLUMNS and c not in state_cols
                       and is_number(body[0][c])]
        names = [header[c] for c in action_cols]
    if not action_cols:
        raise InputError(f'{path}: no numeric action columns in the header {header}')

    def column_block(cols: list[int]) -> np.ndarray:
        out = np.empty((len(body), len(cols)))
        for k, c in enumerate(cols):
            for r, row in enumerate(body):
                try:
                    out[r, k] = float(row[c])
                except ValueError:
                    raise InputError(f'{path}: line {r + 2} column {header[c]!r}: {row[c]!r} is '
                                     f'not a number') from None
        return out

    def optional(name_options: tuple[str, ...]) -> np.ndarray | None:
        for name in name_options:
            if name in header:
                return column_block([header.index(name)])[:, 0]
        return None

    actions = column_block(action_cols)
    count = len(body)
    ep = optional(('episode_index',))
    episode_index = np.zeros(count, dtype=np.int64) if ep is None else \
        _int_column(path, 'episode_index', ep, count)
    fr = optional(('frame_index',))
    frame_index = None if fr is None else _int_column(path, 'frame_index', fr, count)
    state = column_block(state_cols) if state_cols else None
    ts = optional(('timestamp', 'timestamps'))
    episodes = _group(path, actions, episode_index, frame_index, state, allow_nonfinite, ts)
    if fps is None and ts is not None:
        within = np.arange(count) if frame_index is None else frame_index
        order = np.lexsort((within, episode_index))
        fps = _fps_from_timestamps(path, ts[order], episode_index[order])
    return EpisodeSet(episodes, _names(path, names, len(names)), fps, path)


# ---------------------------------------------------------------------------------------------
# LeRobot datasets


def _lerobot_names(root: str, feature: dict, dim: int) -> tuple[str, ...]:
    names = feature.get('names')
    if isinstance(names, dict):  # e.g. {"motors": [...]}: concatenate the lists in order
        flat = []
        for value in names.values():
            flat.extend(value if isinstance(value, list) else [value])
        names = flat
    if not isinstance(names, list) or len(names) != dim:
        return generic_names(dim)
    return _names(root, names, dim)


def _list_column(source: str, table, name: str):
    """Return a list<float> column of a pyarrow table as float64 [rows, width]."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)):
        raise InputError(f'{source}: column {name!r} is {col.type}, expected a list of numbers')
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f'{source}: column {name!r} is null at row {row}')
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    width = int(lengths[0]) if lengths.size else 0
    if lengths.size and np.any(lengths != width):
        row = int(np.flatnonzero(lengths != width)[0])
        raise InputError(f'{source}: column {name!r} row {row} has {lengths[row]} values, row 0 '
                         f'has {width}')
    values = col.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InputError(f'{source}: column {name!r} holds {values.type}, expected numbers')
    flat = values.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    return flat.reshape(len(col), width)


def _read_lerobot(root: str, fps: float | None, allow_nonfinite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> EpisodeSet:
    """
    Read a LeRobot dataset.

    meta/info.json and data/chunk-*/episode_*.parquet (v2.x, one episode per file) or
    data/chunk-*/file-*.parquet (v3.0, episodes grouped by `episode_index`).
    """
    info_path = os.path.join(root, 'meta', 'info.json')
    try:
        with open(info_path) as fh:
            info = json.load(fh)
    except FileNotFoundError:
        raise InputError(f'{root}: not a LeRobot dataset (no meta/info.json)') from None
    except (OSError, ValueError) as exc:
        raise InputError(f'{info_path}: cannot read ({exc})') from None
    if not isinstance(info, dict):
        raise InputError(f'{info_path}: not a LeRobot info.json')
    version = str(info.get('codebase_version', ''))
    if version not in LEROBOT_VERSIONS:
        raise InputError(f'{info_path}: codebase_version {version!r} is not supported '
                         f'({", ".join(LEROBOT_VERSIONS)})')
    feature = info.get('features', {}).get('action')
    if not isinstance(feature, dict):
        raise InputError(f'{info_path}: no `features.action` entry')
    pattern = 'file-*.parquet' if version == 'v3.0' else 'episode_*.parquet'
    files = sorted(glob.glob(os.path.join(root, 'data', '*', pattern)))
    if not files:
        raise InputError(f'{root}: no data/chunk-*/{pattern} files for LeRobot {version}')
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError('reading LeRobot datasets needs pyarrow (pip install pyarrow)') from None

    actions, states, episodes, frames = [], [], [], []
    for done, path in enumerate(files, start=1):
        try:
            table = pq.read_table(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise InputError(f'{path}: cannot read parquet ({str(exc).splitlines()[0]})') from None
        if 'action' not in table.column_names:
            raise InputError(f'{path}: no `action` column (found {table.column_names})')
        rows = table.num_rows
        actions.append(_list_column(path, table, 'action'))
        if 'observation.state' in table.column_names:
            states.append(_list_column(path, table, 'observation.state'))
        if 'episode_index' in table.column_names:
            ep = table.column('episode_index').to_numpy()
            episodes.append(_int_column(path, 'episode_index', ep, rows))
        elif version != 'v3.0':
            match = re.search(r'episode_(\d+)\.parquet$', path)
            episodes.append(np.full(rows, int(match.group(1)), dtype=np.int64))
        else:
            raise InputError(f'{path}: no `episode_index` column (required in LeRobot v3.0)')
        if 'frame_index' in table.column_names:
            frames.append(_int_column(path, 'frame_index', table.column('frame_index').to_numpy(),
                                      rows))
        else:
            frames.append(None)
        if progress is not None:
            progress(done, len(files))
    widths = {a.shape[1] for a in actions}
    if len(widths) != 1:
        raise InputError(f'{root}: action width differs between data files ({sorted(widths)})')
    action = np.concatenate(actions)
    dim = action.shape[1]
    shape = feature.get('shape')
    if isinstance(shape, list) and shape and shape[0] != dim:
        raise InputError(f'{info_path}: features.action.shape says {shape[0]} '
                         f'but the data has {dim}')
    state = None
    if len(states) == len(files) and len({s.shape[1] for s in states}) == 1:
        state = np.concatenate(states)
    frame = None if any(f is None for f in frames) else np.concatenate(frames)
    grouped = _group(root, action, np.concatenate(episodes), frame, state, allow_nonfinite)
    if fps is None:
        rate = info.get('fps')
        fps = float(rate) if isinstance(rate, (int, float)) and rate > 0 else None
    return EpisodeSet(grouped, _lerobot_names(root, feature, dim), fps, root)
