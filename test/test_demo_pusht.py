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
`vla-safety demo --world pusht --headless` end to end over real rclpy/DDS and a websocket.

On 127.0.0.1: the pipeline activates, the world moves under the filter's commands, every command
keeps the contract over elapsed time (the observer's and the record's), the policy server's
outage is held and recovered from, and the summary carries its fields.
"""
import json
import os
import pathlib

import numpy as np
import pytest
from ros_harness import next_domain
from vla_safety_filter import names
from vla_safety_filter.cli import main
from vla_safety_filter.core.contract import audit
from vla_safety_filter.core.params import load_filter_params

COMMANDS = names.forward_commands()
EPISODES, MAX_STEPS = 2, 40
FIELDS = {'world', 'server_uri', 'pipeline_activated', 'episodes', 'successes', 'raw_actions',
          'commands_sent', 'contract_audit', 'interventions_by_reason', 'alarms',
          'max_episode_cost', 'cost_budget', 'fault', 'ok', 'files'}


@pytest.fixture(scope='module')
def demo(tmp_path_factory, data_file):
    pytest.importorskip('gym_pusht')
    demos = data_file('pusht_cchi_v7_replay.npz')
    out = tmp_path_factory.mktemp('pusht')
    code = main(['demo', '--world', 'pusht', '--headless', '--output', str(out),
                 '--domain-id', str(next_domain()), '--timeout', '45',
                 '--episodes', str(EPISODES), '--max-steps', str(MAX_STEPS),
                 '--demos', demos])
    with open(os.path.join(out, 'demo_summary.json')) as fh:
        return out, code, json.load(fh)


def _recorded(summary, topic):
    """(log times in s, message data) of TOPIC in the demo's record."""
    from rosbags.highlevel import AnyReader
    with AnyReader([pathlib.Path(summary['files']['record'])]) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        rows = [(t * 1e-9, reader.deserialize(raw, c.msgtype))
                for c, t, raw in reader.messages(connections)]
    return np.array([t for t, _ in rows]), [m for _, m in rows]


def test_the_loop_completes_every_episode_and_keeps_the_contract(demo):
    _, code, summary = demo
    assert FIELDS <= set(summary)
    assert code == 0 and summary['ok'] and summary['pipeline_activated']
    episodes = summary['episodes']
    assert [e['seed'] for e in episodes] == [1, 2]   # each ~/reset takes the next seed
    assert all(0 < e['steps'] <= MAX_STEPS and 0.0 <= e['coverage'] <= 1.0 for e in episodes)
    check = summary['contract_audit']
    assert check['commands'] >= EPISODES * MAX_STEPS * 0.8
    for key in ('outside_bounds', 'over_rate_limit', 'non_finite', 'over_speed'):
        assert check[key] == 0, (key, check)


def test_commands_reached_the_world_and_the_record_keeps_the_contract(demo):
    out, _, summary = demo
    contract, _ = load_filter_params(os.path.join(out, 'demo_params.yaml'))
    times, messages = _recorded(summary, COMMANDS)
    commands = np.array([m.data for m in messages])
    assert len(commands) >= summary['commands_sent'] - 10
    # independently of the observer: the recorded stream over its own elapsed time
    check = audit(contract, commands[0], commands, times - times[0], window=5 * contract.dt,
                  time_slack=contract.dt)
    assert check['outside_bounds'] == check['non_finite'] == check['over_speed'] == 0, check
    # the world holds its start without commands: a pusher that travelled was commanded
    _, states = _recorded(summary, names.JOINT_STATES)
    pusher = np.array([m.position for m in states if list(m.name) == ['pusher_x', 'pusher_y']])
    assert len(pusher) > 0 and np.ptp(pusher, axis=0).max() > 20.0   # pixels
    commanded = commands[-1]
    assert np.linalg.norm(pusher[-1] - commanded) < 60.0


def test_the_server_outage_is_held_and_recovered(demo):
    _, _, summary = demo
    fault = summary['fault']
    assert fault['kind'] == 'policy server stopped'
    assert fault['chunks_while_down'] == 0
    assert fault['first_intervention'] is not None   # the filter held without new chunks
    assert fault['chunks_after_restart'] > 0 and fault['commands_after_restart'] > 0
