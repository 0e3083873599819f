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
End to end: a flight record of what reached the controller through fault drills.

Checked over elapsed time (bounds, velocity and acceleration), not message by message.

Drills, over real rclpy/DDS with the filter, a tracking arm and the flight recorder on one
executor: a policy asking for motion beyond the contract, late ticks (the executor is blocked
now and then), malformed /joint_states, the policy killed and restarted, a latched stop during
which the arm is moved by hand, then release, reset and resume. Late ticks stay within two
control periods: a longer stall is not caught up (core.contract.MAX_STEP_PERIODS), so the command
stream's velocity dips there — a deceleration the acceleration audit would report.
"""
import threading
import time

from lifecycle_msgs.msg import Transition
import numpy as np
from probes import FakeArm, FilterProbe, SMALL_CONTRACT
from ros_harness import wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from vla_safety_filter import names
from vla_safety_filter.core.contract import audit, Contract, MAX_STEP_PERIODS
from vla_safety_filter.nodes.flight_recorder import FlightRecorder
from vla_safety_filter.nodes.safety_filter import SafetyFilter
from vla_safety_filter.record.read import open_record

DT, VMAX, AMAX = 0.01, 1.0, 10.0
JOINTS = SMALL_CONTRACT['joint_names']
CONTRACT = Contract(tuple(JOINTS), [-1.0] * 3, [1.0] * 3, [VMAX] * 3, DT,
                    max_acceleration=[AMAX] * 3)
GAP = 0.15   # silence longer than this separates segments (stop, latch); each resumes anew


class Policy:
    """
    Stream a sinusoid far faster than the contract allows, at 100 Hz until stopped.

    It stays inside the bounds: braking toward a bound is issue 14, not what this drill measures.
    """

    def __init__(self, probe):
        self.probe, self.running = probe, False

    def run_for(self, seconds):
        self.running = True
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            t = time.monotonic()
            self.probe.send(0.9 * np.sin([3 * t, 5 * t + 1, 7 * t + 2]))
            time.sleep(DT)
        self.running = False


def _segments(times, values, gap=GAP):
    """Split a stream at silences longer than `gap`."""
    cuts = np.flatnonzero(np.diff(times) > gap) + 1
    return list(zip(np.split(times, cuts), np.split(values, cuts)))


def test_controller_stream_keeps_the_contract_over_time_through_fault_drills(ros, tmp_path):
    arm = FakeArm(ros, [0.0, 0.2, -0.2])
    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', command_timeout=0.1,
            joint_states_timeout=0.3, joint_names=JOINTS, lower=list(CONTRACT.lower),
            upper=list(CONTRACT.upper), max_velocity=list(CONTRACT.max_velocity),
            max_acceleration=list(CONTRACT.max_acceleration), control_rate_hz=1 / DT)
    recorder = ros.add(FlightRecorder, output=str(tmp_path / 'flight'), controller_name='arm')
    probe = FilterProbe(ros)
    stall = probe.node.create_timer(0.25, lambda: time.sleep(0.008))   # late ticks
    bad_states = probe.node.create_publisher(JointState, names.JOINT_STATES, 10)
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), timeout=5)
    policy = Policy(probe)

    policy.run_for(1.0)
    worker = threading.Thread(target=policy.run_for, args=(1.0,))
    worker.start()
    for _ in range(20):                                  # a driver publishing short messages
        bad_states.publish(JointState(name=JOINTS, position=[0.0]))
        time.sleep(0.02)
    worker.join()
    # the policy died: hold, then stop (waited for: a loaded machine delays the executor)
    assert wait_for(lambda: probe.state() == 'stopped', timeout=3.0)
    time.sleep(0.3)                                      # silent a while: a segment ends
    policy.run_for(0.6)                                  # ... and came back
    stop = probe.node.create_publisher(Bool, names.SAFETY_STOP, 10)
    assert wait_for(lambda: stop.get_subscription_count() >= 1)
    stop.publish(Bool(data=True))
    assert wait_for(lambda: probe.state() == 'latched')
    arm.move_by_hand([-0.6, 0.5, 0.1])
    time.sleep(0.3)
    stop.publish(Bool(data=False))
    assert wait_for(lambda: probe.reset().success, timeout=3)
    arm.follow = True
    policy.run_for(1.0)
    probe.node.destroy_timer(stall)
    time.sleep(0.3)
    recorder.close()

    record = open_record(tmp_path / 'flight')
    commands, arrivals, safe, stamps, states = [], [], [], [], []
    for topic, log_time, msg in record.messages(['/arm/commands', names.SAFE_ACTION,
                                                 names.JOINT_STATES]):
        if topic == '/arm/commands':
            commands.append(list(msg.data))
            arrivals.append(log_time * 1e-9)
        elif topic == names.SAFE_ACTION:
            safe.append(list(msg.points[0].positions))
            stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
        elif len(msg.position) == len(msg.name):
            states.append((log_time * 1e-9, list(msg.position)))
    assert len(commands) > 200 and len(safe) >= len(commands) - 5
    segments = _segments(np.array(stamps), np.array(safe))
    assert len(segments) >= 3                            # stop and latch each ended a segment
    for times, values in segments:
        # publish stamps are the ticks' own times: velocity between consecutive commands (over
        # their times, not per message: a loaded machine's recorder may drop a message, and two
        # steps of vmax * h then look like one)
        check = audit(CONTRACT, values[0], values, times, time_slack=1e-6)
        assert check['outside_bounds'] == check['non_finite'] == 0
        assert check['max_speed_ratio'] <= 1.05, check
        # acceleration wherever ticks came within MAX_STEP_PERIODS: a longer stall is not caught
        # up, so the velocity dips there by design
        for t, q in _segments(times, values, gap=2 * DT + 1e-4):
            if len(t) > 8:
                check = audit(CONTRACT, q[0], q, t, window=3 * DT, time_slack=1e-4)
                assert check['max_accel_ratio'] <= 1.1, check
    # the controller received those audited commands, in order (the recorder may drop some on a
    # loaded machine; its delivery times add the machine's scheduling jitter, not the filter's)
    rows, k = [tuple(q) for q in safe], 0
    for q in commands:
        k = rows.index(tuple(q), k) + 1
    received = _segments(np.array(arrivals), np.array(commands))
    for times, values in received:
        assert audit(CONTRACT, values[0], values)['outside_bounds'] == 0
    for times, values in received[1:]:
        # every resume starts where the arm is (the hand moved it 0.5-0.6 rad), not where it was
        # last commanded: the first command received is at most a late first tick (vmax * h,
        # h <= MAX_STEP_PERIODS * dt) plus one step the loaded recorder may have dropped away
        measured = [p for t, p in states if t <= times[0]][-1]
        reach = (MAX_STEP_PERIODS + 1) * VMAX * DT
        assert np.all(np.abs(values[0] - measured) <= reach + 1e-9), (values[0], measured)
