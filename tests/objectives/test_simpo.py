"""SimPO: hand-derived values, TRL's CPOTrainer(loss_type="simpo", cpo_alpha=0), gamma's meaning."""

import math

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import ObjectiveInputs, get_objective


def _inputs():
    c, r = torch.tensor([-0.5, -1.0]), torch.tensor([-1.5, -0.8])  # mean log-probs
    return ObjectiveInputs(c * 4, r * 6, c, r, nll_loss=torch.tensor(2.0))


def test_hand_derived_values():
    """beta = 2, gamma = 1. Pair 1: 2 (-0.5 + 1.5) - 1 = 1, -log sigmoid(1) = 0.3132617.
    Pair 2: 2 (-1 + 0.8) - 1 = -1.4, log(1 + e^1.4) = 1.6204174. Mean 0.9668395.
    rewards = beta * mean log-prob: chosen (-1, -2), rejected (-3, -1.6); margins (2, -0.4)."""
    out = get_objective("simpo", beta=2.0, gamma=1.0)(_inputs())
    assert_close(out.loss, torch.tensor(0.9668395))
    m = out.metrics
    assert_close(m["rewards/chosen"], torch.tensor([-1.0, -2.0]))
    assert_close(m["rewards/rejected"], torch.tensor([-3.0, -1.6]))
    assert_close(m["rewards/margins"], torch.tensor([2.0, -0.4]))
    assert_close(m["logps/chosen"], torch.tensor([-0.5, -1.0]))  # mean, as TRL's SimPO


def test_gamma_is_a_margin_in_reward_units():
    """The loss at reward margin beta (c - r) = gamma is -log sigmoid(0) = log 2, whatever beta
    (TRL's simpo_gamma / beta inside its logits is the same thing)."""
    for beta in (0.5, 2.0, 10.0):
        c = torch.tensor([-1.0])
        r = c - 0.75 / beta  # reward margin 0.75 = gamma
        out = get_objective("simpo", beta=beta, gamma=0.75)(ObjectiveInputs(c, r, c, r, c))
        assert_close(out.loss, torch.tensor(math.log(2.0)))


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 1.0), (0.1, 0.5), (2.5, 0.0)])
def test_equals_trl(trl, beta, gamma):
    simpo = get_objective("simpo", beta=beta, gamma=gamma)
    config = {"loss_type": "simpo", "beta": beta, "simpo_gamma": gamma, "cpo_alpha": 0.0}
    for inputs in (trl.random_inputs(0), trl.grid_inputs()):
        trl.assert_matches(simpo(inputs), trl.trl_cpo(inputs, **config))
    assert trl.assert_matches_per_pair(simpo, trl.grid_inputs(), trl.trl_cpo, **config) == 0


def test_negative_gamma_is_refused():
    with pytest.raises(ConfigError, match=r"^simpo: gamma must be in \[0, 1e\+06\], got -1$"):
        get_objective("simpo", gamma=-1.0)
