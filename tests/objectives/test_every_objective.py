"""What every objective (every config in configs/objective/) promises: the full metric set,
finite values and gradients at the extremes in float32 and bf16, terms that sum to the loss,
gradients where it declares them, and one-line errors for an impossible beta."""

import inspect
import itertools
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import ObjectiveInputs, available, get_objective, objective_class
from prefopt.objectives.base import METRIC_NAMES

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "objective"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
# log-probs from a saturated model (log P near 0) to a hopeless one (-1e4), with three lengths
GRID = (-1e4, -1e3, -50.0, -1.0, -0.6931, -1e-3, -1e-6, -1e-9)
LENGTHS = (1.0, 3.0, 300.0)
MULTI_TERM = {
    "orpo": {"nll", "odds_ratio"},
    "cpo": {"preference", "nll"},
    "weighted": {"dpo", "bco_pair", "nll"},
    "rpo": {"dpo", "nll"},
}


def _objective(config: str):
    return instantiate(OmegaConf.load(CONFIG_DIR / f"{config}.yaml"))


def _extreme_inputs(dtype: torch.dtype) -> tuple[ObjectiveInputs, list[torch.Tensor]]:
    """Every combination of GRID for (pi_c, pi_r, ref_c, ref_r) (4096 pairs), as leaves of
    ``dtype`` with gradients; mean log-probs are the sums over the (cycled) lengths."""
    rows = torch.tensor(list(itertools.product(GRID, repeat=4)), dtype=torch.float64)
    lengths = torch.tensor(LENGTHS, dtype=torch.float64).repeat(len(rows) // 3 + 1)[: len(rows)]
    c, r, ref_c, ref_r = rows.T
    leaves = [t.to(dtype).requires_grad_() for t in (c, r, c / lengths, r / lengths, -c.mean() / 3)]
    inputs = ObjectiveInputs(
        *leaves,
        ref_chosen_logps=ref_c.to(dtype),
        ref_rejected_logps=ref_r.to(dtype),
        chosen_logits=torch.tensor(0.5, dtype=dtype),
        rejected_logits=torch.tensor(-0.5, dtype=dtype),
        chosen_lengths=lengths.to(dtype),
        rejected_lengths=lengths.flip(0).to(dtype),
    )
    return inputs, leaves


def test_at_least_17_objectives_each_with_a_config_and_a_test_file():
    names = available()
    assert len(names) >= 17
    tests = Path(__file__).parent
    for name in names:
        assert (CONFIG_DIR / f"{name}.yaml").exists(), name
        assert (tests / f"test_{name}.py").exists(), name


@pytest.mark.parametrize("config", CONFIGS)
def test_returns_the_full_metric_set(config):
    objective = _objective(config)
    inputs, _ = _extreme_inputs(torch.float32)
    metrics = objective(inputs).metrics
    assert set(metrics) == {*METRIC_NAMES, *objective.extra_metrics}
    b = inputs.chosen_logps.shape[0]
    for key, value in metrics.items():
        assert value.shape in ((b,), ()), key
        assert not value.requires_grad, key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", CONFIGS)
def test_value_and_gradient_finite_at_the_extremes(config, dtype):
    objective = _objective(config)
    inputs, leaves = _extreme_inputs(dtype)
    out = objective(inputs)
    out.loss.backward()
    assert torch.isfinite(out.loss), out.loss
    for leaf in leaves:
        assert leaf.grad is None or torch.isfinite(leaf.grad).all()
    for key, value in out.metrics.items():
        assert torch.isfinite(value).all(), key


@pytest.mark.parametrize("config", CONFIGS)
def test_terms_sum_to_the_loss_with_their_gradients(config):
    objective = _objective(config)
    inputs, _ = _extreme_inputs(torch.float32)
    out = objective(inputs)
    assert set(out.terms) == MULTI_TERM.get(config, set())
    if out.terms:
        assert_close(sum(out.terms.values()), out.loss)
        assert all(term.shape == () for term in out.terms.values())
        assert all(term.requires_grad for term in out.terms.values())


@pytest.mark.parametrize("config", CONFIGS)
def test_gradient_reaches_the_rejected_side_as_declared(config):
    objective = _objective(config)
    inputs, (c, r, c_avg, r_avg, nll) = _extreme_inputs(torch.float64)
    objective(inputs).loss.backward()
    rejected = [g for g in (r.grad, r_avg.grad) if g is not None]
    if objective.rejected_grad:
        assert any(bool((g != 0).any()) for g in rejected)
    else:
        assert not rejected


BETA_OBJECTIVES = [
    name for name in available() if "beta" in inspect.signature(objective_class(name)).parameters
]


@pytest.mark.parametrize("beta", [-0.1, 0.0, 2e6, float("nan")])
@pytest.mark.parametrize("name", BETA_OBJECTIVES)
def test_an_impossible_beta_fails_in_one_line(name, beta):
    message = f"{name}: beta must be in [1e-06, 1e+06], got {beta:g}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        get_objective(name, beta=beta)
