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
The filter's optional real-time setup (issue 15), on its own process as `ros2 run` starts it.

`realtime_priority`, `cpu_affinity` and `lock_memory` make the control thread what
ros2_control_node's is: read from the operating system (scheduler, affinity, locked memory of the
process). Where an option is not permitted it is refused with a WARN and the filter runs
without it. `gc_mode: quiet` keeps the garbage collector out of the active loop: the filter's
/diagnostics count no collection while it streams, where the default counts some. Either way
the commands keep the velocity limit over elapsed time.
"""
import os
import subprocess
import time

from lifecycle_msgs.msg import Transition
import numpy as np
from probes import filter_argv
import pytest
from ros_harness import wait_for

VMAX = 2.0
#: A CPU number no test machine has: pinning to it is refused.
NO_SUCH_CPU = 4095


def _locked_kb(pid: int) -> int:
    """Return the process's locked memory (VmLck) in kB."""
    with open(f'/proc/{pid}/status') as fh:
        return int(next(line for line in fh if line.startswith('VmLck:')).split()[1])


def _stream(probe, seconds: float) -> None:
    """Send a sweep of joint 0 (faster than vmax at first) as 3-point chunks for `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        x = 0.8 * np.sin(3.0 * (time.monotonic() - start))
        probe.send([[x, -x, 0.0]] * 3)
        time.sleep(0.01)


def _timing(probe) -> dict:
    """Return the filter's `timing.*` values from its last status."""
    values = {kv.key: kv.value for kv in probe.status.values} if probe.status else {}
    return {k[7:]: v for k, v in values.items() if k.startswith('timing.')}


def _run(ros, small_contract, filter_probe, fake_arm, tmp_path, options: dict):
    """Start the filter process with `options`, stream 2 s; return pid, log, probe, timing."""
    fake_arm([0.0, 0.0, 0.0])
    probe = filter_probe()
    params = {**small_contract, 'controller_name': 'arm', 'command_timeout': 0.5, **options}
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros.context.get_domain_id()))
    log = open(tmp_path / 'filter.log', 'w+')
    proc = subprocess.Popen(filter_argv(params), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        service = ('/safety_filter/change_state', ['lifecycle_msgs/srv/ChangeState'])
        assert wait_for(lambda: service in probe.node.get_service_names_and_types(), 60)
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        assert wait_for(lambda: probe.transition(Transition.TRANSITION_ACTIVATE), 10)
        assert wait_for(lambda: probe.raw.get_subscription_count() >= 1, 10)
        _stream(probe, 2.0)
        assert wait_for(lambda: int(_timing(probe).get('commands', 0)) > 100, 5)
        timing = _timing(probe)
        scheduler, cpus = os.sched_getscheduler(proc.pid), os.sched_getaffinity(proc.pid)
        locked = _locked_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
    return {'output': output, 'probe': probe, 'timing': timing, 'scheduler': scheduler,
            'cpus': cpus, 'locked_kb': locked}


def _within_vmax(probe) -> None:
    """Assert /vla/safe_action moves no joint faster than vmax over its tick stamps."""
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in probe.safe],
                      dtype=np.int64)                   # whole ns: a float loses 0.2 us here
    positions = np.array([m.points[0].positions for m in probe.safe])
    assert len(probe.commands) > 100 and len(positions) > 100
    elapsed = np.diff(stamps) * 1e-9
    assert np.all(elapsed > 0)
    steps = np.abs(np.diff(positions, axis=0)).max(axis=1)
    assert np.all(steps <= VMAX * elapsed * (1 + 1e-6) + 1e-9)
    assert np.ptp(positions[:, 0]) > 0.5                   # it did move


def test_quiet_realtime_filter_runs_fifo_pinned_locked_and_collects_no_garbage(
        ros, small_contract, filter_probe, fake_arm, tmp_path):
    run = _run(ros, small_contract, filter_probe, fake_arm, tmp_path, {
        'realtime_priority': 10, 'cpu_affinity': [0], 'lock_memory': True, 'gc_mode': 'quiet'})
    output = run['output']
    assert run['cpus'] == {0}                               # the control (main) thread
    if 'SCHED_FIFO priority 10' in output.split('control thread:', 1)[-1].splitlines()[0]:
        assert run['scheduler'] == os.SCHED_FIFO
    else:
        assert 'real-time option refused' in output and 'SCHED_FIFO' in output
        assert run['scheduler'] == os.SCHED_OTHER
    if 'memory locked' in output:
        assert run['locked_kb'] > 0
    else:
        assert 'lock_memory refused' in output or 'mlockall failed' in output
    assert run['timing']['gc_collections'] == '0'
    _within_vmax(run['probe'])


def test_default_filter_refuses_a_missing_cpu_with_a_warn_and_still_commands(
        ros, small_contract, filter_probe, fake_arm, tmp_path):
    run = _run(ros, small_contract, filter_probe, fake_arm, tmp_path,
               {'cpu_affinity': [NO_SUCH_CPU]})
    assert 'real-time option refused' in run['output'] and str(NO_SUCH_CPU) in run['output']
    assert run['scheduler'] == os.SCHED_OTHER and run['cpus'] == os.sched_getaffinity(0)
    assert run['locked_kb'] == 0
    assert int(run['timing']['gc_collections']) > 0         # the collector runs while active
    _within_vmax(run['probe'])


@pytest.mark.parametrize('options', [{'realtime_priority': -1}, {'realtime_priority': 100},
                                     {'gc_mode': 'never'}])
def test_invalid_realtime_options_refuse_configure(ros, small_contract, filter_probe, options):
    from vla_safety_filter.nodes.safety_filter import SafetyFilter

    ros.add(SafetyFilter, 'safety_filter', controller_name='arm', **small_contract, **options)
    probe = filter_probe()
    assert not probe.transition(Transition.TRANSITION_CONFIGURE)
    assert wait_for(lambda: probe.status is not None and probe.status.level == b'\x02')
    assert 'configure refused' in probe.status.message
