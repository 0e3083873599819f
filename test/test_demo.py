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
`vla-safety demo --headless` end to end over real rclpy/DDS.

The drill is answered, the contract holds, the record opens with rosbags, the report renders;
with the wrong metadata nothing moves.
"""
import json
import os

import numpy as np
import pytest
from ros_harness import next_domain
from vla_safety_filter import names
from vla_safety_filter.cli import main
from vla_safety_filter.core.params import load_filter_params

RECORDED = (names.RAW_ACTION, names.SAFE_ACTION, names.forward_commands(),
            names.JOINT_STATES, names.FILTER_EVENTS, names.DIAGNOSTICS)


def run_demo(out, *extra):
    code = main(['demo', '--headless', '--output', str(out), '--domain-id', str(next_domain()),
                 '--timeout', '60', *extra])
    with open(os.path.join(out, 'demo_summary.json')) as fh:
        return code, json.load(fh)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')
    code, summary = run_demo(out)
    return out, code, summary


def test_every_injected_fault_is_answered_and_the_contract_holds(demo):
    _, code, summary = demo
    assert code == 0 and summary['ok']
    assert summary['pipeline_activated']
    assert [f['fault'] for f in summary['faults']] == ['unnormalized', 'oscillation', 'nan']
    for fault in summary['faults']:
        assert fault['answered'], fault
        assert fault['holds'] > 0 or fault['first_alarm_s'] <= 2.0, fault
    nan = summary['faults'][2]
    assert nan['holds'] >= 3 and nan['alarm'] == 'nonfinite'   # + a watchdog hold under load
    audit = summary['contract_audit']
    assert audit['commands'] >= 0.9 * summary['episode_steps']
    assert audit['outside_bounds'] == audit['over_rate_limit'] == audit['non_finite'] == 0
    assert summary['interventions_by_reason']['nonfinite'] == 3


def test_record_opens_with_rosbags_and_holds_the_pipeline_topics(demo):
    from rosbags.highlevel import AnyReader
    out, _, summary = demo
    with AnyReader([__import__('pathlib').Path(summary['files']['record'])]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert set(RECORDED) <= set(counts)
        # the filter keeps holding while idle, so the record and the observer stop a few apart
        assert abs(counts[names.forward_commands()] - summary['commands_sent']) <= 10
        assert counts[names.RAW_ACTION] == summary['raw_actions']
        commands = [reader.deserialize(raw, c.msgtype).data for c, _, raw in
                    reader.messages([c for c in reader.connections
                                     if c.topic == names.forward_commands()])]
    contract, _ = load_filter_params(os.path.join(out, 'demo_params.yaml'))
    commands = np.array(commands)
    assert np.all(commands >= contract.lower - 1e-9) and np.all(commands <= contract.upper + 1e-9)


def test_report_renders_from_the_record(demo):
    _, _, summary = demo
    report = summary['files']['report']
    assert os.path.isfile(report)
    folder = os.path.dirname(report)
    assert [f for f in os.listdir(folder) if f.endswith('.png')]


def test_wrong_metadata_refuses_to_activate_with_a_certificate(tmp_path):
    code, summary = run_demo(tmp_path, '--wrong-metadata')
    assert code == 0 and summary['ok']
    assert not summary['pipeline_activated']
    assert summary['commands_sent'] == 0 and summary['raw_actions'] == 0
    assert summary['execspec']['level'] == 'ERROR' and summary['execspec']['verdict'] == 'mismatch'
    assert 'unnorm key differs' in summary['execspec']['message']
    drift = {row['joint']: row['drift'] for row in summary['certificate']}
    assert len(drift) == 14 and max(drift.values()) > 0.1


def _observed(stamps, positions, arrivals):
    from vla_safety_filter.demo.observer import Observed
    rows = [np.array([p]) for p in positions]
    return Observed(command_times=list(arrivals), commands=rows, safe_times=list(arrivals),
                    safe_stamps=list(stamps), safe=rows)


def test_the_demo_audit_judges_speed_at_the_guards_stamps_per_publishing_segment():
    from vla_safety_filter.core.contract import Contract
    from vla_safety_filter.demo.command_audit import audit_observed
    contract = Contract(('j',), [-10.0], [10.0], [1.0], 0.1)
    stamps = np.r_[np.arange(10) * 0.1, 5.0 + np.arange(10) * 0.1]   # a stop, then a resume
    moves = np.r_[np.arange(10) * 0.1, 3.0 + np.arange(10) * 0.1]    # re-seeded at 3.0
    bunched = stamps + np.where(np.arange(20) % 2, -0.08, 0.0)       # delivery jitter
    check = audit_observed(contract, [0.0], _observed(stamps, moves, bunched))
    assert check['segments'] == 2 and check['over_speed'] == 0 and check['commands'] == 20
    assert 'max_arrival_speed_ratio' in check             # reported, not judged
    moves[12] += 0.5                                      # a jump inside a segment is caught
    check = audit_observed(contract, [0.0], _observed(stamps, moves, bunched))
    assert check['over_speed'] == 2 and check['over_rate_limit'] >= 1
