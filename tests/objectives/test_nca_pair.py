"""Paired NCA: hand-derived values, TRL's DPOTrainer(loss_type="nca_pair")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, l(z) = log(1 + e^-z). Pair 1 (beta h_c = 0.5, beta h_r = -0.5):
    l(0.5) + l(-0.5)/2 + l(0.5)/2 = 0.4740770 + 0.4870385 + 0.2370385 = 1.1981540.
    Pair 2 (-0.25, 0.25): l(-0.25) + l(0.25)/2 + l(-0.25)/2 = 1.5268788. Mean 1.3625164."""
    out = get_objective("nca_pair", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(1.3625164))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("nca_pair", beta=beta)
    config = {"loss_type": ["nca_pair"], "beta": beta}
    for inputs in (trl.random_inputs(5), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
