"""Safety cost budget escalation and summary; monitor profiles and their selection by name."""
import numpy as np
import pytest

from vla_safety_filter.core.costs import ERROR, OK, WARN, CostBudget, CostModel, budget_summary
from vla_safety_filter.core.errors import InputError
from vla_safety_filter.core.profiles import METRIC_ALARMS, PROFILES, get_profile, profile_names


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
    budget.charge('alarm.unknown')                    # unpriced kinds cost nothing
    assert budget.total == pytest.approx(5.5)
    budget.reset()
    assert budget.total == 0.0 and budget.level == OK


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
