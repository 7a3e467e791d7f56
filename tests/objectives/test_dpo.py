"""DPO: hand-derived values on summed log-probs."""

import math
import re

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import ObjectiveInputs, get_objective
from prefopt.objectives.dpo import dpo_loss


def _inputs(ref=True):
    return ObjectiveInputs(
        chosen_logps=torch.tensor([-10.0, -20.0]),
        rejected_logps=torch.tensor([-12.0, -19.0]),
        chosen_avg_logps=torch.tensor([-1.0, -2.0]),
        rejected_avg_logps=torch.tensor([-1.2, -1.9]),
        nll_loss=torch.tensor(3.0),
        ref_chosen_logps=torch.tensor([-11.0, -20.0]) if ref else None,
        ref_rejected_logps=torch.tensor([-11.0, -20.0]) if ref else None,
    )


def test_hand_derived_values():
    """beta = 0.5. Pair 1: h = (-10 + 11) - (-12 + 11) = 2, beta h = 1,
    loss = -log sigmoid(1) = log(1 + e^-1) = 0.3132617; rewards 0.5 and -0.5.
    Pair 2: h = (0) - (1) = -1, beta h = -0.5, loss = log(1 + e^0.5) = 0.9740770;
    rewards 0 and 0.5. Mean loss = 0.6436693. Accuracies (1, 0), margins (1, -0.5).
    """
    out = get_objective("dpo", beta=0.5)(_inputs())
    assert_close(out.loss, torch.tensor(0.6436693))
    m = out.metrics
    assert_close(m["rewards/chosen"], torch.tensor([0.5, 0.0]))
    assert_close(m["rewards/rejected"], torch.tensor([-0.5, 0.5]))
    assert_close(m["rewards/margins"], torch.tensor([1.0, -0.5]))
    assert_close(m["rewards/accuracies"], torch.tensor([1.0, 0.0]))
    assert_close(m["logps/chosen"], torch.tensor([-10.0, -20.0]))  # summed, as TRL's DPO
    assert_close(m["margins/avg_logps"], torch.tensor([0.2, -0.1]))


def test_label_smoothing():
    """eps = 0.1, beta h = 1: 0.9 * log(1 + e^-1) + 0.1 * log(1 + e) = 0.4132617."""
    losses, _, _ = dpo_loss(
        torch.tensor([-10.0]),
        torch.tensor([-12.0]),
        torch.tensor([-11.0]),
        torch.tensor([-11.0]),
        beta=0.5,
        label_smoothing=0.1,
    )
    assert_close(losses, torch.tensor([0.9 * math.log1p(math.exp(-1)) + 0.1 * math.log1p(math.e)]))


def test_nll_coef_adds_the_chosen_nll():
    base = get_objective("dpo", beta=0.5)(_inputs()).loss
    rpo = get_objective("dpo", beta=0.5, nll_coef=0.5)(_inputs()).loss
    assert_close(rpo - base, torch.tensor(1.5))


def test_declares_reference_and_sum_reduction_and_fails_clearly_without_reference():
    dpo = get_objective("dpo")
    assert dpo.needs_reference and dpo.reduction == "sum"
    with pytest.raises(ValueError, match="dpo: needs reference log-probs"):
        dpo(_inputs(ref=False))


def test_bad_label_smoothing():
    with pytest.raises(ConfigError, match=r"^dpo: label_smoothing must be in \[0, 0.5\), got 0.7$"):
        get_objective("dpo", label_smoothing=0.7)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_equals_trl_sigmoid(trl, beta):
    dpo = get_objective("dpo", beta=beta)
    for inputs in (trl.random_inputs(0), trl.grid_inputs()):
        trl.assert_matches(dpo(inputs), trl.trl_dpo(inputs, loss_type=["sigmoid"], beta=beta))
    grid = trl.grid_inputs()
    assert (
        trl.assert_matches_per_pair(dpo, grid, trl.trl_dpo, loss_type=["sigmoid"], beta=beta) == 0
    )


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_conservative_dpo_equals_the_cdpo_formula_trl_keeps_in_cpo(trl, eps):
    """TRL 1.16's DPOTrainer ignores label_smoothing for "sigmoid" (it feeds robust, exo_pair and
    aot only); cDPO's formula survives in CPOTrainer's "sigmoid", which is DPO's with the policy
    log-probs in place of the log-ratios. So CPO fed the log-ratios (cpo_alpha = 0) is cDPO."""
    inputs = trl.random_inputs(1)
    dpo = get_objective("dpo", beta=0.5, label_smoothing=eps)(inputs)
    as_cpo = trl.make_inputs(
        inputs.chosen_logps - inputs.ref_chosen_logps,
        inputs.rejected_logps - inputs.ref_rejected_logps,
        None,
        None,
        inputs.chosen_lengths,
        inputs.rejected_lengths,
    )
    cdpo = trl.trl_cpo(as_cpo, loss_type="sigmoid", beta=0.5, label_smoothing=eps, cpo_alpha=0.0)
    assert_close(dpo.loss.item(), cdpo["loss"], rtol=1e-6, atol=1e-6)
    assert_close(dpo.metrics["rewards/chosen"].mean().item(), cdpo["rewards/chosen"])
    # and it differs from TRL's DPOTrainer "sigmoid" with the same label_smoothing
    plain = trl.trl_dpo(inputs, loss_type=["sigmoid"], beta=0.5, label_smoothing=eps)["loss"]
    assert abs(dpo.loss.item() - plain) > 1e-3


def test_nll_coef_terms_sum_to_the_loss():
    out = get_objective("dpo", beta=0.5, nll_coef=0.5)(_inputs())
    assert set(out.terms) == {"preference", "nll"}
    assert_close(out.terms["nll"], torch.tensor(1.5))
    assert_close(out.terms["preference"] + out.terms["nll"], out.loss)
    assert get_objective("dpo")(_inputs()).terms == {}


@pytest.mark.parametrize("beta", [-0.1, 0.0, 2e6])
def test_beta_out_of_range(beta):
    message = f"dpo: beta must be in [1e-06, 1e+06], got {beta:g}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        get_objective("dpo", beta=beta)
