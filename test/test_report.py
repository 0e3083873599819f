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

"""`vla-safety report` on rosbag2 MCAP records of the real guard and monitor on ALOHA actions."""
from collections import Counter
import os

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from vla_safety_filter import names
from vla_safety_filter.cli import main
from vla_safety_filter.core.contract import Contract, Guard
from vla_safety_filter.core.costs import CostModel
from vla_safety_filter.core.monitors import ActionMonitor
from vla_safety_filter.core.params import CalibrationData
from vla_safety_filter.record.read import open_record
from vla_safety_filter.report.series import extract

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
ALOHA = 'aloha_sim_lerobot_4ep.npz'
DT = 0.02
STEP_NS = 20_000_000
START_NS = 1_750_000_000_000_000_000
ARM = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')
NAMES = tuple(f'{side}_{j}' for side in ('left', 'right') for j in ARM)
NAN_CELLS = ((120, 2), (121, 2), (300, slice(None)), (550, 9))   # (global step, joints) made NaN
PNGS = ('actions.png', 'monitor.png', 'cost.png', 'levels.png')


def _text(value) -> str:
    return f'{value:.6g}' if isinstance(value, float) else str(value)


def header(ns):
    stamp = T['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9)
    return T['std_msgs/msg/Header'](stamp=stamp, frame_id='')


def trajectory(ns, joints, rows):
    empty = np.zeros(0)
    points = [T['trajectory_msgs/msg/JointTrajectoryPoint'](
        positions=np.asarray(r, dtype=float), velocities=empty, accelerations=empty, effort=empty,
        time_from_start=T['builtin_interfaces/msg/Duration'](sec=0, nanosec=STEP_NS * (i + 1)))
        for i, r in enumerate(rows)]
    return T['trajectory_msgs/msg/JointTrajectory'](header=header(ns), joint_names=list(joints),
                                                    points=points)


def diagnostics(ns, statuses):
    """Return a DiagnosticArray of (name, level, message, {key: value}) as the nodes write it."""
    return T['diagnostic_msgs/msg/DiagnosticArray'](header=header(ns), status=[
        T['diagnostic_msgs/msg/DiagnosticStatus'](
            level=level, name=name, message=message, hardware_id='test',
            values=[T['diagnostic_msgs/msg/KeyValue'](key=k, value=_text(v))
                    for k, v in values.items()])
        for name, level, message, values in statuses])


def joint_state(ns, joints, positions):
    return T['sensor_msgs/msg/JointState'](header=header(ns), name=list(joints),
                                           position=np.asarray(positions, dtype=float),
                                           velocity=np.zeros(0), effort=np.zeros(0))


TYPES = {names.RAW_ACTION: 'trajectory_msgs/msg/JointTrajectory',
         names.SAFE_ACTION: 'trajectory_msgs/msg/JointTrajectory',
         names.JOINT_STATES: 'sensor_msgs/msg/JointState',
         names.FILTER_EVENTS: 'diagnostic_msgs/msg/DiagnosticArray',
         names.DIAGNOSTICS: 'diagnostic_msgs/msg/DiagnosticArray',
         names.EPISODE: 'std_msgs/msg/String', names.SAFETY_STOP: 'std_msgs/msg/Bool',
         '/arm_controller/commands': 'std_msgs/msg/Float64MultiArray'}


def write_record(path, messages):
    """Write a rosbag2 directory, one MCAP file, of (topic, log_time_ns, message) in time order."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, ns, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, TYPES[topic], typestore=TS)
            writer.write(connections[topic], ns, TS.serialize_cdr(msg, TYPES[topic]))


def aloha_episodes(path):
    """Return ALOHA episodes 0 and 1 and all actions of the recording at `path`."""
    with np.load(path, allow_pickle=False) as z:
        actions, index = z['actions'].astype(np.float64), z['episode_index']
    return [actions[index == 0], actions[index == 1]], actions


def simulate(aloha_file):
    """
    Run the real guard and monitor over two ALOHA episodes with NaNs injected, as the nodes do.

    Return the messages plus the truth: guard events, executed commands, alarm reports.
    """
    episodes, everything = aloha_episodes(aloha_file)
    speed = np.abs(np.diff(everything, axis=0)) / DT
    contract = Contract(NAMES, np.percentile(everything, 1, axis=0),
                        np.percentile(everything, 99, axis=0),
                        np.percentile(speed, 99, axis=0) + 1e-3, DT)
    guard = Guard(contract)
    guard.reset(episodes[0][0])
    cal = CalibrationData(NAMES, everything.mean(0), everything.std(0),
                          np.sort(np.abs((everything - everything.mean(0))
                                         / everything.std(0)).max(1)),
                          np.diff(episodes[0], axis=0).std(0) / DT + 1e-3, 3.0, 0.05, DT)
    monitor = ActionMonitor(cal, DT, 'generic', CostModel(budget=4.0))
    raw = np.concatenate(episodes)
    for step, joints in NAN_CELLS:
        raw[step, joints] = np.nan
    msgs, events, executed, alarm_reports = [], [], [], []
    k, js_order = 0, NAMES[::-1]
    for e, episode in enumerate(episodes):
        monitor.reset_episode()
        reported = 0
        msgs.append((names.EPISODE, START_NS + k * STEP_NS,
                     T['std_msgs/msg/String'](data=f'episode_{e}')))
        for i in range(len(episode)):
            ns = START_NS + k * STEP_NS + 1000
            msgs.append((names.RAW_ACTION, ns, trajectory(ns, NAMES, raw[k:k + 3])))
            command, step_events = guard.step(raw[k])
            monitor.update(raw[k])
            monitor.record_interventions(ev.reason for ev in step_events)
            executed.append(command)
            msgs.append((names.SAFE_ACTION, ns + 2000, trajectory(ns, NAMES, [command])))
            if step_events:
                events += [(ns + 3000, ev) for ev in step_events]
                statuses = [('vla_safety/filter/event', 1, ev.reason, ev._asdict())
                            for ev in step_events]
                msgs.append((names.FILTER_EVENTS, ns + 3000, diagnostics(ns, statuses)))
            msgs.append((names.JOINT_STATES, ns + 4000,
                         joint_state(ns, js_order, command[::-1] + 0.001)))
            if (i + 1) % 50 == 0 or i + 1 == len(episode):
                level, message, values = monitor.status()
                if len(monitor.alarms) > reported:
                    alarm_reports.append((ns + 5000, len(monitor.alarms) - reported,
                                          monitor.alarms[-1].kind))
                    reported = len(monitor.alarms)
                counts = {f'interventions.{r}': n for r, n in guard.counts.items()}
                msgs.append((names.DIAGNOSTICS, ns + 5000, diagnostics(ns, [
                    (names.MONITOR_STATUS, level, message, dict(values)),
                    (names.FILTER_STATUS, 0, 'running', {'state': 'running', **counts}),
                    (names.EXECSPEC_STATUS, 0, 'checkpoint matches the calibration', {})])))
            k += 1
    last = START_NS + (k - 1) * STEP_NS + 6000
    msgs.append((names.SAFETY_STOP, last, T['std_msgs/msg/Bool'](data=True)))
    return sorted(msgs, key=lambda m: m[1]), raw, np.array(executed), events, alarm_reports


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory, data_file):
    messages, raw, executed, events, alarms = simulate(data_file(ALOHA))
    path = str(tmp_path_factory.mktemp('rec') / 'pipeline')
    write_record(path, messages)
    return path, raw, executed, events, alarms


def seconds(ns):
    return (np.asarray(ns, dtype=np.int64) - START_NS) / 1e9


def test_series_recover_actions_events_and_alarms_exactly(pipeline):
    path, raw, executed, events, alarms = pipeline
    s = extract(open_record(path))
    assert s.start_ns == START_NS
    a = s.actions
    assert a.names == NAMES and a.exec_source == names.SAFE_ACTION
    np.testing.assert_array_equal(np.isnan(a.raw), np.isnan(raw))     # points[0] taken, NaN kept
    np.testing.assert_array_equal(a.raw[np.isfinite(raw)], raw[np.isfinite(raw)])
    np.testing.assert_array_equal(a.executed, executed)
    np.testing.assert_array_equal(a.state, executed + 0.001)            # reordered by name
    ev = s.interventions
    assert ev.by_reason() == dict(Counter(e.reason for _, e in events))
    assert ev.by_reason()['nonfinite'] == len(NAN_CELLS) and ev.by_reason()['position'] > 0
    expected = [(e.step, e.joint, e.reason) for _, e in events]
    assert list(zip(ev.step.tolist(), ev.joint, ev.reason)) == expected
    np.testing.assert_array_equal(ev.t, seconds([ns for ns, _ in events]))
    m = s.monitor
    assert len(alarms) >= 3
    np.testing.assert_array_equal(m.alarm_t, seconds([ns for ns, _, _ in alarms]))
    assert m.alarm_n.tolist() == [n for _, n, _ in alarms]
    assert m.alarm_kind == [kind for _, _, kind in alarms]
    assert 'nonfinite' in m.alarm_kind
    assert m.metrics['cusum_threshold'][0] > 0 and np.nanmax(m.metrics['episode_cost']) > 0
    assert s.levels.names == [names.MONITOR_STATUS, names.FILTER_STATUS, names.EXECSPEC_STATUS]
    assert [name for _, name in s.episodes] == ['episode_0', 'episode_1']
    np.testing.assert_array_equal(s.stops, [s.duration_s])


def test_report_command_writes_pngs_and_html(pipeline, tmp_path, capsys):
    path = pipeline[0]
    out = tmp_path / 'out'
    assert main(['report', path, '--output', str(out)]) == 0
    for name in PNGS:
        assert (out / name).stat().st_size > 10_000
    html = (out / 'report.html').read_text()
    assert html.count('data:image/png;base64,') == 4 and 'skipped' not in html
    assert names.FILTER_EVENTS in html and 'nonfinite' in html and 'max episode cost' in html
    assert str(out / 'report.html') in capsys.readouterr().out.replace('\n', '')


def test_default_output_and_joint_subset(pipeline, tmp_path):
    path = pipeline[0]
    assert main(['report', path, '--joints', 'left_elbow,right_waist']) == 0
    assert os.path.isfile(path + '_report/actions.png')
    s = extract(open_record(path), ['right_waist', 'left_elbow'])
    assert s.actions.names == ('left_elbow', 'right_waist') and s.actions.raw.shape[1] == 2
    assert set(s.interventions.joint) <= {'left_elbow', 'right_waist', '*'}
    out = str(tmp_path / 'x')
    assert main(['report', path, '--joints', 'left_elbow,tail', '--output', out]) == 2


def test_record_with_only_joint_states_renders_with_skipped_plots_noted(tmp_path):
    path = str(tmp_path / 'robot')
    joints = ('joint_a', 'joint_b')
    write_record(path, [(names.JOINT_STATES, START_NS + i * STEP_NS,
                         joint_state(START_NS, joints, [np.sin(i / 20), i / 100]))
                        for i in range(100)])
    out = tmp_path / 'out'
    assert main(['report', path, '--output', str(out)]) == 0
    assert (out / 'actions.png').is_file()
    assert not any((out / name).exists() for name in PNGS[1:])
    html = (out / 'report.html').read_text()
    for name in PNGS[1:]:
        assert f'{name} skipped' in html
    s = extract(open_record(path))
    assert s.actions.names == joints and s.duration_s == pytest.approx(99 * DT)


def test_controller_commands_are_the_executed_series_in_raw_order(tmp_path, data_file):
    path = str(tmp_path / 'forward')
    episodes, _ = aloha_episodes(data_file(ALOHA))
    layout = T['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    messages = []
    for i, row in enumerate(episodes[1][:50]):
        ns = START_NS + i * STEP_NS
        messages += [(names.RAW_ACTION, ns, trajectory(ns, NAMES, [row])),
                     ('/arm_controller/commands', ns + 1,
                      T['std_msgs/msg/Float64MultiArray'](layout=layout, data=row * 0.5))]
    write_record(path, messages)
    s = extract(open_record(path))
    assert s.actions.exec_source == '/arm_controller/commands'
    np.testing.assert_array_equal(s.actions.executed, episodes[1][:50] * 0.5)
    assert any('assumed in /vla/raw_action order' in note for note in s.notes)
    out = tmp_path / 'out'
    assert main(['report', path, '--output', str(out)]) == 0
    assert 'assumed in /vla/raw_action order' in (out / 'report.html').read_text()


def test_missing_or_garbage_record_is_exit_2_with_one_line(tmp_path, capsys):
    assert main(['report', str(tmp_path / 'nope')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'nope' in err
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(b'not a record at all')
    assert main(['report', str(garbage)]) == 2
    assert capsys.readouterr().err.count('\n') == 1
