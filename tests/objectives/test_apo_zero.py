"""APO-zero: hand-derived values, TRL's DPOTrainer(loss_type="apo_zero")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5. Pair 1: 1 - sigmoid(0.5) + sigmoid(-0.5) = 1 - 0.6224593 + 0.3775407
    = 0.7550813. Pair 2: 1 - sigmoid(-0.25) + sigmoid(0.25) = 1.1243530. Mean 0.9397172.
    The chosen gradient is negative on both pairs (APO-zero raises every chosen likelihood,
    DPO only the margin)."""
    inputs = family_inputs(requires_grad=True)
    out = get_objective("apo_zero", beta=0.5)(inputs)
    assert_close(out.loss, torch.tensor(0.9397172))
    assert_family_rewards(out)
    out.loss.backward()
    assert (inputs.chosen_logps.grad < 0).all() and (inputs.rejected_logps.grad > 0).all()


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("apo_zero", beta=beta)
    config = {"loss_type": ["apo_zero"], "beta": beta}
    for inputs in (trl.random_inputs(7), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
