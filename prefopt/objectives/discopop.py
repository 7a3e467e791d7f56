"""DiscoPOP (Lu et al. 2024): a log-ratio modulated blend of the logistic and exponential losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, check_range
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def discopop_loss(
    chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float, tau: float
) -> Tensor:
    """Per-pair DiscoPOP loss (DiscoPOP paper Eq. 5), ``z = beta h``, ``h = h_c - h_r``:

    ``loss = (1 - sigmoid(z / tau)) (-log sigmoid(z)) + sigmoid(z / tau) exp(-z)``.

    Computed as ``sigmoid(-z/tau) softplus(-z) + exp(-z + log sigmoid(z/tau))``, the same value,
    so that a very negative ``z`` (where TRL's ``exp(-z) * sigmoid(z/tau)`` is ``inf * 0``) stays
    finite: for tau < 1 the exponential term vanishes like ``exp(z (1/tau - 1))``.

    Args:
        chosen_logratios: (B,) ``h_c = pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``h_r = pi_r - ref_r``.
        beta: inverse temperature.
        tau: the modulation temperature in (0, 1).

    Returns:
        (B,) losses.
    """
    z = beta * (chosen_logratios - rejected_logratios)  # (B,)
    logistic = torch.sigmoid(-z / tau) * F.softplus(-z)
    exponential = torch.exp(F.logsigmoid(z / tau) - z)
    return logistic + exponential


@register("discopop")
class DiscoPOP(DPOFamily):
    """DiscoPOP against a frozen reference.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
        tau: modulation temperature (TRL's ``discopop_tau``; default 0.05, the paper's), in
            (0, 1): at tau >= 1 the exponential term grows without bound as the margin falls.
    """

    formula = "σ(−β h/τ) · (−log σ(β h)) + σ(β h/τ) · exp(−β h)"
    paper = "Lu et al. 2024, arXiv 2406.08414, Eq. 5"
    trl_name = 'DPOTrainer loss_type="discopop" (discopop_tau)'

    def __init__(self, beta: float = 0.1, tau: float = 0.05) -> None:
        super().__init__(beta)
        self.tau = check_range(self.name, "tau", tau, 0.0, 1.0, open_low=True, open_high=True)

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return discopop_loss(chosen_logratios, rejected_logratios, self.beta, self.tau)
