"""Robust DPO: hand-derived values, TRL's DPOTrainer(loss_type="robust"), the eps range."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, eps = 0.1, l(z) = log(1 + e^-z).
    Pair 1 (beta h = 1): (0.9 l(1) - 0.1 l(-1)) / 0.8 = (0.9 * 0.3132617 - 0.1 * 1.3132617) / 0.8
    = 0.1882617. Pair 2 (beta h = -0.5): (0.9 * 0.9740770 - 0.1 * 0.4740770) / 0.8 = 1.0365770.
    Mean 0.6124193."""
    out = get_objective("robust", beta=0.5, label_smoothing=0.1)(family_inputs())
    assert_close(out.loss, torch.tensor(0.6124193))
    assert_family_rewards(out)


def test_eps_zero_is_dpo():
    inputs = family_inputs()
    robust = get_objective("robust", beta=0.5, label_smoothing=0.0)(inputs).loss
    assert_close(robust, get_objective("dpo", beta=0.5)(inputs).loss)


@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.1), (0.5, 0.3)])
def test_equals_trl(trl, beta, eps):
    obj = get_objective("robust", beta=beta, label_smoothing=eps)
    config = {"loss_type": ["robust"], "beta": beta, "label_smoothing": eps}
    for inputs in (trl.random_inputs(3), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0


def test_eps_one_half_is_refused():
    """At eps = 0.5 the loss divides by 1 - 2 eps = 0 (TRL only warns)."""
    with pytest.raises(ConfigError, match=r"^robust: label_smoothing must be in \[0, 0.5\)"):
        get_objective("robust", label_smoothing=0.5)
