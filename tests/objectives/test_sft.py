"""SFT: the NLL alone, with ORPO's metrics on the rejected side."""

import math

import torch
from torch.testing import assert_close

from prefopt.objectives import ObjectiveInputs, get_objective


def _inputs(requires_grad=False):
    c = torch.tensor([math.log(0.8), math.log(0.5)], requires_grad=requires_grad)
    r = torch.tensor([math.log(0.2), math.log(0.5)], requires_grad=requires_grad)
    nll = torch.tensor(1.25, requires_grad=requires_grad)
    return ObjectiveInputs(c * 4, r * 4, c, r, nll_loss=nll)


def test_sft_loss_equals_orpo_with_lambda_zero_exactly():
    inputs = _inputs()
    sft = get_objective("sft")(inputs)
    orpo = get_objective("orpo", lam=0.0)(inputs)
    assert torch.equal(sft.loss, orpo.loss)
    assert sft.loss.item() == 1.25


def test_sft_metrics_match_orpo_metrics_with_the_same_lambda():
    """Same lam -> same rewards/*, log-odds and margins: the two arms overlay in TensorBoard."""
    inputs = _inputs()
    sft = get_objective("sft", lam=0.1)(inputs).metrics
    orpo = get_objective("orpo", lam=0.1)(inputs).metrics
    assert sft.keys() == orpo.keys()
    for key in sft:
        assert_close(sft[key], orpo[key], msg=key)
    assert_close(sft["log_odds_chosen"], torch.tensor([math.log(16.0), 0.0]))


def test_sft_declares_no_gradient_through_rejected_and_its_loss_has_none():
    sft = get_objective("sft")
    assert sft.rejected_grad is False and sft.needs_reference is False
    inputs = _inputs(requires_grad=True)
    sft(inputs).loss.backward()
    assert inputs.nll_loss.grad is not None
    assert inputs.rejected_avg_logps.grad is None


def test_orpo_with_lambda_zero_declares_no_rejected_gradient_like_sft():
    """So a lambda sweep can include the SFT arm as lam=0 at SFT's cost."""
    assert get_objective("orpo", lam=0.0).rejected_grad is False
    assert get_objective("orpo", lam=0.1).rejected_grad is True


def test_loss_equals_trls_sft_term(trl):
    """TRL's DPOTrainer loss_type="sft" is the token mean NLL of the chosen responses: what
    module.nll_scope=completion hands the objective (the reference inputs set it so)."""
    inputs = trl.random_inputs(0)
    ours = get_objective("sft")(inputs).loss.item()
    assert_close(ours, trl.trl_dpo(inputs, loss_type=["sft"])["loss"], rtol=1e-6, atol=1e-6)
