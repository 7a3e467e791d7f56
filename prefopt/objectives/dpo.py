"""DPO: direct preference optimization (Rafailov et al. 2023), the reference-model baseline."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, ObjectiveOutput, check_range
from prefopt.objectives.dpo_family import DPOFamily
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
class DPO(DPOFamily):
    """DPO on summed log-probs against a frozen reference.

    Args:
        beta: DPO's beta (default 0.1), in [1e-6, 1e6].
        label_smoothing: conservative-DPO eps in [0, 0.5) (default 0). TRL 1.16's ``sigmoid``
            loss no longer applies it (its ``label_smoothing`` feeds only ``robust``, ``exo_pair``
            and ``aot``); the same formula survives in its ``CPOTrainer``'s ``sigmoid``.
        nll_coef: optional weight of the chosen NLL added to the loss (older TRL's
            ``rpo_alpha``; default 0, plain DPO). ``objective=rpo`` composes the same sum from
            ``dpo`` and ``sft`` with :mod:`prefopt.objectives.weighted`.
    """

    formula = "−(1−ε) log σ(β h) − ε log σ(−β h)"
    paper = "Rafailov et al. 2023, arXiv 2305.18290, Eq. 7; cDPO: Mitchell 2023"
    trl_name = 'DPOTrainer loss_type="sigmoid"'

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0, nll_coef: float = 0.0):
        super().__init__(beta)
        self.label_smoothing = check_range(
            self.name, "label_smoothing", label_smoothing, 0.0, 0.5, open_high=True
        )
        self.nll_coef = check_range(self.name, "nll_coef", nll_coef, 0.0)

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        zeros = chosen_logratios.new_zeros(())
        losses, _, _ = dpo_loss(
            chosen_logratios, rejected_logratios, zeros, zeros, self.beta, self.label_smoothing
        )
        return losses

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        out = super().compute(inputs)
        if self.nll_coef:
            out.terms = {"preference": out.loss, "nll": self.nll_coef * inputs.nll_loss}
            out.loss = out.terms["preference"] + out.terms["nll"]
        return out
