"""CPO (Xu et al. 2024): a reference-free DPO-style preference term plus the chosen NLL."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.errors import ConfigError
from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    Reduction,
    check_beta,
    check_range,
    preference_metrics,
)
from prefopt.objectives.registry import register


def _sigmoid(logits: Tensor, beta: float, label_smoothing: float) -> Tensor:
    z = beta * logits  # (B,)
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def _hinge(logits: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return torch.relu(1 - beta * logits)


def _ipo(logits: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return (logits - 1 / (2 * beta)) ** 2


# loss_type -> (preference loss of the log-prob margin, the log-probs it is defined on), as TRL
LOSS_TYPES: dict[str, tuple[Callable[[Tensor, float, float], Tensor], Reduction]] = {
    "sigmoid": (_sigmoid, "sum"),
    "hinge": (_hinge, "sum"),
    "ipo": (_ipo, "mean"),
}


def cpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Per-pair CPO preference loss (CPO paper Eq. 3 for ``sigmoid``), ``m = pi_c - pi_r``:

    * ``sigmoid``: ``-(1 - eps) log sigmoid(beta m) - eps log sigmoid(-beta m)`` (summed)
    * ``hinge``: ``max(0, 1 - beta m)`` (summed log-probs)
    * ``ipo``: ``(m - 1 / (2 beta))^2`` (mean per-token log-probs)

    Args:
        chosen_logps: (B,) policy log-probs of the chosen responses, reduced as ``LOSS_TYPES``
            says for ``loss_type``.
        rejected_logps: (B,) same for the rejected responses.
        beta: inverse temperature.
        loss_type: ``sigmoid``, ``hinge`` or ``ipo``.
        label_smoothing: eps of the ``sigmoid`` loss, in [0, 0.5).

    Returns:
        (B,) losses.
    """
    loss_fn, _ = LOSS_TYPES[loss_type]
    return loss_fn(chosen_logps - rejected_logps, beta, label_smoothing)


@register("cpo")
class CPO(Objective):
    """CPO: ``L = mean preference loss + cpo_alpha * L_NLL``; no reference model.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6].
        cpo_alpha: weight of the chosen NLL (TRL's name; default 1.0, the paper's), in
            [0, 1e6]. TRL's NLL covers the chosen response only: ``module.nll_scope=completion``.
        loss_type: ``sigmoid`` (default, the paper's) or ``hinge`` on summed log-probs, or ``ipo``
            on mean per-token log-probs, as TRL's ``CPOTrainer``.
        label_smoothing: eps of the ``sigmoid`` loss (default 0), in [0, 0.5).
    """

    needs_reference = False
    rejected_grad = True
    formula = "mean_i ℓ(π_c − π_r) + cpo_alpha · L_NLL,  ℓ(m) = −log σ(β m) (sigmoid)"
    paper = "Xu et al. 2024, arXiv 2401.08417, Eq. 3 + NLL"
    trl_name = 'CPOTrainer loss_type="sigmoid", "hinge" or "ipo" (cpo_alpha)'

    def __init__(
        self,
        beta: float = 0.1,
        cpo_alpha: float = 1.0,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
    ) -> None:
        if loss_type not in LOSS_TYPES:
            raise ConfigError(
                f"{self.name}: loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}"
            )
        self.beta = check_beta(self.name, beta)
        self.cpo_alpha = check_range(self.name, "cpo_alpha", cpo_alpha, 0.0)
        self.loss_type = loss_type
        self.label_smoothing = check_range(
            self.name, "label_smoothing", label_smoothing, 0.0, 0.5, open_high=True
        )
        if self.label_smoothing and loss_type != "sigmoid":
            raise ConfigError(f"{self.name}: label_smoothing applies to loss_type=sigmoid only")
        self.reduction: Reduction = LOSS_TYPES[loss_type][1]

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        chosen, rejected = inputs.logps(self.reduction)  # (B,) each
        losses = cpo_loss(chosen, rejected, self.beta, self.loss_type, self.label_smoothing)
        terms = {"preference": losses.mean(), "nll": self.cpo_alpha * inputs.nll_loss}
        metrics = preference_metrics(
            inputs, self.beta * chosen, self.beta * rejected, self.reduction
        )
        return ObjectiveOutput(terms["preference"] + terms["nll"], metrics, terms)
