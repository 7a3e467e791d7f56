"""EXO on pairs (Ji et al. 2024): reverse KL from the policy's pair distribution to the labels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, check_range
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def exo_pair_loss(
    chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float, label_smoothing: float
) -> Tensor:
    """Per-pair EXO-pref loss (EXO paper Eq. 16, K = 2): ``KL(q || p)`` over {chosen, rejected}.

    ``q = (sigmoid(beta h), sigmoid(-beta h))`` is the policy's softmax of ``beta h`` over the two
    responses, ``p = (1 - eps, eps)`` the smoothed labels:
    ``loss = q_c (log q_c - log(1 - eps)) + q_r (log q_r - log eps)``, ``h = h_c - h_r``.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.
        label_smoothing: eps in (0, 0.5); ``log eps`` needs eps > 0.

    Returns:
        (B,) losses, >= 0.
    """
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,)
    chosen = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-label_smoothing))
    rejected = torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(label_smoothing))
    return chosen + rejected


@register("exo_pair")
class EXOPair(DPOFamily):
    """Paired EXO against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
        label_smoothing: eps in (0, 0.5) (default 1e-3, the paper's value).
    """

    formula = "q_c (log q_c − log(1−ε)) + q_r (log q_r − log ε),  q_c = σ(β h) = 1 − q_r"
    paper = "Ji et al. 2024, arXiv 2402.00856, Eq. 16"
    trl_name = 'DPOTrainer loss_type="exo_pair"'

    def __init__(self, beta: float = 0.1, label_smoothing: float = 1e-3) -> None:
        super().__init__(beta)
        self.label_smoothing = check_range(
            self.name, "label_smoothing", label_smoothing, 0.0, 0.5, open_low=True, open_high=True
        )

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return exo_pair_loss(chosen_logratios, rejected_logratios, self.beta, self.label_smoothing)
