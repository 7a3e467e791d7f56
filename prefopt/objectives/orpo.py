"""ORPO: odds-ratio preference optimization (Hong, Lee, Thorne 2024).

``L = L_NLL - lam * mean_i log sigmoid(log_odds_i)`` (paper Eq. 6-7), with
``log_odds_i = log odds(y_w|x) - log odds(y_l|x)`` and ``odds(y|x) = P / (1 - P)``, ``P`` the
length-normalised (mean per-token) likelihood of the response (Eq. 3-4). No reference model.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    check_range,
    preference_metrics,
)
from prefopt.objectives.functional import log_odds
from prefopt.objectives.registry import register


def orpo_loss(
    nll_loss: Tensor, chosen_avg_logps: Tensor, rejected_avg_logps: Tensor, lam: float
) -> tuple[Tensor, Tensor]:
    """ORPO loss (paper Eq. 6): ``L_NLL - lam * mean log sigmoid(log_odds)``.

    Args:
        nll_loss: () the supervised NLL term of the chosen sequences.
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen responses.
        rejected_avg_logps: (B,) same for the rejected responses.
        lam: the paper's lambda (TRL's ``beta``, the official code's ``alpha``).

    Returns:
        ``(loss, log_odds)``: the () loss and the (B,) log odds ratios.
    """
    ratio = log_odds(chosen_avg_logps, rejected_avg_logps)  # (B,)
    loss = nll_loss - lam * F.logsigmoid(ratio).mean()
    return loss, ratio


@register("orpo")
class ORPO(Objective):
    """ORPO (no reference model; mean per-token log-probs; gradients through both sides).

    Args:
        lam: weight of the odds-ratio term, the paper's lambda (default 0.1). TRL calls it
            ``beta``, the official xfactlab/orpo code ``alpha``. ``lam=0`` is the SFT arm: the
            loss is the NLL alone and the rejected side is scored without gradients.
    """

    needs_reference = False
    reduction = "mean"
    rejected_grad = True
    formula = "L_NLL − λ · mean_i log σ(log_odds_i)"
    paper = "Hong, Lee, Thorne 2024, arXiv 2403.07691, Eq. 6"
    trl_name = "ORPOTrainer (beta = λ)"

    def __init__(self, lam: float = 0.1) -> None:
        self.lam = check_range(self.name, "lam", lam, 0.0)
        # lam = 0 is SFT exactly: skip the (zero) gradient through the rejected side
        self.rejected_grad = self.lam > 0

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        loss, ratio = orpo_loss(
            inputs.nll_loss, inputs.chosen_avg_logps, inputs.rejected_avg_logps, self.lam
        )
        metrics = preference_metrics(
            inputs,
            rewards_chosen=self.lam * inputs.chosen_avg_logps,
            rewards_rejected=self.lam * inputs.rejected_avg_logps,
            reduction=self.reduction,
            log_odds=ratio,
        )
        terms = {"nll": inputs.nll_loss, "odds_ratio": loss - inputs.nll_loss}
        return ObjectiveOutput(loss=loss, metrics=metrics, terms=terms)
