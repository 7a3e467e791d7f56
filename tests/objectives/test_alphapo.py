"""AlphaPO: hand-derived values, TRL's CPOTrainer(loss_type="alphapo"), alpha -> 0 is SimPO."""

import math

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import ObjectiveInputs, get_objective
from prefopt.objectives.alphapo import MAX_EXPONENT, alpha_reward


def _inputs(c, r):
    c, r = torch.tensor(c, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    return ObjectiveInputs(c * 3, r * 3, c, r, nll_loss=torch.tensor(1.0, dtype=torch.float64))


def test_hand_derived_values():
    """alpha = 0.5, beta = 2, gamma = 1, u = (1 - p^-alpha) / alpha with p = exp(c).
    c = log(1/4): p^-0.5 = 2, u = -2; c = log(1/9): p^-0.5 = 3, u = -4.
    Pair 1 (1/4 vs 1/9): 2 (-2 + 4) - 1 = 3, log(1 + e^-3) = 0.0485874.
    Pair 2 (1/9 vs 1/4): 2 (-4 + 2) - 1 = -5, log(1 + e^5) = 5.0067153. Mean 2.5276514.
    rewards = beta u: chosen (-4, -8), rejected (-8, -4)."""
    quarter, ninth = math.log(1 / 4), math.log(1 / 9)
    out = get_objective("alphapo", beta=2.0, gamma=1.0, alpha=0.5)(
        _inputs([quarter, ninth], [ninth, quarter])
    )
    assert_close(out.loss.item(), 2.5276514, rtol=1e-7, atol=1e-7)
    assert_close(out.metrics["rewards/chosen"], torch.tensor([-4.0, -8.0], dtype=torch.float64))
    assert_close(out.metrics["rewards/rejected"], torch.tensor([-8.0, -4.0], dtype=torch.float64))


def test_alpha_to_zero_is_simpo():
    inputs = _inputs([-0.3, -2.0, -7.0], [-1.1, -0.4, -7.5])
    simpo = get_objective("simpo", beta=2.0, gamma=1.0)(inputs).loss
    assert get_objective("alphapo", alpha=0.0)(inputs).loss == simpo
    assert_close(get_objective("alphapo", alpha=1e-9)(inputs).loss, simpo)


@pytest.mark.parametrize(("beta", "gamma", "alpha"), [(2.0, 1.0, 0.25), (1.0, 0.5, -0.5)])
def test_equals_trl(trl, beta, gamma, alpha):
    """Mean log-probs in [-150, -1e-9]: inside the clamp (-alpha c <= 40) and where TRL's
    p ** -alpha is finite."""
    obj = get_objective("alphapo", beta=beta, gamma=gamma, alpha=alpha)
    config = {"loss_type": "alphapo", "beta": beta, "simpo_gamma": gamma, "alpha": alpha}
    inputs = trl.random_inputs(0)
    inputs.chosen_avg_logps = inputs.chosen_avg_logps.clamp(min=-150.0)
    inputs.rejected_avg_logps = inputs.rejected_avg_logps.clamp(min=-150.0)
    trl.assert_matches(obj(inputs), trl.trl_cpo(inputs, **config))
    grid = trl.grid_inputs(values=(-150.0, -20.0, -1.0, -1e-3, -1e-9))
    assert trl.assert_matches_per_pair(obj, grid, trl.trl_cpo, **config) == 0


def test_clamp_keeps_extreme_mean_logps_finite_where_trl_overflows(trl):
    """At c = -1e4, TRL's exp(c) ** -0.25 is 0 ** -0.25 = inf; here -alpha c saturates at 40."""
    c, r = torch.tensor([-1e4, -1.0], dtype=torch.float64), torch.tensor([-1.0, -1e4])
    inputs = trl.make_inputs(c, r.double(), None, None, torch.ones(2), torch.ones(2))
    config = {"loss_type": "alphapo", "beta": 2.0, "simpo_gamma": 1.0, "alpha": 0.25}
    assert not math.isfinite(trl.trl_cpo(inputs, **config)["loss"])
    out = get_objective("alphapo")(inputs)
    assert torch.isfinite(out.loss)
    saturated = -math.expm1(MAX_EXPONENT) / 0.25
    assert_close(alpha_reward(inputs.chosen_avg_logps, 0.25)[0].item(), saturated)


def test_alpha_out_of_range():
    with pytest.raises(ConfigError, match=r"^alphapo: alpha must be in \[-10, 10\], got 20$"):
        get_objective("alphapo", alpha=20.0)
