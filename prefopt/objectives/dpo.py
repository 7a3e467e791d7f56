"""DPO: direct preference optimization (Rafailov et al. 2023), the reference-model baseline."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, preference_metrics
from prefopt.objectives.registry import register


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO loss (DPO paper Eq. 7; conservative DPO when ``label_smoothing > 0``).

    ``h = (pi_c - ref_c) - (pi_r - ref_r)``;
    ``loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``.

    Args:
        chosen_logps: (B,) summed policy log-probs of the chosen responses.
        rejected_logps: (B,) same for the rejected responses.
        ref_chosen_logps: (B,) summed reference log-probs of the chosen responses.
        ref_rejected_logps: (B,) same for the rejected responses.
        beta: inverse temperature of the implicit reward.
        label_smoothing: eps, the assumed probability that a label is flipped.

    Returns:
        ``(losses, rewards_chosen, rewards_rejected)``, each (B,); rewards are ``beta (pi - ref)``.
    """
    chosen_ratio = chosen_logps - ref_chosen_logps  # (B,)
    rejected_ratio = rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses, beta * chosen_ratio, beta * rejected_ratio


@register("dpo")
class DPO(Objective):
    """DPO on summed log-probs against a frozen reference.

    Args:
        beta: DPO's beta (default 0.1).
        label_smoothing: conservative-DPO eps in [0, 0.5) (default 0).
        nll_coef: optional weight of the chosen NLL added to the loss (TRL's ``rpo_alpha``;
            default 0, plain DPO).
    """

    needs_reference = True
    reduction = "sum"
    rejected_grad = True

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0, nll_coef: float = 0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"dpo: label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.beta = float(beta)
        self.label_smoothing = float(label_smoothing)
        self.nll_coef = float(nll_coef)

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        if inputs.ref_chosen_logps is None or inputs.ref_rejected_logps is None:
            raise ValueError("dpo: needs reference log-probs, but none were given")
        losses, rewards_chosen, rewards_rejected = dpo_loss(
            inputs.chosen_logps,
            inputs.rejected_logps,
            inputs.ref_chosen_logps,
            inputs.ref_rejected_logps,
            self.beta,
            self.label_smoothing,
        )
        loss = losses.mean()
        if self.nll_coef:
            loss = loss + self.nll_coef * inputs.nll_loss
        metrics = preference_metrics(
            inputs,
            rewards_chosen=rewards_chosen,
            rewards_rejected=rewards_rejected,
            reduction=self.reduction,
        )
        return ObjectiveOutput(loss=loss, metrics=metrics)
