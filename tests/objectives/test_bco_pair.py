"""Paired BCO: hand-derived values, TRL's DPOTrainer(loss_type="bco_pair")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5. Pair 1: beta h_c = 0.5, beta h_r = -0.5:
    -log sigmoid(0.5) - log sigmoid(0.5) = 2 log(1 + e^-0.5) = 0.9481540.
    Pair 2: beta h_c = -0.25, beta h_r = 0.25: 2 log(1 + e^0.25) = 1.6518788. Mean 1.3000164."""
    out = get_objective("bco_pair", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(1.3000164))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("bco_pair", beta=beta)
    config = {"loss_type": ["bco_pair"], "beta": beta}
    for inputs in (trl.random_inputs(4), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
