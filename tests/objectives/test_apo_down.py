"""APO-down: hand-derived values, TRL's DPOTrainer(loss_type="apo_down")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5. Pair 1: sigmoid(0.5) + 1 - sigmoid(1) = 0.6224593 + 1 - 0.7310586 = 0.8914008.
    Pair 2: sigmoid(-0.25) + 1 - sigmoid(-0.5) = 0.4378235 + 1 - 0.3775407 = 1.0602828.
    Mean 0.9758418."""
    out = get_objective("apo_down", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(0.9758418))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("apo_down", beta=beta)
    config = {"loss_type": ["apo_down"], "beta": beta}
    for inputs in (trl.random_inputs(8), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
