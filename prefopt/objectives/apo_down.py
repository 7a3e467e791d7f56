"""APO-down (D'Oosterlinck et al. 2024): lower both likelihoods, the rejected one more."""

from __future__ import annotations

import torch
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def apo_down_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair APO-down loss (APO paper Eq. 8): ``sigmoid(beta h_c) + 1 - sigmoid(beta h)``,
    ``h = h_c - h_r``.

    Anchored at the reference: for data worse than the model's own outputs.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.

    Returns:
        (B,) losses in [0, 2].
    """
    margin = beta * (chosen_logratios - rejected_logratios)  # (B,)
    return torch.sigmoid(beta * chosen_logratios) + (1 - torch.sigmoid(margin))


@register("apo_down")
class APODown(DPOFamily):
    """APO-down against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
    """

    formula = "σ(β h_c) + 1 − σ(β h)"
    paper = "D'Oosterlinck et al. 2024, arXiv 2408.06266, Eq. 8"
    trl_name = 'DPOTrainer loss_type="apo_down"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return apo_down_loss(chosen_logratios, rejected_logratios, self.beta)
