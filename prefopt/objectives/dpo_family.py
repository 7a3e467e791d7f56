"""The DPO family's shared class: a loss of the per-pair log-ratios against a frozen reference.

Every member (``dpo``, ``ipo``, ``hinge``, ``robust``, ...) is one pure function of the log-ratios
``h_c = pi_c - ref_c`` and ``h_r = pi_r - ref_r`` (summed log-probs, as TRL's ``DPOTrainer``) and a
thin subclass of :class:`DPOFamily` that calls it. The subclass holds its hyperparameters; this
class checks the reference, forms the log-ratios and returns TRL's metrics, with
``rewards/* = beta * h`` (what ``DPOTrainer`` logs whatever its ``loss_type``).
"""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor

from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    check_beta,
    preference_metrics,
    require_reference,
)


class DPOFamily(Objective):
    """Base of the reference-based pairwise losses (not registered itself).

    Args:
        beta: inverse temperature of the implicit reward ``beta * h``, in [1e-6, 1e6].
    """

    needs_reference = True
    reduction = "sum"
    rejected_grad = True

    def __init__(self, beta: float = 0.1) -> None:
        self.beta = check_beta(self.name, beta)

    @abstractmethod
    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        """(B,) per-pair losses from the (B,) log-ratios (``inputs`` for the lengths)."""

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        ref_chosen, ref_rejected = require_reference(inputs, self.name)
        chosen_logratios = inputs.chosen_logps - ref_chosen  # (B,)
        rejected_logratios = inputs.rejected_logps - ref_rejected  # (B,)
        losses = self.pair_losses(inputs, chosen_logratios, rejected_logratios)  # (B,)
        metrics = preference_metrics(
            inputs,
            rewards_chosen=self.beta * chosen_logratios,
            rewards_rejected=self.beta * rejected_logratios,
            reduction=self.reduction,
        )
        return ObjectiveOutput(loss=losses.mean(), metrics=metrics)
