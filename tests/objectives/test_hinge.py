"""SLiC hinge: hand-derived values, TRL's DPOTrainer(loss_type="hinge")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5. Pair 1: beta h = 1, max(0, 1 - 1) = 0 (margin met: no gradient).
    Pair 2: beta h = -0.5, max(0, 1.5) = 1.5. Mean 0.75."""
    inputs = family_inputs(requires_grad=True)
    out = get_objective("hinge", beta=0.5)(inputs)
    assert_close(out.loss, torch.tensor(0.75))
    assert_family_rewards(out)
    out.loss.backward()
    # d/d pi_c of mean relu(1 - beta h) = -beta / 2 on the active pair only
    assert_close(inputs.chosen_logps.grad, torch.tensor([0.0, -0.25]))


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("hinge", beta=beta)
    config = {"loss_type": ["hinge"], "beta": beta}
    for inputs in (trl.random_inputs(2), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
