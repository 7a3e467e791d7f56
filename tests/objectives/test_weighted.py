"""The weighted sum: hand-derived values, declarations from its terms, mixed reductions,
TRL's DPOTrainer(loss_type=[...], loss_weights=[...]) for the shipped RPO and MPO configs."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import Objective, ObjectiveInputs, ObjectiveOutput, get_objective
from prefopt.objectives.base import preference_metrics
from tests.objectives.cases import assert_family_rewards, family_inputs

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "objective"


def _load(name):
    return instantiate(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))


def test_hand_derived_values():
    """DPO (beta 0.5) on the family batch is 0.6436693 (test_dpo), the NLL is 3:
    0.5 * 0.6436693 + 2 * 3 = 6.3218347. Metrics are DPO's, plus each weighted term."""
    weighted = get_objective(
        "weighted",
        terms={"dpo": get_objective("dpo", beta=0.5), "nll": get_objective("sft")},
        weights={"dpo": 0.5, "nll": 2.0},
    )
    out = weighted(family_inputs())
    assert_close(out.loss, torch.tensor(6.3218347))
    assert_close(out.terms["dpo"], torch.tensor(0.3218347))
    assert_close(out.terms["nll"], torch.tensor(6.0))
    assert_family_rewards(out)
    assert_close(out.metrics["terms/nll"], torch.tensor(6.0))
    assert weighted.extra_metrics == ("terms/dpo", "terms/nll")


def test_declarations_come_from_the_terms():
    sft, orpo, dpo = get_objective("sft"), get_objective("orpo"), get_objective("dpo")
    free = get_objective("weighted", terms={"orpo": orpo, "nll": sft})
    assert (free.needs_reference, free.rejected_grad, free.reduction) == (False, True, "mean")
    nll_only = get_objective("weighted", terms={"nll": sft})
    assert nll_only.rejected_grad is False
    rpo = get_objective("weighted", terms={"nll": sft, "dpo": dpo})
    assert (rpo.needs_reference, rpo.rejected_grad, rpo.reduction) == (True, True, "sum")
    assert rpo.weights == {"nll": 1.0, "dpo": 1.0}  # TRL's default: equal weights


class MeanDPO(Objective):
    """A test-only objective that wants its reference as per-token means."""

    needs_reference, reduction = True, "mean"

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        h = (inputs.chosen_avg_logps - inputs.ref_chosen_logps) - (
            inputs.rejected_avg_logps - inputs.ref_rejected_logps
        )
        loss = -F.logsigmoid(h).mean()
        return ObjectiveOutput(loss, preference_metrics(inputs, h, 0 * h, "mean"))


def test_mixed_reductions_get_summed_references_and_divide_them_per_term():
    """DPO wants sums, MeanDPO means: the module is asked for sums, MeanDPO gets ref / n.
    Family batch: per-token h = (-10/2 + 11/2) - (-12/4 + 11/4) = 0.75 and
    (-20/5 + 19.5/5) - (-19/5 + 19.5/5) = -0.2; log(1 + e^-0.75) = 0.3868710,
    log(1 + e^0.2) = 0.7981389; mean 0.5925049."""
    weighted = get_objective("weighted", terms={"dpo": get_objective("dpo"), "mean": MeanDPO()})
    assert weighted.reduction == "sum" and weighted.needs_reference
    out = weighted(family_inputs())
    assert_close(out.terms["mean"], torch.tensor(0.5925049))
    assert_close(out.terms["dpo"], get_objective("dpo")(family_inputs()).loss)


def test_a_summed_reference_without_lengths_fails_clearly():
    weighted = get_objective("weighted", terms={"dpo": get_objective("dpo"), "mean": MeanDPO()})
    inputs = family_inputs()
    inputs.chosen_lengths = None
    with pytest.raises(ValueError, match="^weighted: needs the response lengths"):
        weighted(inputs)


@pytest.mark.parametrize(
    ("config", "loss_type", "loss_weights"),
    [
        ("rpo", ["sigmoid", "sft"], [1.0, 1.0]),
        ("weighted", ["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]),
    ],
)
def test_shipped_compositions_equal_trl(trl, config, loss_type, loss_weights):
    """RPO and MPO (TRL's documented loss_weights example) with the NLL TRL's "sft" computes."""
    objective = _load(config)
    for inputs in (trl.random_inputs(0), trl.grid_inputs()):
        expected = trl.trl_dpo(inputs, loss_type=loss_type, loss_weights=loss_weights)
        trl.assert_matches(objective(inputs), expected)


def test_weights_override_from_the_command_line_shape():
    cfg = OmegaConf.load(CONFIG_DIR / "rpo.yaml")
    cfg.weights.nll = 0.5
    rpo = instantiate(cfg)
    assert rpo.weights == {"dpo": 1.0, "nll": 0.5}
    out = rpo(family_inputs())
    assert_close(out.terms["nll"], torch.tensor(1.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"terms": {}}, r"^weighted: terms must hold at least one objective$"),
        ({"terms": {"dpo": {"beta": 0.1}}}, r"^weighted: terms.dpo must be an objective config"),
        (
            {"terms": {"nll": "sft"}, "weights": {}},
            r"^weighted: terms.nll must be an objective config with a _target_, got str$",
        ),
        ({"weights": {"dpo2": 1.0}}, r"^weighted: weights.dpo2 names no term; terms: nll$"),
        ({"weights": {"nll": -1.0}}, r"^weighted: weights.nll must be in \[0, 1e\+06\], got -1$"),
    ],
)
def test_bad_configs_fail_in_one_line(kwargs, message):
    kwargs = {"terms": {"nll": get_objective("sft")}, **kwargs}
    with pytest.raises(ConfigError, match=message):
        get_objective("weighted", **kwargs)
