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
The ROS closed loop solves PushT as the drill does, for the same policy and seeds.

Both run the built-in nearest-neighbour policy on the real PushT demonstrations with a contract
calibrated on them, replanning every 4 steps, for 150 steps on world seeds 7..10: the drill
synchronously in-process, the loop over real DDS and a real websocket (`vla-safety demo --world
pusht --no-faults`: serve-policy -> policy_bridge -> execspec_check -> safety_filter ->
sim_world). Four episodes of 15 s cannot compare success *rates* with any power, so the check is
paired: the seeds were picked from the drill to hold two successes and two failures, and the loop
must reach the drill's outcome on at least three of the four. A loop that always fails (or always
succeeds) matches two; one that ignored its observations would not find the two successes.
"""
import json
import os

import numpy as np
import pytest
from ros_harness import next_domain
from vla_safety_filter.cli import main

SEEDS = (7, 8, 9, 10)
#: The loop over ROS runs asynchronously (chunk timing differs from the drill's by milliseconds),
#: and pushing is chaotic: a drill success can end short of gym-pusht's 0.95 over ROS (measured
#: on seeds 7 and 10: 0.946, 0.844; 0.945, 0.737). The loop reaches the drill's success when it
#: pushes the T at least half onto the goal; a loop that ignored its observations leaves it near
#: 0 (the failing seeds: 0.0 in every run).
REACHED = 0.5
MAX_STEPS = 150
REPLAN_EVERY = 4


@pytest.fixture(scope='module')
def demos(data_file):
    pytest.importorskip('gym_pusht')
    return data_file('pusht_cchi_v7_replay.npz')


def drill_outcomes(demos: str, out) -> dict:
    """Return {seed: success} of the synchronous drill (filter condition)."""
    code = main(['drill', '--policy', f'nn:{demos}', '--episodes', str(len(SEEDS)),
                 '--seed', str(SEEDS[0]), '--conditions', 'filter',
                 '--replan-every', str(REPLAN_EVERY), '--max-steps', str(MAX_STEPS),
                 '--no-plots', '--output', str(out)])
    assert code == 0
    episodes = np.load(os.path.join(out, 'episodes.npz'), allow_pickle=False)
    return {int(s): bool(ok) for s, ok in zip(episodes['seed'], episodes['success'])}


def ros_outcomes(demos: str, out) -> tuple[dict, dict]:
    """Return {seed: reached (REACHED)} of the ROS loop (a reset takes the next seed), summary."""
    code = main(['demo', '--world', 'pusht', '--headless', '--no-faults', '--output', str(out),
                 '--seed', str(SEEDS[0] - 1), '--episodes', str(len(SEEDS)),
                 '--max-steps', str(MAX_STEPS), '--demos', demos, '--timeout', '240',
                 '--domain-id', str(next_domain())])
    with open(os.path.join(out, 'demo_summary.json')) as fh:
        summary = json.load(fh)
    assert code == 0 and summary['ok'], summary
    return {e['seed']: e['success'] or (e['coverage'] or 0.0) >= REACHED
            for e in summary['episodes']}, summary


def test_ros_loop_reaches_the_drills_outcome_on_paired_seeds(demos, tmp_path):
    drill = drill_outcomes(demos, tmp_path / 'drill')
    assert sorted(drill.values()) == [False, False, True, True], drill   # the seeds' premise
    ros, summary = ros_outcomes(demos, tmp_path / 'ros')
    assert sorted(ros) == list(SEEDS), ros
    agree = sum(ros[s] == drill[s] for s in SEEDS)
    assert agree >= 3, {'drill': drill, 'ros': ros}
    audit = summary['contract_audit']        # and the loop kept the contract throughout
    assert audit['outside_bounds'] == audit['over_rate_limit'] == audit['over_speed'] == 0
