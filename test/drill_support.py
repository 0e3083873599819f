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
Shared helpers of the drill tests (conftest.py wraps the worlds and contracts in fixtures).

The recordings the drills use, a short drill on the real world, a drill command run in this
process, and an episode's outcome as comparable values.
"""
import contextlib
import io
import json

from vla_safety_filter.cli import main
from vla_safety_filter.core.drill.conditions import parse_conditions
from vla_safety_filter.core.drill.policies import make_policy
from vla_safety_filter.core.drill.runner import DrillSettings, run_drill

#: the PushT human demonstrations (206 episodes), the drills' nearest-neighbour policy
PUSHT_DEMOS = 'pusht_cchi_v7_replay.npz'
#: four recorded ALOHA sim episodes (LeRobot)
ALOHA_DEMOS = 'aloha_sim_lerobot_4ep.npz'
#: steps per episode in short drills (6 s of PushT's 30 s limit)
SHORT = 60


def short_drill(world, demos: str, safety, conditions: str, episodes: int = 2, seed: int = 0,
                max_steps: int = SHORT, **settings) -> tuple:
    """Run `conditions` with a fresh nn policy; return (episodes, DrillSettings)."""
    drill = DrillSettings(episodes=episodes, seed=seed,
                          conditions=tuple(parse_conditions(conditions)), max_steps=max_steps,
                          **settings)
    return run_drill(world, make_policy(f'nn:{demos}'), safety, drill), drill


def run_cli(*argv) -> tuple[int, str, str]:
    """Run `vla-safety ARGV` in this process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def outcome(ep) -> tuple:
    """
    Return everything an episode reports but its per-step arrays, as comparable values.

    The monitor's summaries are compared as JSON text, so a NaN score equals itself.
    """
    return (ep.seed, ep.condition, ep.success, ep.stopped, ep.policy_fault, ep.cost,
            ep.interventions, json.dumps(ep.cost_by_kind, sort_keys=True),
            json.dumps(ep.whole, sort_keys=True), json.dumps(ep.early, sort_keys=True))
