"""AlphaPO (Gupta et al. 2025): SimPO with an alpha-shaped reward instead of the log-prob."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    check_beta,
    check_range,
    preference_metrics,
)
from prefopt.objectives.registry import register

# -alpha * c is clamped here: p^-alpha <= e^40, so rewards, loss and gradients stay finite in
# float32 for any mean log-prob (for alpha = 0.25 it binds only below c = -160, far beyond a
# uniform distribution's -log V)
MAX_EXPONENT = 40.0


def alpha_reward(avg_logps: Tensor, alpha: float) -> Tensor:
    """AlphaPO's reward shape without beta: ``(1 - p^-alpha) / alpha`` with ``p = exp(c)``.

    Computed as ``-expm1(-alpha c) / alpha`` (exact as alpha -> 0, where it tends to ``c``, the
    SimPO reward); ``-alpha c`` is clamped at ``MAX_EXPONENT``.

    Args:
        avg_logps: (B,) mean per-token log-probs ``c``.
        alpha: the shape; 0 gives ``c`` itself.

    Returns:
        (B,) rewards (before beta).
    """
    if alpha == 0:
        return avg_logps
    return -torch.expm1((-alpha * avg_logps).clamp(max=MAX_EXPONENT)) / alpha


def alphapo_loss(
    chosen_avg_logps: Tensor, rejected_avg_logps: Tensor, beta: float, gamma: float, alpha: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair AlphaPO loss: ``-log sigmoid(beta (u_c - u_r) - gamma)``, ``u = (1 - p^-a) / a``.

    ``p = exp(c)`` is the length-normalised likelihood (``pi(y|x)^(1/|y|)``), so alpha = 0 is
    SimPO (paper Eq. 6 of SimPO) and the reward is ``beta u``.

    Args:
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen responses.
        rejected_avg_logps: (B,) same for the rejected responses.
        beta: reward scale.
        gamma: target reward margin.
        alpha: reward shape.

    Returns:
        ``(losses, rewards_chosen, rewards_rejected)``, each (B,).
    """
    chosen = beta * alpha_reward(chosen_avg_logps, alpha)  # (B,)
    rejected = beta * alpha_reward(rejected_avg_logps, alpha)  # (B,)
    return -F.logsigmoid(chosen - rejected - gamma), chosen, rejected


@register("alphapo")
class AlphaPO(Objective):
    """AlphaPO: no reference, mean log-probs, gradients through both responses.

    Args:
        beta: reward scale (default 2.0, as SimPO), in [1e-6, 1e6].
        gamma: target reward margin (default 1.0, TRL's ``simpo_gamma``), in [0, 1e6].
        alpha: reward shape (default 0.25; TRL's ``alpha``), in [-10, 10]; 0 is SimPO.
    """

    needs_reference = False
    reduction = "mean"
    rejected_grad = True
    formula = "−log σ(β (u_c − u_r) − γ),  u = (1 − e^(−α c)) / α"
    paper = "Gupta et al. 2025, arXiv 2501.03884"
    trl_name = 'CPOTrainer loss_type="alphapo" (alpha, simpo_gamma)'

    def __init__(self, beta: float = 2.0, gamma: float = 1.0, alpha: float = 0.25) -> None:
        self.beta = check_beta(self.name, beta)
        self.gamma = check_range(self.name, "gamma", gamma, 0.0)
        self.alpha = check_range(self.name, "alpha", alpha, -10.0, 10.0)

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        losses, chosen, rejected = alphapo_loss(
            inputs.chosen_avg_logps, inputs.rejected_avg_logps, self.beta, self.gamma, self.alpha
        )
        metrics = preference_metrics(inputs, chosen, rejected, self.reduction)
        return ObjectiveOutput(loss=losses.mean(), metrics=metrics)
