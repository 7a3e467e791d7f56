"""Length-normalised DPO: DPO's sigmoid on per-token log-ratios (TRL's ``sigmoid_norm``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, require_lengths
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def sigmoid_norm_loss(
    chosen_logratios: Tensor,
    rejected_logratios: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
) -> Tensor:
    """Per-pair length-normalised DPO loss (DPO's Eq. 7 with per-token log-ratios, as Tülu 3).

    ``loss = -log sigmoid(beta (h_c / n_c - h_r / n_r))`` with ``h = pi - ref`` summed over the
    response and ``n`` its token count.

    Args:
        chosen_logratios: (B,) ``pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``pi_r - ref_r``.
        chosen_lengths: (B,) response token counts (clamped at 1, as TRL).
        rejected_lengths: (B,) same for the rejected responses.
        beta: inverse temperature.

    Returns:
        (B,) losses.
    """
    chosen = chosen_logratios / chosen_lengths.clamp(min=1.0)  # (B,)
    rejected = rejected_logratios / rejected_lengths.clamp(min=1.0)  # (B,)
    return -F.logsigmoid(beta * (chosen - rejected))


@register("sigmoid_norm")
class SigmoidNorm(DPOFamily):
    """DPO on per-token log-ratios; ``rewards/*`` stay TRL's summed ``beta * h``.

    Args:
        beta: inverse temperature (default 0.1), in [1e-6, 1e6]. Per-token log-ratios are
            ~n times smaller than summed ones, so a larger beta than DPO's is usual.
    """

    formula = "−log σ(β (h_c/n_c − h_r/n_r))"
    paper = "length-normalised DPO (Tülu 3: Lambert et al. 2024, arXiv 2411.15124)"
    trl_name = 'DPOTrainer loss_type="sigmoid_norm"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        chosen_lengths, rejected_lengths = require_lengths(inputs, self.name)
        return sigmoid_norm_loss(
            chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths, self.beta
        )
