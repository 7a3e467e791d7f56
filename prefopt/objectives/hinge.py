"""SLiC's hinge loss on the reference-normalised margin (Zhao et al. 2023; Liu et al. 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def hinge_loss(chosen_logratios: Tensor, rejected_logratios: Tensor, beta: float) -> Tensor:
    """Per-pair hinge loss: ``max(0, 1 - beta h)``, ``h = (pi_c - ref_c) - (pi_r - ref_r)``.

    SLiC-HF's calibration loss ``max(0, delta - log P(y_c) + log P(y_r))`` with the log-probs
    normalised by the reference and the margin ``delta = 1 / beta`` (the RSO paper's
    ``hinge-norm``), scaled by beta.

    Args:
        chosen_logratios: (B,) ``pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``pi_r - ref_r``.
        beta: inverse margin.

    Returns:
        (B,) losses.
    """
    return torch.relu(1 - beta * (chosen_logratios - rejected_logratios))


@register("hinge")
class Hinge(DPOFamily):
    """SLiC hinge against a frozen reference.

    Args:
        beta: inverse margin (default 0.1: the pair is done once ``h >= 10``), in [1e-6, 1e6].
    """

    formula = "max(0, 1 − β h)"
    paper = "SLiC-HF: Zhao et al. 2023, arXiv 2305.10425; hinge-norm of RSO, arXiv 2309.06657"
    trl_name = 'DPOTrainer loss_type="hinge"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        return hinge_loss(chosen_logratios, rejected_logratios, self.beta)
