"""ORPO: hand-derived values, the paper's formula, numerics at the extremes."""

import math

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import ObjectiveInputs, get_objective
from prefopt.objectives.orpo import orpo_loss


def _inputs(c, r, nll=1.5, dtype=torch.float32, requires_grad=False):
    c = torch.tensor(c, dtype=dtype, requires_grad=requires_grad)
    r = torch.tensor(r, dtype=dtype, requires_grad=requires_grad)
    return ObjectiveInputs(
        chosen_logps=c * 4,
        rejected_logps=r * 5,
        chosen_avg_logps=c,
        rejected_avg_logps=r,
        nll_loss=torch.tensor(nll, dtype=dtype),
    )


def test_hand_derived_loss_and_metrics():
    """Pair 1: P_c=0.8, P_r=0.2 -> odds 4 and 1/4 -> log odds ratio = log 16 = 2.7725887,
    log sigmoid(log 16) = log(16/17) = -0.0606246.
    Pair 2: P_c = P_r = 0.5 -> log odds ratio 0, log sigmoid(0) = -log 2 = -0.6931472.
    mean log sigmoid = -0.3768859; loss = 1.5 - 0.1 * (-0.3768859) = 1.5376886.
    rewards = 0.1 * mean log-prob: chosen (0.1 log .8, 0.1 log .5) = (-0.0223144, -0.0693147),
    rejected (-0.1609438, -0.0693147); accuracies (1, 0): a tie is not a win, as in TRL.
    """
    out = get_objective("orpo", lam=0.1)(
        _inputs([math.log(0.8), math.log(0.5)], [math.log(0.2), math.log(0.5)])
    )
    assert_close(out.loss, torch.tensor(1.5376886))
    m = out.metrics
    assert_close(m["log_odds_chosen"], torch.tensor([math.log(16.0), 0.0]))
    assert_close(m["log_odds_ratio"], torch.tensor([math.log(16 / 17), -math.log(2)]))
    assert_close(m["rewards/chosen"], torch.tensor([-0.0223144, -0.0693147]))
    assert_close(m["rewards/rejected"], torch.tensor([-0.1609438, -0.0693147]))
    assert_close(m["rewards/margins"], torch.tensor([0.1386294, 0.0]))
    assert_close(m["rewards/accuracies"], torch.tensor([1.0, 0.0]))
    assert_close(m["margins/avg_logps"], torch.tensor([1.3862944, 0.0]))
    assert_close(m["accuracies/avg_logps"], torch.tensor([1.0, 0.0]))
    assert_close(m["logps/chosen"], torch.tensor([math.log(0.8), math.log(0.5)]))
    assert_close(m["nll_loss"], torch.tensor(1.5))


def test_matches_paper_formula_in_float64():
    """Independent route through the paper's Eq. 4-7: odds = P / (1 - P) from P = exp(c)."""
    g = torch.Generator().manual_seed(0)
    c = -torch.rand(64, generator=g, dtype=torch.float64) * 5 - 0.01
    r = -torch.rand(64, generator=g, dtype=torch.float64) * 5 - 0.01
    pc, pr = c.exp(), r.exp()
    ratio = torch.log((pc / (1 - pc)) / (pr / (1 - pr)))
    expected = 0.7 - 0.25 * torch.log(torch.sigmoid(ratio)).mean()
    loss, got_ratio = orpo_loss(torch.tensor(0.7, dtype=torch.float64), c, r, lam=0.25)
    assert_close(got_ratio, ratio)
    assert_close(loss, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradient_finite_at_the_extremes(dtype):
    grid = [-1e4, -1e3, -50.0, -1.0, -math.log(2), -0.5, -1e-3, -1e-6, -1e-9]
    c, r = torch.meshgrid(torch.tensor(grid), torch.tensor(grid), indexing="ij")
    c = c.flatten().to(dtype).requires_grad_()
    r = r.flatten().to(dtype).requires_grad_()
    inputs = ObjectiveInputs(c * 3, r * 3, c, r, nll_loss=torch.tensor(2.0))
    out = get_objective("orpo", lam=0.5)(inputs)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(c.grad).all() and torch.isfinite(r.grad).all()
    assert all(torch.isfinite(v).all() for v in out.metrics.values())


def test_saturated_mean_logp_of_exactly_zero_stays_finite():
    """A model so confident that every token's log-prob rounds to 0 must not produce inf/NaN."""
    c = torch.tensor([0.0], requires_grad=True)
    r = torch.tensor([-2.0], requires_grad=True)
    loss, ratio = orpo_loss(torch.tensor(0.1), c, r, lam=0.1)
    loss.backward()
    assert torch.isfinite(ratio).all() and torch.isfinite(loss) and torch.isfinite(r.grad).all()


def test_non_finite_input_raises_one_clear_line():
    inputs = _inputs([float("nan"), -1.0], [-1.0, -2.0])
    with pytest.raises(ValueError, match=r"^orpo: 1 of 2 entries of chosen_logps are not finite"):
        get_objective("orpo")(inputs)


def test_negative_lambda_rejected():
    with pytest.raises(ConfigError, match=r"^orpo: lam must be in \[0, 1e\+06\], got -0.1$"):
        get_objective("orpo", lam=-0.1)


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_equals_trl_orpo_trainer(trl, lam):
    """TRL's ORPOTrainer (its ``beta`` is lambda) computes in float32, so the inputs are float32
    values (in float64 tensors): a float64-only digit of a log-prob near -1e4 is not TRL's input.
    Per pair on the extreme grid (a batch mean of float32 rewards near 2500 drifts by ~1e-5)."""
    orpo = get_objective("orpo", lam=lam)
    inputs = trl.random_inputs(0, float32_values=True)
    trl.assert_matches(orpo(inputs), trl.trl_orpo(inputs, beta=lam))
    assert trl.assert_matches_per_pair(orpo, trl.grid_inputs(), trl.trl_orpo, beta=lam) == 0


def test_terms_are_the_nll_and_the_weighted_odds_ratio_term():
    """Same pairs as the hand-derived test: nll 1.5, odds-ratio term -0.1 * -0.3768859."""
    out = get_objective("orpo", lam=0.1)(
        _inputs([math.log(0.8), math.log(0.5)], [math.log(0.2), math.log(0.5)])
    )
    assert_close(out.terms["nll"], torch.tensor(1.5))
    assert_close(out.terms["odds_ratio"], torch.tensor(0.0376886))
