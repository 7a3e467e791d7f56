"""Robust DPO (Chowdhury et al. 2024): an unbiased DPO loss under flipped labels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, check_range
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def robust_loss(
    chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float, label_smoothing: float
) -> Tensor:
    """Per-pair rDPO loss: ``((1 - eps) l(beta h) - eps l(-beta h)) / (1 - 2 eps)``.

    ``l(z) = -log sigmoid(z)``, ``h = (pi_c - ref_c) - (pi_r - ref_r)``, eps the probability that
    a label is flipped. Unlike conservative DPO (``dpo`` with ``label_smoothing``) the flipped
    term is subtracted, which makes the loss unbiased for the clean one (and unbounded below).

    Args:
        chosen_logratios: (B,) ``pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``pi_r - ref_r``.
        beta: inverse temperature.
        label_smoothing: eps in [0, 0.5).

    Returns:
        (B,) losses.
    """
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,)
    clean = -(1 - label_smoothing) * F.logsigmoid(logits)
    flipped = -label_smoothing * F.logsigmoid(-logits)
    return (clean - flipped) / (1 - 2 * label_smoothing)


@register("robust")
class Robust(DPOFamily):
    """rDPO against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
        label_smoothing: the flip rate eps in [0, 0.5) (default 0.1, the paper's typical value;
            0 is DPO).
    """

    formula = "((1−ε) l(β h) − ε l(−β h)) / (1 − 2ε),  l(z) = −log σ(z)"
    paper = "Chowdhury et al. 2024, arXiv 2403.00409"
    trl_name = 'DPOTrainer loss_type="robust"'

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1) -> None:
        super().__init__(beta)
        self.label_smoothing = check_range(
            self.name, "label_smoothing", label_smoothing, 0.0, 0.5, open_high=True
        )

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return robust_loss(chosen_logratios, rejected_logratios, self.beta, self.label_smoothing)
