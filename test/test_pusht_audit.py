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

"""The PushT demo's contract audit: per episode, from its reset to sim_world's `done`."""
import numpy as np
from vla_safety_filter.core.contract import Contract
from vla_safety_filter.demo.observer import Observed
from vla_safety_filter.demo.pusht import Run
from vla_safety_filter.demo.pusht_summary import audit_episodes

CONTRACT = Contract(('pusher_x', 'pusher_y'), np.zeros(2), np.full(2, 512.0),
                    np.array([990.0, 630.0]), dt=0.1)


def _seen(jump_at: float) -> Observed:
    """Return a slow episode at 10 Hz from t = 1 to 2.9 s; at `jump_at`, a 15 px jump."""
    stamps = list(np.arange(10, 30) / 10.0)
    rows = [np.array([100.0 + 5.0 * k, 300.0]) for k in range(len(stamps))]
    k = int(np.searchsorted(stamps, jump_at))
    stamps.insert(k, jump_at)
    rows.insert(k, rows[k - 1] - 15.0)
    seen = Observed()
    for t, row in zip(stamps, rows):
        seen.safe_times.append(t)
        seen.safe_stamps.append(t)
        seen.safe.append(list(row))
        seen.command_times.append(t)
        seen.commands.append(list(row))
    return seen


def test_a_resume_after_done_is_no_command_step():
    run = Run(resets=[0.95], outcomes=[None], ends=[2.605])
    report = audit_episodes(_seen(jump_at=2.609), run, CONTRACT)
    assert report['over_speed'] == 0 and report['max_speed_ratio'] < 1.0


def test_a_jump_inside_an_episode_is_counted():
    run = Run(resets=[0.95], outcomes=[None], ends=[2.95])
    report = audit_episodes(_seen(jump_at=2.609), run, CONTRACT)
    assert report['over_speed'] >= 1 and report['max_speed_ratio'] > 2.0


def test_without_a_done_the_episode_runs_to_the_next_reset():
    run = Run(resets=[0.95, 2.0], outcomes=[None, None], ends=[None, None])
    report = audit_episodes(_seen(jump_at=1.509), run, CONTRACT)
    assert report['over_speed'] >= 1
