"""SPPO with hard labels (Wu et al. 2024): regress each log-ratio onto +-1/(2 beta)."""

from __future__ import annotations

from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def sppo_hard_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair SPPO loss (SPPO paper Eq. 4.7 with the win probability P = 1 for the chosen and
    0 for the rejected response): ``(h_c - 1/(2 beta))^2 + (h_r + 1/(2 beta))^2``.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature (the paper's eta is 1 / beta).

    Returns:
        (B,) losses.
    """
    target = 0.5 / beta
    return (chosen_logratios - target) ** 2 + (rejected_logratios + target) ** 2


@register("sppo_hard")
class SPPOHard(DPOFamily):
    """Hard-label SPPO against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1: targets h_c = 5, h_r = -5), in [1e-6, 1e6].
    """

    formula = "(h_c − 1/(2β))² + (h_r + 1/(2β))²"
    paper = "Wu et al. 2024, arXiv 2405.00675, Eq. 4.7 with P ∈ {0, 1}"
    trl_name = 'DPOTrainer loss_type="sppo_hard"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return sppo_hard_loss(chosen_logratios, rejected_logratios, self.beta)
