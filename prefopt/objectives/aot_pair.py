"""AOT on pairs (Melnyk et al. 2024): DPO's loss on sorted margins, a distributional alignment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, check_range
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def aot_pair_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AOT (paired) loss: first-order stochastic dominance of the policy's margins over the
    reference's, through the 1-D optimal transport between them (sorting).

    ``m = sort_i(pi_c - pi_r)``, ``m_ref = sort_i(ref_c - ref_r)`` (ascending, over the batch),
    ``d = m - m_ref``; ``loss_i = -(1 - eps) log sigmoid(beta d_i) - eps log sigmoid(-beta d_i)``.
    With B = 1 this is (conservative) DPO.

    Args:
        chosen_logps: (B,) summed policy log-probs of the chosen responses.
        rejected_logps: (B,) same for the rejected responses.
        ref_chosen_logps: (B,) summed reference log-probs of the chosen responses.
        ref_rejected_logps: (B,) same for the rejected responses.
        beta: inverse temperature.
        label_smoothing: eps in [0, 0.5).

    Returns:
        (B,) losses of the sorted quantiles (entry i is not pair i's).
    """
    margins, _ = torch.sort(chosen_logps - rejected_logps, dim=0)  # (B,)
    ref_margins, _ = torch.sort(ref_chosen_logps - ref_rejected_logps, dim=0)  # (B,)
    logits = beta * (margins - ref_margins)
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


@register("aot_pair")
class AOTPair(DPOFamily):
    """Paired AOT against a frozen reference (the loss couples the pairs of a batch).

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
        label_smoothing: eps in [0, 0.5) (default 0).
    """

    formula = "−(1−ε) log σ(β d_i) − ε log σ(−β d_i),  d = sort(π_c−π_r) − sort(ref_c−ref_r)"
    paper = "Melnyk et al. 2024, arXiv 2406.05882 (paired)"
    trl_name = 'DPOTrainer loss_type="aot"'

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(beta)
        self.label_smoothing = check_range(
            self.name, "label_smoothing", label_smoothing, 0.0, 0.5, open_high=True
        )

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return aot_pair_loss(
            inputs.chosen_logps,
            inputs.rejected_logps,
            inputs.ref_chosen_logps,  # DPOFamily.compute checked they are given
            inputs.ref_rejected_logps,
            self.beta,
            self.label_smoothing,
        )
