"""DiscoPOP: hand-derived values, TRL's DPOTrainer(loss_type="discopop") where TRL is finite."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import get_objective
from prefopt.objectives.discopop import discopop_loss
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, tau = 0.05. Pair 1 (z = 1): sigmoid(20) ~ 1 - 2e-9, so the loss is
    ~ exp(-1) = 0.3678794. Pair 2 (z = -0.5): sigmoid(-10) = 4.54e-5:
    (1 - 4.54e-5) log(1 + e^0.5) + 4.54e-5 e^0.5 = 0.9741076. Mean 0.6709935."""
    out = get_objective("discopop", beta=0.5, tau=0.05)(family_inputs())
    assert_close(out.loss, torch.tensor(0.6709935))
    assert_family_rewards(out)


def test_matches_the_papers_blend_written_directly():
    """Eq. 5 as written (TRL's form) on moderate margins, in float64."""
    h = torch.linspace(-30, 30, 121, dtype=torch.float64)
    z = 0.5 * h
    modulation = torch.sigmoid(z / 0.05)
    expected = (1 - modulation) * -torch.nn.functional.logsigmoid(z) + modulation * torch.exp(-z)
    assert_close(discopop_loss(h, torch.zeros_like(h), beta=0.5, tau=0.05), expected)


@pytest.mark.parametrize(("beta", "tau"), [(0.1, 0.05), (0.5, 0.5)])
def test_equals_trl_where_trl_is_finite(trl, beta, tau):
    """TRL's ``exp(-z) * sigmoid(z/tau)`` is inf * 0 = NaN below z ~ -710 in float64 (41 of the
    144 extreme pairs at beta 0.1): prefopt stays finite there and equals TRL everywhere else."""
    obj = get_objective("discopop", beta=beta, tau=tau)
    config = {"loss_type": ["discopop"], "beta": beta, "discopop_tau": tau}
    moderate = trl.random_inputs(12)  # log-ratios in [-50, 50]: TRL finite
    g = torch.Generator().manual_seed(0)
    for side in ("chosen", "rejected"):
        offset = 100 * torch.rand(64, generator=g, dtype=torch.float64) - 50
        setattr(moderate, f"ref_{side}_logps", getattr(moderate, f"{side}_logps") - offset)
    trl.assert_matches(obj(moderate), trl.trl_dpo(moderate, **config))
    non_finite = trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config)
    assert 0 < non_finite < 144


def test_tau_one_is_refused():
    with pytest.raises(ConfigError, match=r"^discopop: tau must be in \(0, 1\), got 1$"):
        get_objective("discopop", tau=1.0)
