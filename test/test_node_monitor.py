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
action_monitor over real rclpy/DDS, through its public interfaces only.

Lifecycle services, parameters, /vla/raw_action, /vla/safe_action, /vla/filter_events,
/vla/episode, /vla/safety_stop, /diagnostics.
"""
import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_harness import wait_for
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_safety_filter import names
from vla_safety_filter.core.sequential import MotionCalibration
from vla_safety_filter.nodes.action_monitor import ActionMonitorNode
from vla_safety_filter.nodes.common import LATCHED_QOS

NAMES = ('j0', 'j1')
DT = 0.02
CONFIGURE, CLEANUP = Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP
ACTIVATE = Transition.TRANSITION_ACTIVATE
ERROR = 2


def _calibration(path, **fields) -> str:
    """Write a 2-joint calibration file (scores of a well-behaved stream), fields overridable."""
    data = {'joint_names': np.array(NAMES), 'mu': np.zeros(2), 'sigma': np.ones(2),
            'scores': np.linspace(0.5, 3.0, 200), 'velocity_scale': np.ones(2), 'q': 3.0,
            'alpha': 0.05, 'dt': DT}
    data.update(fields)
    np.savez(path, **data)
    return str(path)


class Probe:
    """The test's own node: transitions, parameters, topics in and out of the monitor."""

    def __init__(self, ros):
        self.node = ros.node('probe')
        self.stops: list[bool] = []
        self.diag: dict[str, DiagnosticStatus] = {}
        self.node.create_subscription(Bool, names.SAFETY_STOP,
                                      lambda m: self.stops.append(m.data), LATCHED_QOS)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 100)
        self.action = self.node.create_publisher(JointTrajectory, names.RAW_ACTION, 10)
        self.events = self.node.create_publisher(DiagnosticArray, names.FILTER_EVENTS, 100)
        self.episode = self.node.create_publisher(String, names.EPISODE, LATCHED_QOS)
        self._change = self.node.create_client(ChangeState, '/action_monitor/change_state')
        self._set = self.node.create_client(SetParameters, '/action_monitor/set_parameters')
        self.t = 0

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name == names.MONITOR_STATUS:
                self.diag['now'] = s

    def value(self, key: str) -> str | None:
        status = self.diag.get('now')
        return None if status is None else {kv.key: kv.value for kv in status.values}.get(key)

    def _call(self, client, request):
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(request)
        assert wait_for(future.done, timeout=10.0)
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self._change, ChangeState.Request(
            transition=Transition(id=transition_id))).success

    def set_params(self, **params) -> list:
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in params.items()])
        return self._call(self._set, request).results

    def send(self, values) -> None:
        self.action.publish(JointTrajectory(joint_names=list(NAMES), points=[
            JointTrajectoryPoint(positions=[float(v) for v in values])]))

    def healthy(self, steps: int) -> None:
        """Send a smooth in-calibration motion (0.2 amplitude, 0.5 Hz), one action per DT."""
        for _ in range(steps):
            phase = 2 * math.pi * 0.5 * self.t * DT
            self.send([0.2 * math.sin(phase), 0.2 * math.cos(phase)])
            self.t += 1
            time.sleep(DT)

    def refusals(self, *reasons) -> None:
        self.events.publish(DiagnosticArray(status=[DiagnosticStatus(message=r) for r in reasons]))


def _monitor(ros, tmp_path, **params) -> Probe:
    params = {'calibration_file': _calibration(tmp_path / 'cal.npz'), 'diagnostic_period': 0.1,
              **params}
    ros.add(ActionMonitorNode, 'action_monitor', **params)
    return Probe(ros)


def _active(ros, tmp_path, **params) -> Probe:
    probe = _monitor(ros, tmp_path, **params)
    assert probe.transition(CONFIGURE) and probe.transition(ACTIVATE)
    assert wait_for(lambda: probe.node.count_subscribers(names.RAW_ACTION) == 1
                    and probe.node.count_subscribers(names.FILTER_EVENTS) == 1
                    and probe.node.count_subscribers(names.EPISODE) == 1)
    time.sleep(0.2)                               # matched on the monitor's side too
    return probe


BAD_PARAMETERS = [
    ({'diagnostic_period': 0.0}, 'diagnostic_period'),
    ({'diagnostic_period': math.nan}, 'diagnostic_period'),
    ({'rate_hz': math.nan}, 'rate_hz'),
    ({'rate_hz': -5.0}, 'rate_hz'),
    ({'cost_budget': math.inf}, 'cost_budget'),
    ({'cost_budget': 0.0}, 'cost_budget'),
    ({'profile': 'bogus'}, 'profile'),
    ({'stop_on': 'sometimes'}, 'stop_on'),
    ({'stop_clear_s': math.nan}, 'stop_clear_s'),
]
BAD_FILES = [
    ({'alpha': 1.5}, 'alpha'),
    ({'alpha': math.nan}, 'alpha'),
    ({'scores': np.ones((10, 2))}, 'scores'),
    ({'scores': np.array([1.0, math.inf])}, 'scores'),
    ({'mu': np.zeros(3)}, 'mu'),
    ({'sigma': np.array([1.0, 0.0])}, 'sigma'),
    ({'q': np.array([1.0, 2.0])}, 'q'),
    ({'joint_names': np.array(['j0', 'j0'])}, 'joint names'),
]


CASES = [('param', *case) for case in BAD_PARAMETERS] + [('file', *case) for case in BAD_FILES]


@pytest.mark.parametrize('kind, params, word', CASES,
                         ids=[f'{kind}-{word}' for kind, _, word in CASES])
def test_configure_refuses_every_out_of_range_parameter_with_its_reason(ros, tmp_path, kind,
                                                                        params, word):
    """
    Refuse every out-of-range parameter at configure, naming it.

    Regression (issue 10, defect 8): NaN rates, infinite budgets and broken calibration files
    were accepted at configure.
    """
    if kind == 'file':
        params = {'calibration_file': _calibration(tmp_path / 'bad.npz', **params)}
    probe = _monitor(ros, tmp_path, **params)
    assert not probe.transition(CONFIGURE)
    assert wait_for(lambda: probe.diag.get('now') is not None
                    and probe.diag['now'].level == bytes([ERROR]))
    message = probe.diag['now'].message
    assert message.startswith('configure refused') and word in message, message
    assert probe.node.count_subscribers(names.RAW_ACTION) == 0


def test_live_parameters_are_validated_and_applied_read_only_ones_refused(ros, tmp_path):
    """
    Validate and apply live parameters; refuse the read-only ones.

    Regression: a writable cost_budget was accepted and ignored; configure-time parameters
    are now read-only.
    """
    probe = _active(ros, tmp_path)
    for name, value in (('calibration_file', '/tmp/other.npz'), ('profile', 'aloha'),
                        ('rate_hz', 10.0), ('diagnostic_period', 2.0)):
        [result] = probe.set_params(**{name: value})
        assert not result.successful and 'read-only' in result.reason, name
    for name, value in (('cost_budget', -1.0), ('cost_budget', math.nan),
                        ('stop_on', 'maybe')):
        [result] = probe.set_params(**{name: value})
        assert not result.successful and name in result.reason, (name, value)
    [result] = probe.set_params(cost_budget=0.5)
    assert result.successful
    assert wait_for(lambda: probe.value('cost_budget') == '0.5')
    probe.refusals('stale')                       # costs 1.0 > 0.5: ERROR at once
    assert wait_for(lambda: probe.diag['now'].level == bytes([ERROR])
                    and 'over budget' in probe.diag['now'].message)


def test_every_refusal_reason_is_charged_to_the_budget(ros, tmp_path):
    """Regression (defect 13): unknown_joint and bad_timing refusals cost 0."""
    probe = _active(ros, tmp_path, cost_budget=100.0)
    probe.refusals('unknown_joint')
    assert wait_for(lambda: float(probe.value('episode_cost') or 0) >= 1.0)
    probe.refusals('bad_timing', 'stale', 'a_reason_from_a_newer_filter')
    assert wait_for(lambda: float(probe.value('episode_cost') or 0) >= 4.0)


def test_alarm_stop_is_withdrawn_once_cleared_and_asserted_again_on_the_next_alarm(ros, tmp_path):
    """
    Withdraw the alarm stop once cleared and assert it again on the next alarm.

    Regression (defect 13): the monitor never said when its alarm condition had cleared, so the
    filter could not refuse a `~/reset` while it persisted.
    """
    probe = _active(ros, tmp_path, stop_on='alarm', stop_clear_s=0.3)
    probe.healthy(30)
    assert probe.stops == [] and probe.value('safety_stop') == 'clear'
    probe.send([math.nan, 0.0])
    assert wait_for(lambda: probe.stops == [True])
    assert wait_for(lambda: probe.value('safety_stop') == 'asserted')
    assert probe.diag['now'].level == bytes([ERROR])
    assert 'safety stop asserted: alarm' in probe.diag['now'].message
    assert 'alarm' in probe.value('stop_reason')
    probe.healthy(5)                              # fewer than the 15 hold-off steps: still on
    time.sleep(0.2)
    assert probe.stops == [True]
    probe.healthy(40)
    assert wait_for(lambda: probe.stops == [True, False])
    assert wait_for(lambda: probe.value('safety_stop') == 'clear')
    probe.send([0.0, math.inf])
    assert wait_for(lambda: probe.stops == [True, False, True])


def test_persistent_alarm_condition_keeps_the_stop_asserted(ros, tmp_path):
    """A frozen policy (stall condition holding) never clears the stop, however long it lasts."""
    probe = _active(ros, tmp_path, stop_on='alarm', stop_clear_s=0.1)
    probe.healthy(10)
    for _ in range(150):                          # 3 s frozen: stall alarm after 1.5 s
        probe.send([0.1, 0.1])
        time.sleep(DT)
    assert wait_for(lambda: probe.stops == [True])
    assert 'stall' in probe.value('stop_reason')
    time.sleep(0.3)
    assert probe.stops == [True]


def test_budget_stop_holds_until_the_next_episode(ros, tmp_path):
    probe = _active(ros, tmp_path, stop_on='budget', cost_budget=1.5)
    probe.refusals('stale')
    probe.refusals('bad_timing')
    assert wait_for(lambda: probe.stops == [True])
    assert wait_for(lambda: 'over budget' in (probe.value('stop_reason') or ''))
    probe.healthy(30)
    assert probe.stops == [True]
    probe.episode.publish(String(data='episode-2'))
    assert wait_for(lambda: probe.stops == [True, False])


def test_configure_cleanup_configure_activate_keeps_one_of_each_entity(ros, tmp_path):
    """
    Keep one of each entity over configure, cleanup, configure, activate.

    Regression (defect 17): cleanup destroyed subscriptions behind the executor's back and left
    the stop publisher alive, so every reconfigure added one more.
    """
    probe = _monitor(ros, tmp_path, stop_on='alarm')
    for _ in range(3):
        assert probe.transition(CONFIGURE)
        assert wait_for(lambda: probe.node.count_subscribers(names.RAW_ACTION) == 1
                        and probe.node.count_publishers(names.SAFETY_STOP) == 1)
        assert probe.transition(CLEANUP)
        assert wait_for(lambda: probe.node.count_subscribers(names.RAW_ACTION) == 0
                        and probe.node.count_publishers(names.SAFETY_STOP) == 0)
    assert probe.transition(CONFIGURE) and probe.transition(ACTIVATE)
    assert wait_for(lambda: probe.node.count_subscribers(names.EPISODE) == 1
                    and probe.node.count_publishers(names.SAFETY_STOP) == 1)
    probe.healthy(10)
    probe.send([math.nan, math.nan])
    assert wait_for(lambda: probe.stops == [True])


def _motion_calibration(path) -> str:
    """Write a calibration file with motion scores of the healthy circle (12 noisy 3 s runs)."""
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(12):
        phase = 2 * math.pi * (0.5 * np.arange(150) * DT + rng.random())
        circle = 0.2 * np.stack([np.sin(phase), np.cos(phase)], axis=1)
        episodes.append(circle + rng.normal(scale=0.002, size=circle.shape))
    motion = MotionCalibration.from_episodes(episodes, np.ones(2), dt=DT)
    assert motion.cusum is not None and motion.windows is not None
    return _calibration(path, **motion.to_arrays())


def test_chunk_seam_jump_asserts_the_stop_and_the_cusum_reports_its_measured_rate(ros, tmp_path):
    """Issue 12: a chunk whose first point jumps from the executed command is a seam_spike."""
    probe = _active(ros, tmp_path, stop_on='alarm',
                    calibration_file=_motion_calibration(tmp_path / 'motion.npz'))
    executed = probe.node.create_publisher(JointTrajectory, names.SAFE_ACTION, 10)
    assert wait_for(lambda: probe.node.count_subscribers(names.SAFE_ACTION) == 1)
    probe.healthy(30)
    assert wait_for(lambda: probe.value('motion_cusum_threshold_iid') is not None)
    assert float(probe.value('motion_cusum_threshold')) > 0
    assert float(probe.value('motion_cusum_measured_per_hour_iid')) >= 0
    assert probe.value('motion_cusum_stride_steps') == '1'
    assert probe.stops == []
    here = [0.2 * math.sin(math.pi * probe.t * DT), 0.2 * math.cos(math.pi * probe.t * DT)]

    def chunk(first):
        probe.action.publish(JointTrajectory(joint_names=list(NAMES), points=[
            JointTrajectoryPoint(positions=[float(v) for v in p]) for p in (first, first)]))

    executed.publish(JointTrajectory(joint_names=list(NAMES),
                                     points=[JointTrajectoryPoint(positions=here)]))
    time.sleep(0.2)
    chunk(here)                                   # continues the executed motion: no seam alarm
    time.sleep(0.3)
    assert probe.stops == []
    chunk([here[0] + 0.15, here[1]])              # a jump no demonstrated step came near
    assert wait_for(lambda: probe.stops == [True])
    assert wait_for(lambda: 'seam_spike' in (probe.value('stop_reason') or ''))
    assert wait_for(lambda: probe.value('seam_score') not in (None, 'nan'))
