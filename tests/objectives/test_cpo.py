"""CPO: hand-derived values per loss_type, its two terms, TRL's CPOTrainer, config errors."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import get_objective
from tests.objectives.cases import family_inputs


@pytest.mark.parametrize(
    ("loss_type", "preference"),
    [("sigmoid", 0.6436693), ("hinge", 0.75), ("ipo", 0.925)],
)
def test_hand_derived_values(loss_type, preference):
    """beta = 0.5, NLL 3. Summed margins pi_c - pi_r = (2, -1), beta m = (1, -0.5):
    sigmoid: (log(1 + e^-1) + log(1 + e^0.5)) / 2 = (0.3132617 + 0.9740770) / 2 = 0.6436693;
    hinge: (max(0, 0) + max(0, 1.5)) / 2 = 0.75.
    ipo on mean log-probs set to c = (-1, -2), r = (-1.2, -1.9): m = (0.2, -0.1), target
    1/(2 beta) = 1: ((0.2 - 1)^2 + (-0.1 - 1)^2) / 2 = (0.64 + 1.21) / 2 = 0.925."""
    inputs = family_inputs()
    if loss_type == "ipo":
        inputs.chosen_avg_logps = torch.tensor([-1.0, -2.0])
        inputs.rejected_avg_logps = torch.tensor([-1.2, -1.9])
    out = get_objective("cpo", beta=0.5, cpo_alpha=1.0, loss_type=loss_type)(inputs)
    assert_close(out.terms["preference"], torch.tensor(preference))
    assert_close(out.terms["nll"], torch.tensor(3.0))
    assert_close(out.loss, torch.tensor(preference + 3.0))
    chosen = inputs.chosen_avg_logps if loss_type == "ipo" else inputs.chosen_logps
    assert_close(out.metrics["rewards/chosen"], 0.5 * chosen)  # beta * log-probs, as TRL
    assert_close(out.metrics["logps/chosen"], chosen)


@pytest.mark.parametrize(
    "config",
    [
        {"loss_type": "sigmoid", "beta": 0.1, "cpo_alpha": 1.0},
        {"loss_type": "sigmoid", "beta": 0.5, "cpo_alpha": 0.3, "label_smoothing": 0.2},
        {"loss_type": "hinge", "beta": 0.1, "cpo_alpha": 0.0},
        {"loss_type": "ipo", "beta": 0.5, "cpo_alpha": 2.0},
    ],
)
def test_equals_trl(trl, config):
    cpo = get_objective("cpo", **config)
    for inputs in (trl.random_inputs(0), trl.grid_inputs()):
        trl.assert_matches(cpo(inputs), trl.trl_cpo(inputs, **config))
    assert trl.assert_matches_per_pair(cpo, trl.grid_inputs(), trl.trl_cpo, **config) == 0


def test_declared_reduction_follows_the_loss_type_as_in_trl():
    assert get_objective("cpo", loss_type="sigmoid").reduction == "sum"
    assert get_objective("cpo", loss_type="hinge").reduction == "sum"
    assert get_objective("cpo", loss_type="ipo").reduction == "mean"
    assert get_objective("cpo").needs_reference is False


def test_unknown_loss_type_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"^cpo: loss_type must be one of sigmoid, hinge, ipo, "):
        get_objective("cpo", loss_type="simpo")


def test_label_smoothing_outside_sigmoid_is_refused():
    with pytest.raises(ConfigError, match="^cpo: label_smoothing applies to loss_type=sigmoid"):
        get_objective("cpo", loss_type="hinge", label_smoothing=0.1)
