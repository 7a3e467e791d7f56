"""BCO on pairs (Jung et al. 2024): chosen and rejected as two binary classifications."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def bco_pair_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair BCO loss: ``-log sigmoid(beta h_c) - log sigmoid(-beta h_r)``.

    The implicit rewards ``beta h`` are the logits of a classifier of "chosen" (label 1) vs
    "rejected" (label 0): binary cross-entropy on each response, with TRL's pairing and without
    the paper's running reward shift.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.

    Returns:
        (B,) losses.
    """
    return -F.logsigmoid(beta * chosen_logratios) - F.logsigmoid(-beta * rejected_logratios)


@register("bco_pair")
class BCOPair(DPOFamily):
    """Paired BCO against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
    """

    formula = "−log σ(β h_c) − log σ(−β h_r)"
    paper = "Jung et al. 2024, arXiv 2404.04656 (paired, no reward shift)"
    trl_name = 'DPOTrainer loss_type="bco_pair"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return bco_pair_loss(chosen_logratios, rejected_logratios, self.beta)
