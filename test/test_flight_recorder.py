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
Flight recorder: real DDS traffic into rosbag2 MCAP, read back with rosbags, mcap, open_record.

A SIGKILLed recorder still leaves a readable record.
"""
import os
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from ros_harness import wait_for
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter import names
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.nodes.common import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from vla_safety_filter.nodes.compat import ros_distro
from vla_safety_filter.nodes.flight_recorder import FlightRecorder
from vla_safety_filter.record.bag import BagWriter
from vla_safety_filter.record.definitions import full_definition
from vla_safety_filter.record.read import open_record
import yaml

N = 40
TRAJ = 'trajectory_msgs/msg/JointTrajectory'


def _trajectory(i: int) -> JointTrajectory:
    msg = JointTrajectory(joint_names=['j1', 'j2'],
                          points=[JointTrajectoryPoint(positions=[float(i), -float(i)])])
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, 7
    return msg


def _messages(path, **kwargs):
    """{topic: [message, ...]} of everything open_record yields."""
    out = {}
    for topic, _, msg in open_record(path).messages(**kwargs):
        out.setdefault(topic, []).append(msg)
    return out


def _metadata(path):
    return yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']


def test_records_pipeline_topics_in_rosbag2_mcap(ros, tmp_path):
    out = tmp_path / 'flight'
    probe = ros.node('probe')
    episode = probe.create_publisher(String, names.EPISODE, LATCHED_QOS)
    stop = probe.create_publisher(Bool, names.SAFETY_STOP, LATCHED_QOS)
    episode.publish(String(data='episode-7'))  # latched before the recorder exists
    stop.publish(Bool(data=True))
    action = probe.create_publisher(JointTrajectory, names.RAW_ACTION, COMMAND_QOS)
    command = probe.create_publisher(Float64MultiArray, names.forward_commands(),
                                     COMMAND_QOS)
    state = probe.create_publisher(JointState, names.JOINT_STATES, STATE_QOS)
    events = probe.create_publisher(DiagnosticArray, names.FILTER_EVENTS, 100)
    streams = (action, command, state, events)
    recorder = ros.add(FlightRecorder, output=str(out), split_seconds=0.3)
    assert wait_for(lambda: all(p.get_subscription_count() for p in streams)
                    and recorder.counts[names.EPISODE] and recorder.counts[names.SAFETY_STOP],
                    timeout=20)
    for i in range(N):
        action.publish(_trajectory(i))
        command.publish(Float64MultiArray(data=[float(i), 0.5]))
        state.publish(JointState(name=['j1'], position=[i / 10]))
        events.publish(DiagnosticArray(status=[DiagnosticStatus(
            name='clamp', values=[KeyValue(key='step', value=str(i))])]))
        time.sleep(0.015)
    streamed = (names.RAW_ACTION, names.forward_commands(), names.JOINT_STATES,
                names.FILTER_EVENTS)
    assert wait_for(lambda: all(recorder.counts[t] == N for t in streamed), timeout=10), \
        recorder.counts
    recorder.close()

    expected = {names.RAW_ACTION: (TRAJ, N),
                names.forward_commands(): ('std_msgs/msg/Float64MultiArray', N),
                names.JOINT_STATES: ('sensor_msgs/msg/JointState', N),
                names.FILTER_EVENTS: ('diagnostic_msgs/msg/DiagnosticArray', N),
                names.EPISODE: ('std_msgs/msg/String', 1),
                names.SAFETY_STOP: ('std_msgs/msg/Bool', 1)}
    meta = _metadata(out)
    assert len(meta['relative_file_paths']) >= 2  # split at 0.3 s
    assert meta['storage_identifier'] == 'mcap' and meta['ros_distro'] == ros_distro()
    listed = {t['topic_metadata']['name']: (t['topic_metadata']['type'], t['message_count'])
              for t in meta['topics_with_message_count']}
    # the pipeline's own topics are subscribed up front and listed even when nothing came
    assert {k: v for k, v in listed.items() if v[1]} == expected
    assert set(listed) - set(expected) <= {names.SAFE_ACTION,
                                           names.joint_trajectory()}
    assert sorted(p.name for p in out.glob('*.mcap')) == sorted(meta['relative_file_paths'])

    with AnyReader([out]) as reader:  # plain rosbags, as a user would
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections if c.msgcount}
        assert counts == expected
        latched = [c for c in reader.connections if c.ext.offered_qos_profiles
                   and c.ext.offered_qos_profiles[0].durability.name == 'TRANSIENT_LOCAL']
        assert {c.topic for c in latched} == {names.EPISODE, names.SAFETY_STOP}
        conns = [c for c in reader.connections if c.topic == names.RAW_ACTION]
        positions = [list(reader.deserialize(raw, c.msgtype).points[0].positions)
                     for c, _, raw in reader.messages(conns)]
    assert positions == [[float(i), -float(i)] for i in range(N)]

    record = open_record(out)
    assert {t: record.topics[t] for t, n in record.counts.items() if n} == \
        {t: v[0] for t, v in expected.items()}
    assert {t: n for t, n in record.counts.items() if n} == {t: v[1] for t, v in expected.items()}
    assert record.salvaged == []
    msgs = _messages(out)
    assert [m.points[0].positions[0] for m in msgs[names.RAW_ACTION]] == list(range(N))
    assert [m.data[0] for m in msgs[names.forward_commands()]] == list(range(N))
    assert [m.status[0].values[0].value for m in msgs[names.FILTER_EVENTS]] == \
        [str(i) for i in range(N)]
    assert msgs[names.FILTER_EVENTS][0].status[0].values[0].key == 'step'
    assert np.allclose([m.position[0] for m in msgs[names.JOINT_STATES]], np.arange(N) / 10)
    assert msgs[names.EPISODE][0].data == 'episode-7' and msgs[names.SAFETY_STOP][0].data
    assert set(_messages(out, topics=[names.EPISODE])) == {names.EPISODE}

    # Foxglove's decoder family parses our schema text; publish_time is the header stamp.
    stamped = []
    for segment in meta['relative_file_paths']:
        with open(out / segment, 'rb') as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            stamped += [(msg.publish_time, decoded.points[0].positions[0])
                        for _, _, msg, decoded in reader.iter_decoded_messages([names.RAW_ACTION])]
    assert stamped and all(t == (1000 + int(i)) * 10**9 + 7 for t, i in stamped)


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_standalone_recorder_record_survives_signal(ros, tmp_path, sig):
    out = tmp_path / 'killed'
    probe = ros.node('probe')
    pub = probe.create_publisher(JointTrajectory, names.RAW_ACTION, COMMAND_QOS)
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros.context.get_domain_id()),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'vla_safety_filter.nodes.flight_recorder', '--ros-args',
         '-p', f'output:={out}', '-p', 'split_seconds:=0.4'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sent = 0
    try:
        assert wait_for(lambda: pub.get_subscription_count() > 0, timeout=30), 'recorder not up'
        deadline = time.monotonic() + 20
        while len(_metadata(out)['relative_file_paths']) < 2 and time.monotonic() < deadline:
            pub.publish(_trajectory(sent))
            sent += 1
            time.sleep(0.01)
        for _ in range(60):  # into the open segment, past a flush
            pub.publish(_trajectory(sent))
            sent += 1
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = _metadata(out)['relative_file_paths']
    assert len(listed) >= 2

    with AnyReader([out]) as reader:  # the closed segments
        closed = reader.message_count
        assert closed > 0
        assert {c.topic for c in reader.connections if c.msgcount} == {names.RAW_ACTION}
    record = open_record(out)
    total = record.counts[names.RAW_ACTION]
    positions = [m.points[0].positions[0] for _, _, m in record.messages()]
    assert len(positions) == total >= closed
    assert positions == sorted(positions) and set(positions) <= set(range(sent))
    if sig == signal.SIGKILL:
        assert record.salvaged, 'the open segment was not found'
    else:
        assert proc.returncode == 0, proc.stderr.read().decode()
        assert record.salvaged == [] and total == closed
        assert sorted(p.name for p in out.glob('*.mcap')) == sorted(listed)


def test_lone_and_truncated_segments_open(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    out = tmp_path / 'bag'
    writer = BagWriter(out, split_seconds=1.0, chunk_size=1024)
    writer.add_topic(names.RAW_ACTION, TRAJ, full_definition(TRAJ))
    t0 = 1_700_000_000 * 10**9
    for i in range(300):  # 3 segments of 100 messages, many chunks each
        point = T['trajectory_msgs/msg/JointTrajectoryPoint'](
            positions=np.array([float(i)]), velocities=np.array([]), accelerations=np.array([]),
            effort=np.array([]),
            time_from_start=T['builtin_interfaces/msg/Duration'](sec=0, nanosec=0))
        msg = T[TRAJ](header=T['std_msgs/msg/Header'](
            stamp=T['builtin_interfaces/msg/Time'](sec=i, nanosec=0), frame_id='base'),
            joint_names=['j1'], points=[point])
        writer.write(names.RAW_ACTION, t0 + i * 10**7, store.serialize_cdr(msg, TRAJ))
    writer.close()
    writer.close()  # idempotent
    segment = out / 'bag_1.mcap'
    record = open_record(segment)
    assert record.topics == {names.RAW_ACTION: TRAJ} and record.counts[names.RAW_ACTION] == 100
    times, values = zip(*[(t, m.points[0].positions[0]) for _, t, m in record.messages()])
    assert values == tuple(float(i) for i in range(100, 200))
    assert times == tuple(t0 + i * 10**7 for i in range(100, 200))

    cut = tmp_path / 'cut.mcap'  # a killed segment: only whole chunks survive
    cut.write_bytes(segment.read_bytes()[:segment.stat().st_size // 2])
    salvaged = [m.points[0].positions[0] for _, _, m in open_record(cut).messages()]
    assert 0 < len(salvaged) < 100
    assert salvaged == [float(i) for i in range(100, 100 + len(salvaged))]


def test_bad_inputs_raise_input_error(tmp_path, ros):
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(b'this is not an mcap file at all')
    empty_dir = tmp_path / 'empty'
    empty_dir.mkdir()
    bad_meta = tmp_path / 'badmeta'
    bad_meta.mkdir()
    (bad_meta / 'metadata.yaml').write_text('just: [a, list')
    for path, words in ((tmp_path / 'missing', 'no such record'), (garbage, 'not an MCAP file'),
                        (empty_dir, 'not a rosbag2 directory'), (bad_meta, 'metadata')):
        with pytest.raises(InputError, match=words):
            open_record(path)
    with pytest.raises(InputError, match='refusing to overwrite'):
        BagWriter(bad_meta)
    with pytest.raises(InputError, match='refusing to overwrite'):
        ros.add(FlightRecorder, output=str(bad_meta))
    with pytest.raises(InputError, match='output'):
        ros.add(FlightRecorder)
