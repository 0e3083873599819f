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
The monitor reports exactly what a frozen reference reported, step by step, on real streams.

test/data/monitor_golden*.npz hold real ALOHA (50 Hz, D = 14) and PushT (10 Hz, D = 2) streams
with injected faults, their calibrations, and what the monitor of commit 7a718c1 reported for
them: per step the alarms, level, active alarms and both CUSUM statistics, plus window metrics,
/diagnostics values, seam checks and episode summaries at fixed points. Any speed-up must
reproduce all of it (floats to 1e-9 relative). Regenerate only on purpose, with the reason in the
commit: `python test/test_monitor_golden.py --write` (reads ../shared/data).
"""
import gzip
import json
import math
import os
import sys

import numpy as np
import pytest
from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.faults import action_range, inject
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.core.sequential import RunLengthThreshold

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
STREAMS = os.path.join(HERE, 'monitor_golden_streams.npz')
TRACES = os.path.join(HERE, 'monitor_golden_traces.json.gz')
CALIBRATIONS = {'aloha': os.path.join(HERE, 'monitor_golden_cal_aloha.npz'),
                'pusht': os.path.join(HERE, 'monitor_golden_cal_pusht.npz')}
RTOL = 1e-9
# name: (calibration, profile, probe period in steps (0 = updates only), seam period)
SCENARIOS = {
    'aloha_generic': ('aloha', 'generic', 0, 10),
    'aloha_generic_probed': ('aloha', 'generic', 13, 10),
    'aloha_chunked_probed': ('aloha', 'chunked', 7, 0),
    'aloha_flow_plain': ('aloha_plain', 'flow_matching', 0, 0),
    'pusht_generic': ('pusht', 'generic', 0, 4),
    'pusht_generic_probed': ('pusht', 'generic', 3, 4),
    'pusht_flow_probed': ('pusht', 'flow_matching', 5, 0),
    'pusht_chunked': ('pusht', 'chunked', 0, 0),
}
# faults per episode of each stream: (family, start step, seed, overrides)
FAULTS = {
    'aloha': [(None, 0, 0, {}), ('oscillation', 150, 1, {}), ('spike', 100, 2, {}),
              ('offset', 150, 3, {}), ('freeze', 120, 4, {}), ('nan', 200, 5, {}),
              ('scale', 100, 6, {}), ('drift', 100, 7, {}), ('offset', 100, 8, {'amplitude': 1.5}),
              ('scale', 50, 9, {'factor': 2.5})],
    'pusht': [(None, 0, 0, {}), ('oscillation', 40, 1, {}), ('offset', 40, 2, {}),
              ('scale', 40, 3, {}), ('freeze', 40, 4, {}), ('drift', 40, 5, {}),
              ('spike', 30, 6, {}), ('nan', 50, 7, {}), (None, 0, 8, {}),
              ('offset', 30, 9, {'amplitude': 1.5}), ('scale', 30, 10, {'factor': 2.5}),
              ('drift', 20, 11, {'rate': 1.0})],
}
ALOHA_STAND_IN = RunLengthThreshold(3.0, 20.0, 9.5, 0.1, 0.0, 10.0, 18.0, 0.5, 100)
PUSHT_CAL_EPISODES = 40


def _bad_input(step: int):
    """Every 97th step a malformed action (wrong length, text), to pin the gap handling."""
    if step % 97 == 50:
        return [1.0, 2.0, 3.0]
    if step % 97 == 51:
        return 'not an action'
    return None


def _monitor(name: str) -> ActionMonitor:
    """Build the scenario's monitor from its stored calibration."""
    cal_name, profile, _, _ = SCENARIOS[name]
    cal = CalibrationData.load(CALIBRATIONS[cal_name.split('_')[0]])
    motion = None if cal_name.endswith('_plain') else cal.motion
    return ActionMonitor(cal, cal.dt, profile, motion=motion)


def _episodes(streams, cal_name: str) -> list[np.ndarray]:
    key = cal_name.split('_')[0]
    actions, index = streams[f'{key}_actions'], streams[f'{key}_episode']
    return [actions[index == i] for i in np.unique(index)]


def _floats(values: dict) -> dict:
    """Return JSON-safe values (non-finite floats as strings)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        out[key] = value
    return out


def run_scenario(name: str, streams) -> dict:
    """Stream the scenario through a fresh monitor; everything it reports, in order."""
    cal_name, _, probe, seam = SCENARIOS[name]
    monitor = _monitor(name)
    trace = {'alarms': [], 'level': [], 'active': [], 'cusum': [], 'motion_cusum': [],
             'probes': [], 'status': [], 'seams': [], 'summaries': []}
    step = 0
    previous = None
    for episode in _episodes(streams, cal_name):
        for row in episode:
            if seam and step % seam == 0 and previous is not None:
                jump = previous + (0.5 if step % (7 * seam) == 0 else 0.0) * np.abs(previous)
                trace['seams'].append([[a.kind, a.step] for a in monitor.check_seam(row, jump)])
            bad = _bad_input(step)
            status = monitor.update(row if bad is None else bad)
            trace['alarms'] += [[a.kind, a.step] for a in status.alarms]
            trace['level'].append(status.level)
            trace['active'].append(','.join(monitor.active_alarms()))
            trace['cusum'].append(monitor.cusum.statistic)
            trace['motion_cusum'].append(monitor.motion_cusum.statistic
                                         if monitor.step_scorer is not None else 0.0)
            if step % 41 == 40:
                monitor.record_interventions(['position', 'velocity'])
            if probe and step % probe == probe - 1:
                trace['probes'].append(_floats(monitor.window_metrics()))
            if probe and step % (11 * probe) == 0:
                level, message, values = monitor.status()
                trace['status'].append([level, message, values])
            previous = row
            step += 1
        trace['summaries'].append(_floats(monitor.episode_summary()))
        monitor.reset_episode()
    return trace


def _close(got, want, where: str) -> None:
    """Assert equality, floats to RTOL; recurse into lists and dicts."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            _close(got[key], want[key], f'{where}.{key}')
    elif isinstance(want, list):
        assert len(got) == len(want), f'{where}: length {len(got)} != {len(want)}'
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f'{where}[{i}]')
    elif isinstance(want, float):
        assert isinstance(got, (float, int)), f'{where}: {got!r} != {want!r}'
        assert math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-12), f'{where}: {got} != {want}'
    else:
        assert got == want, f'{where}: {got!r} != {want!r}'


@pytest.fixture(scope='module')
def golden():
    with gzip.open(TRACES, 'rt', encoding='utf-8') as f:
        traces = json.load(f)
    with np.load(STREAMS, allow_pickle=False) as z:
        streams = {key: z[key] for key in z.files}
    return traces, streams


@pytest.mark.parametrize('name', sorted(SCENARIOS))
def test_monitor_reproduces_frozen_reference(golden, name):
    traces, streams = golden
    trace = json.loads(json.dumps(run_scenario(name, streams)))  # same float round trip
    want = traces[name]
    assert want['alarms'], f'{name}: the reference must contain alarms to be a useful pin'
    for key in want:
        _close(trace[key], want[key], f'{name}.{key}')


def test_reference_covers_every_alarm_family(golden):
    """The pinned traces exercise the alarms the speed-up could change."""
    traces, _ = golden
    kinds = {kind for trace in traces.values() for kind, _ in trace['alarms']}
    kinds |= {kind for trace in traces.values() for seam in trace['seams'] for kind, _ in seam}
    for kind in ('nonfinite', 'shape', 'cusum', 'motion_cusum', 'step_spike', 'window_spike',
                 'seam_spike', 'stall', 'jerk'):
        assert kind in kinds, kind


# ---- generation (by hand, on purpose) -----------------------------------------------------
def _load(name: str) -> list[np.ndarray]:
    from data_paths import DATA
    with np.load(os.path.join(DATA, name), allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    return [actions[index == i] for i in np.unique(index)]


def _faulted(episodes, cal: CalibrationData, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate episodes with FAULTS[key] injected; the episode index beside."""
    rows, index = [], []
    span, centre = action_range(cal.sigma), np.asarray(cal.mu)
    for k, (family, at, seed, overrides) in enumerate(FAULTS[key]):
        episode = episodes[k % len(episodes)]
        if family is not None:
            episode, _ = inject(episode, family, at, seed, span, centre, cal.dt, **overrides)
        rows.append(episode)
        index.append(np.full(episode.shape[0], k))
    return np.concatenate(rows), np.concatenate(index)


def write_reference() -> None:
    """Calibrate, build the faulted streams and record today's monitor on every scenario."""
    from dataclasses import replace
    aloha = _load('aloha_sim_lerobot_4ep.npz')
    names = [f'joint_{j}' for j in range(14)]
    cal = calibrate(aloha, names, 0.02, holdout=0.0).data
    cal = replace(cal, motion=replace(cal.motion, cusum=ALOHA_STAND_IN,
                                      position_cusum=ALOHA_STAND_IN))
    cal.save(CALIBRATIONS['aloha'])
    pusht = _load('pusht_cchi_v7_replay.npz')
    pcal = calibrate(pusht[:PUSHT_CAL_EPISODES], ['x', 'y'], 0.1, holdout=0.0).data
    pcal.save(CALIBRATIONS['pusht'])
    streams = {}
    for key, cal_k, episodes in (('aloha', cal, aloha),
                                 ('pusht', pcal, pusht[PUSHT_CAL_EPISODES:])):
        streams[f'{key}_actions'], streams[f'{key}_episode'] = _faulted(episodes, cal_k, key)
    np.savez_compressed(STREAMS, **streams)
    traces = {name: run_scenario(name, streams) for name in SCENARIOS}
    with gzip.open(TRACES, 'wt', encoding='utf-8') as f:
        json.dump(traces, f, separators=(',', ':'))


if __name__ == '__main__':
    if '--write' in sys.argv:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        write_reference()
