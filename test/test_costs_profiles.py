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

"""Safety cost budget escalation and summary; monitor profiles and their selection by name."""
import math

from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from vla_safety_filter.core.costs import (budget_summary, CostBudget, CostModel, ERROR, OK,
                                          UNKNOWN_KIND_COST, WARN)
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.profiles import (get_profile, METRIC_ALARMS, profile_names,
                                             PROFILES)


def test_budget_escalates_ok_warn_error():
    budget = CostBudget(CostModel(costs={'alarm.jerk': 2.0, 'intervention.position': 0.5},
                                  budget=5.0, warn_fraction=0.5))
    assert budget.level == OK
    budget.charge('intervention.position')           # 0.5
    budget.charge('alarm.jerk')                      # 2.5 = warn threshold
    assert budget.level == WARN and not budget.over_budget
    budget.charge('alarm.jerk', count=1)             # 4.5
    assert budget.level == WARN
    budget.charge('intervention.position', count=2)  # 5.5 > 5
    assert budget.level == ERROR and budget.over_budget
    assert budget.by_kind == {'intervention.position': 1.5, 'alarm.jerk': 4.0}
    budget.charge('alarm.unknown')                    # unpriced: the dearest alarm (2.0)
    assert budget.total == pytest.approx(7.5)
    budget.reset()
    assert budget.total == 0.0 and budget.level == OK


FILTER_REASONS = ('position', 'velocity', 'acceleration', 'shape', 'nonfinite', 'unknown_joint',
                  'bad_timing', 'stale', 'hold')
REFUSALS = ('shape', 'nonfinite', 'unknown_joint', 'bad_timing', 'stale')


def test_every_filter_reason_costs_and_refusals_cost_the_most():
    """Regression: `unknown_joint` and `bad_timing` refusals were charged 0 to the budget."""
    model = CostModel()
    costs = {reason: model.cost_of('intervention.' + reason) for reason in FILTER_REASONS}
    assert all(cost > 0 for cost in costs.values()), costs
    dearest = max(costs.values())
    assert all(costs[reason] == dearest for reason in REFUSALS)
    assert model.cost_of('intervention.never_heard_of') >= dearest
    assert model.cost_of('alarm.never_heard_of') >= max(
        model.cost_of('alarm.' + kind) for kind in ('cusum', 'stall', 'nonfinite'))


@given(st.dictionaries(st.sampled_from(['intervention.position', 'intervention.shape',
                                        'alarm.jerk', 'alarm.cusum']),
                       st.floats(0.0, 100.0), max_size=4),
       st.text(min_size=1, max_size=12))
def test_an_unpriced_kind_is_never_cheaper_than_its_priced_family(costs, name):
    model = CostModel(costs=costs)
    for family in ('intervention.', 'alarm.'):
        priced = [c for k, c in costs.items() if k.startswith(family)]
        kind = family + 'x' + name
        if kind not in costs:
            assert model.cost_of(kind) >= max(priced + [0.0]) and model.cost_of(kind) > 0


def test_an_unpriced_kind_costs_its_familys_dearest_price():
    model = CostModel(costs={'intervention.position': 0.05, 'intervention.stale': 1.5,
                             'alarm.jerk': 0.5, 'world.joint_limit': 0.0, 'plain': 7.0})
    assert model.cost_of('intervention.never_heard_of') == 1.5   # the dearest intervention
    assert model.cost_of('intervention') == 1.5                  # a family's bare name
    assert model.cost_of('alarm.never_heard_of') == UNKNOWN_KIND_COST   # never below it
    assert model.cost_of('world.outside_workspace') == UNKNOWN_KIND_COST  # free family: not 0
    assert model.cost_of('world.joint_limit') == 0.0             # a priced kind: its price
    assert model.cost_of('vibes.anything') == UNKNOWN_KIND_COST  # unknown family
    assert model.cost_of('plain.x') == UNKNOWN_KIND_COST         # 'plain' is no family


@given(st.dictionaries(st.sampled_from(['intervention.position', 'intervention.a.b', 'alarm.jerk',
                                        'alarm', 'a.', '.x', 'x']),
                       st.floats(0.0, 100.0) | st.integers(0, 100), max_size=7),
       st.sampled_from(['intervention.', 'alarm.', 'a.', '.', 'x.', '']),
       st.text(max_size=6))
def test_an_unpriced_kind_costs_the_most_of_the_priced_kinds_named_like_it(costs, family, name):
    kind = family + name
    priced = [c for k, c in costs.items() if k.startswith(kind.split('.', 1)[0] + '.')]
    expected = costs[kind] if kind in costs else max(priced + [UNKNOWN_KIND_COST])
    assert CostModel(costs=costs).cost_of(kind) == expected


def test_budget_summary_safevla_style():
    summary = budget_summary([0.0, 1.0, 2.0, 12.0], budget=10.0)
    assert summary['mean_cost'] == pytest.approx(3.75)
    assert summary['max_cost'] == 12.0
    assert summary['share_over_budget'] == 0.25
    assert summary['quantiles']['median'] == pytest.approx(1.5)
    assert budget_summary([], 10.0)['n_episodes'] == 0


def test_bad_cost_model():
    with pytest.raises(InputError, match='budget'):
        CostModel(budget=0.0)
    for bad in (math.inf, math.nan):
        with pytest.raises(InputError, match='budget'):
            CostModel(budget=bad)
    with pytest.raises(InputError, match='alarm.jerk'):
        CostModel(costs={'alarm.jerk': float('nan')})
    with pytest.raises(InputError, match='alarm.jerk'):
        CostModel(costs={'alarm.jerk': -1.0})


def test_profiles_by_family_and_alias():
    assert set(get_profile('smolvla').primary) >= {'reversal', 'coherence'}
    assert get_profile('pi0') is PROFILES['flow_matching']
    assert set(get_profile('openvla').primary) >= {'reversal', 'jerk'}
    assert get_profile('VQBeT').name == 'autoregressive'
    assert get_profile('act').name == 'chunked'
    for profile in PROFILES.values():
        assert set(profile.primary) <= set(METRIC_ALARMS)
    assert 'generic' in profile_names() and 'smolvla' in profile_names()


def test_profile_overrides_and_errors():
    custom = get_profile('generic', window_s=2.0, stall_s=3.0)
    assert custom.window_s == 2.0 and custom.stall_s == 3.0
    assert PROFILES['generic'].window_s == 1.0  # the preset is unchanged
    with pytest.raises(InputError, match='unknown monitor profile'):
        get_profile('rt2')
    with pytest.raises(InputError, match='window_size'):
        get_profile('generic', window_size=3)
    with pytest.raises(InputError, match='window_s must be > 0'):
        get_profile('generic', window_s=0.0)
    with pytest.raises(InputError, match='unknown metric alarm'):
        get_profile('generic', primary=('reversal', 'vibes'))
    with pytest.raises(InputError, match='reversal_max'):
        get_profile('generic', reversal_max=1.5)
    assert np.isfinite(get_profile('generic').cusum_rho)
