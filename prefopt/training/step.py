"""The loss of one batch: one forward, per-sequence log-probs, the objective, the metrics.

:func:`batch_loss` needs no Trainer: the training module, the benchmark and the tests all call it.
Under data parallelism the caller passes ``reduce`` (the mean of a scalar over ranks), which keeps
the token-pooled NLL the NLL of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prefopt.errors import DataError, TrainingError
from prefopt.models.logps import Scoring, SequenceStats
from prefopt.models.reference import ReferenceProvider
from prefopt.objectives import Objective, ObjectiveInputs


class NonFiniteLogps(TrainingError):
    """The model's log-probs of a batch are not finite: its weights diverged."""


@dataclass
class BatchLoss:
    """What one batch yields.

    Attributes:
        loss: () the loss to back-propagate.
        values: metrics to log (detached), each (B,) per pair or () per batch.
        weights: the weight of a () value when batches are averaged (e.g. its token count).
        terms: the objective's weighted terms (with gradients) whose sum is its loss, for an
            objective made of several (ORPO: ``nll``, ``odds_ratio``); empty otherwise.
    """

    loss: Tensor
    values: dict[str, Tensor]
    weights: dict[str, Tensor]
    terms: dict[str, Tensor] = field(default_factory=dict)


def _no_reduce(value: Tensor) -> Tensor:
    return value


def batch_loss(
    model: nn.Module,
    objective: Objective,
    batch: dict[str, Tensor],
    scoring: Scoring | None = None,
    reference: ReferenceProvider | None = None,
    reduce: Callable[[Tensor], Tensor] = _no_reduce,
    router_aux_loss_coef: float = 0.0,
) -> BatchLoss:
    """Loss and metrics of one collated batch (``docs/_interfaces.md``) under ``objective``.

    Args:
        model: the policy (a Hugging Face causal LM, possibly wrapped by peft or FSDP).
        objective: what turns the per-sequence log-probs into a loss.
        batch: the collated 2B rows, chosen first.
        scoring: NLL scope, LM-head chunk size, prompt sharing (default :class:`Scoring`).
        reference: the reference log-probs, for an objective that ``needs_reference``.
        reduce: mean of a () tensor over data-parallel ranks (identity on one process).
        router_aux_loss_coef: weight of an MoE model's router load-balancing loss (0: off).
    """
    scoring = scoring or Scoring()
    stats = scoring(
        model,
        batch,
        rejected_grad=objective.rejected_grad,
        output_router_logits=router_aux_loss_coef > 0,
    )
    check_finite(stats)
    b = stats.logps.shape[0] // 2
    ref_chosen = ref_rejected = None
    if objective.needs_reference:
        if reference is None:
            raise ValueError(f"objective {objective.name!r} needs a reference, but none was given")
        ref_chosen, ref_rejected = reference.logps(model, batch, scoring, objective.reduction)
    # Token-pooled NLL over all ranks: normalise by the mean count across ranks, so that the
    # gradient average of data parallelism equals the gradient of the global token-pooled NLL.
    nll_denominator = reduce(stats.nll_count.float())
    counts = stats.counts.float()  # (2B,)
    inputs = ObjectiveInputs(
        chosen_logps=stats.logps[:b],
        rejected_logps=stats.logps[b:],
        chosen_avg_logps=stats.avg_logps[:b],
        rejected_avg_logps=stats.avg_logps[b:],
        nll_loss=stats.nll_sum / nll_denominator,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
        chosen_logits=stats.logits_sum[:b].sum() / counts[:b].sum(),
        rejected_logits=stats.logits_sum[b:].sum() / counts[b:].sum(),
        chosen_lengths=counts[:b],
        rejected_lengths=counts[b:],
    )
    out = objective(inputs)
    loss = out.loss
    if router_aux_loss_coef > 0 and stats.aux_loss is not None:
        loss = loss + router_aux_loss_coef * stats.aux_loss
    values = {**out.metrics, "loss": loss.detach()}
    # scalars pooled over tokens are weighted by their token counts across batches and ranks
    values["nll_loss"] = stats.nll_sum.detach() / stats.nll_count
    weights = {
        "nll_loss": stats.nll_count.float(),
        "logits/chosen": counts[:b].sum(),
        "logits/rejected": counts[b:].sum(),
        "loss": torch.tensor(float(b), device=loss.device),
    }
    return BatchLoss(loss, values, weights, dict(out.terms))


def check_finite(stats: SequenceStats) -> None:
    """Raise one line if a batch's log-probs are not finite (one host sync per batch).

    Raises:
        DataError: a row without response tokens reached the model (a data-layer bug: such rows
            are dropped at setup).
        NonFiniteLogps: the log-probs themselves are inf/NaN: the model diverged.
    """
    if bool(torch.isfinite(stats.logps).all()) and bool(torch.isfinite(stats.nll_sum)):
        return
    if bool((stats.counts == 0).any()):
        raise DataError("a batch holds a response with no tokens (they are dropped at setup)")
    bad = int((~torch.isfinite(stats.logps)).sum())
    raise NonFiniteLogps(
        f"the model's log-probs became non-finite ({bad} of {stats.logps.numel()} sequences"
        f"{'' if bool(torch.isfinite(stats.nll_sum)) else ', and the NLL'})"
    )
