"""SimPO (Meng, Xia, Chen 2024): a reference-free margin loss on mean per-token log-probs."""

from __future__ import annotations

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


def simpo_loss(
    chosen_avg_logps: Tensor, rejected_avg_logps: Tensor, beta: float, gamma: float
) -> Tensor:
    """Per-pair SimPO loss (SimPO paper Eq. 6): ``-log sigmoid(beta (c - r) - gamma)``.

    ``c``, ``r`` are the mean per-token log-probs (the paper's ``log pi(y|x) / |y|``); the
    rewards are ``beta c`` and ``beta r`` and gamma is the target reward margin.

    Args:
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen responses.
        rejected_avg_logps: (B,) same for the rejected responses.
        beta: reward scale.
        gamma: target reward margin, in reward units (TRL's ``simpo_gamma``).

    Returns:
        (B,) losses.
    """
    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


@register("simpo")
class SimPO(Objective):
    """SimPO: no reference, mean log-probs, gradients through both responses.

    Args:
        beta: reward scale (default 2.0; the paper's main setups use 2-2.5, TRL's default 0.1
            is small for mean log-probs), in [1e-6, 1e6].
        gamma: target reward margin (default 1.0), in [0, 1e6]. TRL's ``simpo_gamma`` has the
            same meaning: its ``CPOTrainer`` subtracts ``simpo_gamma / beta`` from the log-prob
            margin and then multiplies by beta, so the logit is ``beta (c - r) - simpo_gamma``
            exactly as here (the paper's later "gamma/beta ratio" is ``gamma / beta``).
    """

    needs_reference = False
    reduction = "mean"
    rejected_grad = True
    formula = "−log σ(β (c − r) − γ)"
    paper = "Meng, Xia, Chen 2024, arXiv 2405.14734, Eq. 6"
    trl_name = 'CPOTrainer loss_type="simpo", cpo_alpha=0 (simpo_gamma)'

    def __init__(self, beta: float = 2.0, gamma: float = 1.0) -> None:
        self.beta = check_beta(self.name, beta)
        self.gamma = check_range(self.name, "gamma", gamma, 0.0)

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        c, r = inputs.chosen_avg_logps, inputs.rejected_avg_logps  # (B,)
        losses = simpo_loss(c, r, self.beta, self.gamma)
        metrics = preference_metrics(inputs, self.beta * c, self.beta * r, self.reduction)
        return ObjectiveOutput(loss=losses.mean(), metrics=metrics)
