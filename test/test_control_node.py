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
Issue 15 over real rclpy/DDS: execute on arrival, and the achieved timing on /diagnostics.

A recorded ALOHA episode (14 joints) is sent as chunks at random arrival times, due now or
later; what the controller and /vla/safe_action receive keeps velocity and acceleration over
elapsed time. The filter's status carries its achieved timing and WARNs when a stalled executor
keeps it below the configured rate.
"""
import os
import random
import time

from builtin_interfaces.msg import Duration
from lifecycle_msgs.msg import Transition
import numpy as np
from probes import FakeArm, FilterProbe
from ros_harness import wait_for
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter.core.contract import audit, Contract
from vla_safety_filter.nodes.safety_filter import SafetyFilter

ALOHA = 'aloha_sim_lerobot_4ep.npz'
NAMES = [f'{side}_{name}' for side in ('left', 'right') for name in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
DT, FPS = 0.01, 50.0
VMAX, AMAX = 1.0, 20.0
WARN = b'\x01'


def _episode(shared_data):
    """Return the first recorded episode's actions [T, 14]."""
    data = np.load(os.path.join(shared_data, ALOHA))
    actions = data['actions'].astype(float)
    return actions[data['episode_index'] == data['episode_index'][0]]


def _contract(actions):
    """Return a contract around the recording, slower than it in places (the guard acts)."""
    lower, upper = actions.min(axis=0) - 0.2, actions.max(axis=0) + 0.2
    return Contract(tuple(NAMES), lower, upper, [VMAX] * 14, DT, max_acceleration=[AMAX] * 14)


def _start(ros, contract, start):
    """Start a tracking arm, the filter and a probe; configure and activate the filter."""
    arm = FakeArm(ros, start, controller='arm', names=NAMES)
    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', command_timeout=0.2,
            joint_names=NAMES, lower=list(contract.lower), upper=list(contract.upper),
            max_velocity=list(contract.max_velocity),
            max_acceleration=list(contract.max_acceleration), control_rate_hz=1 / DT)
    probe = FilterProbe(ros)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    return arm, probe


def _send_chunk(publisher, frames, first_due):
    """Publish recorded frames as one chunk, FPS apart, the first due in `first_due` s."""
    points = [JointTrajectoryPoint(positions=[float(x) for x in frame],
                                   time_from_start=Duration(nanosec=int((first_due + k / FPS)
                                                                        * 1e9)))
              for k, frame in enumerate(frames)]
    publisher.publish(JointTrajectory(joint_names=NAMES, points=points))


def _replay(probe, actions, seconds, seed=0):
    """Send the episode in real time as 3-frame chunks at random arrival times (5..40 ms)."""
    rng = random.Random(seed)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        k = min(int(elapsed * FPS), len(actions) - 3)
        _send_chunk(probe.raw, actions[k:k + 3], rng.choice([0.0, 0.0, DT / 2, 3 * DT]))
        time.sleep(rng.uniform(0.005, 0.04))


def _segments(times, values, gap):
    """Split a stream where consecutive times are more than `gap` apart."""
    cuts = np.flatnonzero(np.diff(times) > gap) + 1
    return list(zip(np.split(times, cuts), np.split(values, cuts)))


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_arrivals_at_any_phase_keep_velocity_and_acceleration_over_elapsed_time(
        ros, shared_data):
    actions = _episode(shared_data)[::2]                    # twice as fast: the guard acts
    contract = _contract(actions)
    arm, probe = _start(ros, contract, actions[0])
    _replay(probe, actions, 3.0)
    time.sleep(0.3)
    safe = np.array([p.points[0].positions for p in probe.safe])
    stamps = np.array([p.header.stamp.sec + 1e-9 * p.header.stamp.nanosec for p in probe.safe])
    assert len(safe) > 150
    # the stamps are the guard's own tick times: velocity between any consecutive commands
    check = audit(contract, safe[0], safe, stamps, time_slack=1e-6)
    assert check['outside_bounds'] == check['non_finite'] == 0
    assert check['max_speed_ratio'] <= 1.0 + 1e-3, check
    # acceleration where ticks came within MAX_STEP_PERIODS (a longer stall is not caught up)
    for times, values in _segments(stamps, safe, 2 * DT - 1e-4):
        if len(times) > 8:
            check = audit(contract, values[0], values, times, window=3 * DT, time_slack=1e-4)
            assert check['max_accel_ratio'] <= 1.05, check
    # the controller topic carries exactly that stream, in order (so the same audit holds for
    # it over the ticks' times; its delivery times add the machine's scheduling jitter)
    commands = np.array(probe.commands)
    start = int(np.flatnonzero(np.all(safe == commands[0], axis=1))[0])
    n = min(len(commands), len(safe) - start)
    assert n > 150 and np.array_equal(commands[:n], safe[start:start + n])
    assert {'velocity', 'acceleration'} & set(probe.events)     # the guard did act


def test_achieved_timing_is_on_diagnostics(ros, shared_data):
    actions = _episode(shared_data)
    arm, probe = _start(ros, _contract(actions), actions[0])
    _replay(probe, actions, 1.5)
    assert wait_for(lambda: probe.status is not None and
                    float(_values(probe.status).get('timing.commands', 0)) > 50, timeout=5)
    values = _values(probe.status)
    assert float(values['timing.configured_rate_hz']) == 100.0
    assert 0 < float(values['timing.period_mean_ms']) <= float(values['timing.period_p99_ms'])
    assert float(values['timing.period_p99_ms']) <= float(values['timing.period_max_ms'])
    assert int(values['timing.missed_ticks']) >= 0
    assert 0 < float(values['timing.work_mean_ms']) <= float(values['timing.work_max_ms'])
    assert 0 < float(values['timing.latency_p50_ms']) <= float(values['timing.latency_max_ms'])


def test_a_filter_kept_below_its_rate_warns_on_diagnostics(ros, shared_data):
    actions = _episode(shared_data)
    arm, probe = _start(ros, _contract(actions), actions[0])
    # another node on the same executor hogs it: ticks come at most every ~30 ms, not 10
    hog = probe.node.create_timer(0.03, lambda: time.sleep(0.025))
    _replay(probe, actions, 2.5)
    assert wait_for(lambda: probe.status is not None and probe.status.level == WARN and
                    'below the configured' in probe.status.message, timeout=5)
    values = _values(probe.status)
    assert float(values['timing.achieved_rate_hz']) < 98.0
    assert int(values['timing.missed_ticks']) > 0
    probe.node.destroy_timer(hog)
