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
A controlled stop on SIGINT/SIGTERM (issue 14, part 7), as `ros2 run` or `ros2 launch` ends it.

The safety_filter runs as its own process (its console entry point) commanding a tracking arm;
the test moves a joint at speed, signals the process and reads the controller topic: the joint
decelerates within max_acceleration to rest past where it was when the signal came, and the
process ends with exit code 0. Before, the signal ended the process at once and the last
command was wherever the arm happened to be, at full speed.
"""
import os
import signal
import subprocess
import time

from lifecycle_msgs.msg import Transition
import numpy as np
from probes import filter_argv
import pytest
from ros_harness import wait_for

AMAX = 4.0


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_brakes_the_arm_to_rest_within_its_limits_then_ends_the_process(
        ros, small_contract, filter_probe, fake_arm, tmp_path, sig):
    fake_arm([0.0, 0.0, 0.0])
    probe = filter_probe()
    params = {**small_contract, 'max_acceleration': [AMAX] * 3, 'controller_name': 'arm',
              'command_timeout': 0.5}
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros.context.get_domain_id()))
    with open(tmp_path / 'filter.log', 'w+') as log:
        proc = subprocess.Popen(filter_argv(params), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            service = ('/safety_filter/change_state', ['lifecycle_msgs/srv/ChangeState'])
            assert wait_for(lambda: service in probe.node.get_service_names_and_types(), 60)
            assert wait_for(lambda: probe.transition(Transition.TRANSITION_CONFIGURE), 10)
            assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), 5)
            # the filter's subscription may match late on a loaded machine: actions sent before
            # are lost, so the 0.3 s of speeding up toward 0.9 count from the first command
            assert wait_for(lambda: probe.raw.get_subscription_count() >= 1, 10)
            moving, deadline = None, time.monotonic() + 10.0
            while moving is None or time.monotonic() - moving < 0.3:
                probe.send([[0.9, 0.0, 0.0]] * 3)
                if moving is None and probe.commands:
                    moving = time.monotonic()
                assert time.monotonic() < deadline, 'the filter never commanded'
                time.sleep(0.01)
            signalled = time.monotonic()
            proc.send_signal(sig)
            code = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        log.seek(0)
        output = log.read()
    assert code == 0, output
    assert 'braking over' in output
    times, j0 = np.array(probe.times), np.array(probe.commands)[:, 0]
    before = j0[times < signalled]
    after = j0[times >= signalled]
    # it was moving at speed when signalled and kept going while it braked ...
    assert before[-1] - before[-6] > 0.02
    assert after.size >= 10 and after[-1] - before[-1] > 0.05
    # ... to rest, never reversing, with a deceleration within the limit: the braking rows are
    # one control period apart and their steps shrink by at most AMAX dt^2 (the first commands
    # after the signal may be ticks already in flight, late ones longer: judged from the
    # fourth on), and it covers a braking distance, not a dead stop
    steps = np.diff(after)
    assert np.all(steps >= -1e-12) and steps[-1] < 1e-9
    dt = 1.0 / small_contract['control_rate_hz']
    assert np.all(-np.diff(steps[3:]) <= AMAX * dt * dt * 1.001 + 1e-12)
    speed = (before[-1] - before[-6]) / (5 * dt)          # about the speed when signalled
    assert after[-1] - before[-1] >= 0.25 * speed ** 2 / (2 * AMAX)
