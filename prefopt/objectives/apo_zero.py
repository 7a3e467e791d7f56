"""APO-zero (D'Oosterlinck et al. 2024): raise the chosen likelihood, lower the rejected one."""

from __future__ import annotations

import torch
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def apo_zero_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair APO-zero loss (APO paper Eq. 7): ``1 - sigmoid(beta h_c) + sigmoid(beta h_r)``.

    Anchored at the reference: for data better than the model's own outputs.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.

    Returns:
        (B,) losses in [0, 2].
    """
    return (1 - torch.sigmoid(beta * chosen_logratios)) + torch.sigmoid(beta * rejected_logratios)


@register("apo_zero")
class APOZero(DPOFamily):
    """APO-zero against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
    """

    formula = "1 − σ(β h_c) + σ(β h_r)"
    paper = "D'Oosterlinck et al. 2024, arXiv 2408.06266, Eq. 7"
    trl_name = 'DPOTrainer loss_type="apo_zero"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return apo_zero_loss(chosen_logratios, rejected_logratios, self.beta)
