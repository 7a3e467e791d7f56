"""ORPO: odds-ratio preference optimization (Hong, Lee, Thorne 2024).

``L = L_NLL - lam * mean_i log sigmoid(log_odds_i)`` (paper Eq. 6-7), with
``log_odds_i = log odds(y_w|x) - log odds(y_l|x)`` and ``odds(y|x) = P / (1 - P)``, ``P`` the
length-normalised (mean per-token) likelihood of the response (Eq. 3-4). No reference model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives import register
from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    preference_metrics,
)

_LN2 = math.log(2.0)


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable over the whole range (Maechler 2012).

    Uses ``log(-expm1(x))`` for ``x > -ln 2`` and ``log1p(-exp(x))`` below. Each branch is fed a
    safe dummy value where it is not selected, so that the unused branch can produce neither an
    infinite value nor a NaN gradient (``torch.where`` differentiates both branches).

    Args:
        x: any shape, values < 0 (0 maps to ``-inf``).

    Returns:
        Tensor of ``x``'s shape and dtype.
    """
    near_zero = x > -_LN2
    dummy = torch.full_like(x, -1.0)
    x_near = torch.where(near_zero, x, dummy)
    x_far = torch.where(near_zero, dummy, x)
    return torch.where(near_zero, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def log_odds(chosen_avg_logps: Tensor, rejected_avg_logps: Tensor) -> Tensor:
    """Log odds ratio of chosen over rejected (paper Eq. 6-7, inside the sigmoid).

    ``(c - r) - (log1mexp(c) - log1mexp(r))`` with ``c``/``r`` the mean per-token log-probs.
    A mean log-prob that rounded to exactly 0 (a saturated model, P == 1 in float) is clamped to
    the largest float below 0 whose ``log1mexp`` is finite, so the result stays finite.

    Args:
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen responses, < 0.
        rejected_avg_logps: (B,) same for the rejected responses.

    Returns:
        (B,) log odds ratio; float32/float64 inputs keep their dtype, bf16/fp16 give float32.
    """
    c, r = chosen_avg_logps, rejected_avg_logps
    if c.dtype in (torch.float16, torch.bfloat16):
        c = c.float()
    if r.dtype in (torch.float16, torch.bfloat16):
        r = r.float()
    ceiling = -(torch.finfo(c.dtype).eps ** 2)  # ~ -1.4e-14 in float32: log1mexp finite
    c, r = c.clamp(max=ceiling), r.clamp(max=ceiling)
    return (c - r) - (log1mexp(c) - log1mexp(r))


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

    def __init__(self, lam: float = 0.1) -> None:
        if lam < 0:
            raise ValueError(f"orpo: lam must be >= 0, got {lam}")
        self.lam = float(lam)
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
            log_odds=ratio,
            reduction=self.reduction,
        )
        return ObjectiveOutput(loss=loss, metrics=metrics)
