"""Length-normalised DPO: hand-derived values, TRL's DPOTrainer(loss_type="sigmoid_norm")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5. Pair 1: per-token h = 1/2 - (-1/4) = 0.75, -log sigmoid(0.375) =
    log(1 + e^-0.375) = 0.5231233. Pair 2: -0.1 - 0.1 = -0.2, log(1 + e^0.1) = 0.7443967.
    Mean 0.6337600 (DPO on the same pairs: 0.6436693)."""
    out = get_objective("sigmoid_norm", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(0.6337600))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_equals_trl(trl, beta):
    obj = get_objective("sigmoid_norm", beta=beta)
    config = {"loss_type": ["sigmoid_norm"], "beta": beta}
    for inputs in (trl.random_inputs(1), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
