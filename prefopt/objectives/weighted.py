"""A weighted sum of registered objectives: TRL's ``loss_type=[...]`` with ``loss_weights``.

RPO (DPO + NLL), MPO (DPO + BCO + NLL) and any other mix are configs, not code: each term is a
registered objective built by Hydra from a nested ``_target_`` (``configs/objective/rpo.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor

from prefopt.errors import ConfigError
from prefopt.objectives.base import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    Reduction,
    check_range,
    require_lengths,
    require_reference,
)
from prefopt.objectives.registry import register


def weighted_sum(
    losses: Mapping[str, Tensor], weights: Mapping[str, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    """``L = sum_k w_k L_k``.

    Args:
        losses: ``{label: () loss}`` of each term.
        weights: ``{label: w}`` for the same labels.

    Returns:
        ``(loss, terms)``: the () sum and ``{label: () w_k L_k}``.
    """
    terms = {label: weights[label] * loss for label, loss in losses.items()}
    return torch.stack(list(terms.values())).sum(), terms


@register("weighted")
class Weighted(Objective):
    """A weighted sum of objectives, each given its inputs in the reduction it declares.

    Declarations, derived from the terms: ``needs_reference`` and ``rejected_grad`` if any term
    has them. ``reduction`` is the one the terms that need a reference agree on; if they
    disagree, references arrive summed (``sum``) and each ``mean`` term receives them divided by
    the response lengths (the module's per-token mean is exactly that). Without a reference it is
    the first term's (it then only picks which log-probs ``logps/*`` report).

    Metrics are the first term's (TRL's ``DPOTrainer`` logs its ``sigmoid`` rewards whatever it
    sums), plus ``terms/<label>``: each weighted term, whose sum is the loss.

    Args:
        terms: ``{label: objective}``, in order; labels name the terms in weights, metrics and
            ``ObjectiveOutput.terms``.
        weights: ``{label: w}`` in [0, 1e6]; a term without a weight gets 1 (TRL's default).
    """

    formula = "Σ_k w_k L_k"
    paper = "RPO: Pang et al. 2024, arXiv 2404.19733; MPO: Wang et al. 2024, arXiv 2411.10442"
    trl_name = "DPOTrainer loss_type=[...], loss_weights=[...]"

    def __init__(
        self, terms: Mapping[str, Objective], weights: Mapping[str, float] | None = None
    ) -> None:
        self.terms = {str(label): term for label, term in (terms or {}).items()}
        if not self.terms:
            raise ConfigError(f"{self.name}: terms must hold at least one objective")
        for label, term in self.terms.items():
            if not isinstance(term, Objective):
                raise ConfigError(
                    f"{self.name}: terms.{label} must be an objective config with a _target_, "
                    f"got {type(term).__name__}"
                )
        weights = {str(label): w for label, w in (weights or {}).items()}
        unknown = sorted(set(weights) - set(self.terms))
        if unknown:
            raise ConfigError(
                f"{self.name}: weights.{unknown[0]} names no term; terms: {', '.join(self.terms)}"
            )
        self.weights = {
            label: check_range(self.name, f"weights.{label}", weights.get(label, 1.0), 0.0)
            for label in self.terms
        }
        objectives = list(self.terms.values())
        self.needs_reference = any(t.needs_reference for t in objectives)
        self.rejected_grad = any(t.rejected_grad for t in objectives)
        self.reduction = _reference_reduction(objectives)
        labels = tuple(f"terms/{label}" for label in self.terms)
        self.extra_metrics = (*objectives[0].extra_metrics, *labels)

    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        outputs = {
            label: term.compute(self._inputs_for(term, inputs))
            for label, term in self.terms.items()
        }
        loss, terms = weighted_sum({k: out.loss for k, out in outputs.items()}, self.weights)
        metrics = dict(next(iter(outputs.values())).metrics)
        metrics.update({f"terms/{label}": value for label, value in terms.items()})
        return ObjectiveOutput(loss=loss, metrics=metrics, terms=terms)

    def _inputs_for(self, term: Objective, inputs: ObjectiveInputs) -> ObjectiveInputs:
        """``inputs`` with the reference in ``term``'s reduction (only sum -> mean happens)."""
        if not term.needs_reference or term.reduction == self.reduction:
            return inputs
        ref_chosen, ref_rejected = require_reference(inputs, self.name)
        chosen_lengths, rejected_lengths = require_lengths(inputs, self.name)
        return dataclasses.replace(
            inputs,
            ref_chosen_logps=ref_chosen / chosen_lengths,  # (B,)
            ref_rejected_logps=ref_rejected / rejected_lengths,  # (B,)
        )


def _reference_reduction(objectives: list[Objective]) -> Reduction:
    """The reduction the module must deliver references in (see :class:`Weighted`)."""
    wanted = {t.reduction for t in objectives if t.needs_reference}
    if len(wanted) == 1:
        return wanted.pop()
    return "sum" if wanted else objectives[0].reduction
