"""Hard-label SPPO: hand-derived values, TRL's DPOTrainer(loss_type="sppo_hard")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, targets +-1/(2 beta) = +-1. Pair 1: (1 - 1)^2 + (-1 + 1)^2 = 0 (on target).
    Pair 2: (-0.5 - 1)^2 + (0.5 + 1)^2 = 4.5. Mean 2.25."""
    out = get_objective("sppo_hard", beta=0.5)(family_inputs())
    assert_close(out.loss, torch.tensor(2.25))
    assert_family_rewards(out)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl(trl, beta):
    obj = get_objective("sppo_hard", beta=beta)
    config = {"loss_type": ["sppo_hard"], "beta": beta}
    for inputs in (trl.random_inputs(9), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0
