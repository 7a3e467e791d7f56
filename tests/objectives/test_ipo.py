"""IPO: hand-derived values on per-token log-ratios, and TRL's DPOTrainer(loss_type="ipo")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, target 1/(2 beta) = 1. Pair 1: h_c/n_c = 1/2 = 0.5, h_r/n_r = -1/4 = -0.25,
    (0.75 - 1)^2 = 0.0625. Pair 2: -0.5/5 - 0.5/5 = -0.2, (-1.2)^2 = 1.44. Mean 0.75125.
    rewards/* stay TRL's summed beta h (not the per-token ones the loss uses)."""
    out = get_objective("ipo", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(0.75125))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_equals_trl(trl, beta):
    ipo = get_objective("ipo", beta=beta)
    for inputs in (trl.random_inputs(0), trl.grid_inputs()):
        trl.assert_matches(ipo(inputs), trl.trl_dpo(inputs, loss_type=["ipo"], beta=beta))
    grid = trl.grid_inputs()
    assert trl.assert_matches_per_pair(ipo, grid, trl.trl_dpo, loss_type=["ipo"], beta=beta) == 0


def test_without_lengths_fails_clearly():
    inputs = family_inputs()
    inputs.chosen_lengths = None
    with pytest.raises(ValueError, match="^ipo: needs the response lengths"):
        get_objective("ipo")(inputs)


def test_beta_zero_is_refused():
    with pytest.raises(ConfigError, match=r"^ipo: beta must be in \[1e-06, 1e\+06\], got 0$"):
        get_objective("ipo", beta=0.0)
