"""Paired EXO: hand-derived values, TRL's DPOTrainer(loss_type="exo_pair"), the eps range."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.errors import ConfigError
from prefopt.objectives import get_objective
from tests.objectives.cases import assert_family_rewards, family_inputs


def test_hand_derived_values():
    """beta = 0.5, eps = 0.1. Pair 1 (beta h = 1): q_c = sigmoid(1) = 0.7310586, q_r = 0.2689414;
    q_c (log q_c - log 0.9) + q_r (log q_r - log 0.1)
    = 0.7310586 (-0.3132617 + 0.1053605) + 0.2689414 (-1.3132617 + 2.3025851) = 0.1140821.
    Pair 2 (beta h = -0.5): 0.8101961. Mean 0.4621391 (a KL: >= 0, and 0 iff q = p)."""
    out = get_objective("exo_pair", beta=0.5, label_smoothing=0.1)(family_inputs())
    assert_close(out.loss, torch.tensor(0.4621391))
    assert_family_rewards(out)


@pytest.mark.parametrize(("beta", "eps"), [(0.1, 1e-3), (0.5, 0.2)])
def test_equals_trl(trl, beta, eps):
    obj = get_objective("exo_pair", beta=beta, label_smoothing=eps)
    config = {"loss_type": ["exo_pair"], "beta": beta, "label_smoothing": eps}
    for inputs in (trl.random_inputs(6), trl.grid_inputs()):
        trl.assert_matches(obj(inputs), trl.trl_dpo(inputs, **config))
    assert trl.assert_matches_per_pair(obj, trl.grid_inputs(), trl.trl_dpo, **config) == 0


def test_eps_zero_is_refused():
    """log(eps) needs eps > 0 (TRL raises too)."""
    with pytest.raises(ConfigError, match=r"^exo_pair: label_smoothing must be in \(0, 0.5\)"):
        get_objective("exo_pair", label_smoothing=0.0)
