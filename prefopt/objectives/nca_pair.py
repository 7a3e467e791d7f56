"""NCA on pairs (Chen et al. 2024): noise-contrastive alignment with absolute rewards."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def nca_pair_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair NCA loss (K = 2 responses, the preferred one labelled):

    ``-log sigmoid(beta h_c) - 1/2 log sigmoid(-beta h_c) - 1/2 log sigmoid(-beta h_r)``.

    Each response's reward is compared with 0 rather than with the other's, so NCA, unlike DPO,
    pushes the chosen log-ratio up instead of only the margin.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.

    Returns:
        (B,) losses.
    """
    chosen = beta * chosen_logratios  # (B,)
    rejected = beta * rejected_logratios  # (B,)
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


@register("nca_pair")
class NCAPair(DPOFamily):
    """Paired NCA against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
    """

    formula = "−log σ(β h_c) − ½ log σ(−β h_c) − ½ log σ(−β h_r)"
    paper = "Chen et al. 2024, arXiv 2402.05369"
    trl_name = 'DPOTrainer loss_type="nca_pair"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return nca_pair_loss(chosen_logratios, rejected_logratios, self.beta)
