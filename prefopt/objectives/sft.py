"""SFT-only: the NLL of the chosen response, the ablation arm of the ORPO paper (Fig. 3).

The loss ignores the rejected response, but the metrics are the same as ORPO's (computed on the
rejected response without gradients), so SFT and ORPO curves overlay in TensorBoard.
"""

from __future__ import annotations

from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    check_range,
    preference_metrics,
)
from prefopt.objectives.registry import register


@register("sft")
class SFT(Objective):
    """Supervised fine-tuning on the chosen response only.

    Args:
        lam: scale of ``rewards/*`` only (they are ``lam * mean log-prob``, as in ORPO); it
            does not enter the loss. Keep it equal to the ORPO arms' lambda so curves overlay.
    """

    needs_reference = False
    reduction = "mean"
    rejected_grad = False
    formula = "L_NLL"
    paper = "the ORPO paper's SFT arm (Hong et al. 2024, Fig. 3)"
    trl_name = 'DPOTrainer loss_type="sft" (as a term)'
    metrics_only = ("lam",)  # scales rewards/* only: SFT runs that differ in it are one arm

    def __init__(self, lam: float = 0.1) -> None:
        self.lam = check_range(self.name, "lam", lam, 0.0)

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        metrics = preference_metrics(
            inputs,
            rewards_chosen=self.lam * inputs.chosen_avg_logps,
            rewards_rejected=self.lam * inputs.rejected_avg_logps,
            reduction=self.reduction,
        )
        return ObjectiveOutput(loss=inputs.nll_loss, metrics=metrics)
