"""IPO: identity preference optimization (Azar et al. 2023), a squared loss on the log-ratios."""

from __future__ import annotations

from torch import Tensor

from prefopt.objectives.base import ObjectiveInputs, require_lengths
from prefopt.objectives.dpo_family import DPOFamily
from prefopt.objectives.registry import register


def ipo_loss(
    chosen_logratios: Tensor,
    rejected_logratios: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
) -> Tensor:
    """Per-pair IPO loss (IPO paper Eq. 17, beta is the paper's tau), per token as TRL does.

    ``loss = (h_c / n_c - h_r / n_r - 1 / (2 beta))^2`` with ``h = pi - ref`` summed over the
    response and ``n`` its token count (TRL normalises by length, as the IPO authors confirmed
    their results do; the paper's Eq. 17 writes the summed ``h``).

    Args:
        chosen_logratios: (B,) ``pi_c - ref_c``, summed log-probs.
        rejected_logratios: (B,) ``pi_r - ref_r``.
        chosen_lengths: (B,) response token counts (clamped at 1, as TRL).
        rejected_lengths: (B,) same for the rejected responses.
        beta: the regularisation strength tau; the target margin is ``1 / (2 beta)``.

    Returns:
        (B,) losses.
    """
    chosen = chosen_logratios / chosen_lengths.clamp(min=1.0)  # (B,)
    rejected = rejected_logratios / rejected_lengths.clamp(min=1.0)  # (B,)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


@register("ipo")
class IPO(DPOFamily):
    """IPO against a frozen reference (needs the response lengths: ``ObjectiveInputs`` has them).

    Args:
        beta: the paper's tau (default 0.1), in [1e-6, 1e6].
    """

    formula = "(h_c/n_c − h_r/n_r − 1/(2β))²"
    paper = "Azar et al. 2023, arXiv 2310.12036, Eq. 17 (per token, as TRL)"
    trl_name = 'DPOTrainer loss_type="ipo"'

    def pair_losses(
        self, inputs: ObjectiveInputs, chosen_logratios: Tensor, rejected_logratios: Tensor
    ) -> Tensor:
        chosen_lengths, rejected_lengths = require_lengths(inputs, self.name)
        return ipo_loss(
            chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths, self.beta
        )
