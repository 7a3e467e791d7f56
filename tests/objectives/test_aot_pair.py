"""Paired AOT: hand-derived values (sorting matters), TRL's DPOTrainer(loss_type="aot")."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import get_objective
from tests.objectives.cases import family_inputs


def test_hand_derived_values():
    """beta = 0.5. Policy margins pi_c - pi_r = (2, -1), sorted (-1, 2); reference margins
    set to (-3, 1), sorted (-3, 1). d = (-1 + 3, 2 - 1) = (2, 1), beta d = (1, 0.5):
    losses log(1 + e^-1) = 0.3132617, log(1 + e^-0.5) = 0.4740770, mean 0.3936693.
    DPO pairs them unsorted: beta h = (2.5, -1), mean 0.6960757."""
    inputs = family_inputs()
    inputs.ref_chosen_logps = torch.tensor([-11.0, -19.5])
    inputs.ref_rejected_logps = torch.tensor([-8.0, -20.5])  # ref margins (-3, 1)
    out = get_objective("aot_pair", beta=0.5)(inputs)
    assert_close(out.loss, torch.tensor(0.3936693))
    assert_close(get_objective("dpo", beta=0.5)(inputs).loss, torch.tensor(0.6960757))
    assert_close(out.metrics["rewards/chosen"], torch.tensor([0.5, -0.25]))  # beta h_c per pair


@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.0), (0.5, 0.1)])
def test_equals_trl(trl, beta, eps):
    """Batch level only: the loss couples the pairs through the sort."""
    obj = get_objective("aot_pair", beta=beta, label_smoothing=eps)
    config = {"loss_type": ["aot"], "beta": beta, "label_smoothing": eps}
    for inputs in (trl.random_inputs(10), trl.random_inputs(11, batch_size=7), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
