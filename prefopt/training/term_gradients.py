"""Where each term pulls: the gradient norm of each term of a multi-term objective, and the cosine
between every two terms (ORPO: the NLL and the odds-ratio term; CPO; RPO and other weighted sums).

Opt-in (``module.log_term_grad_norms_every: N``) because it costs, on those steps only, one more
forward of the batch and one backward pass per term, and one gradient per term in memory. A λ
sweep then shows when the preference term starts to dominate the NLL.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from prefopt.models.logps import Scoring, plain_score_chunk
from prefopt.models.reference import ReferenceProvider
from prefopt.objectives import Objective
from prefopt.training.step import batch_loss


def term_gradient_stats(
    model: nn.Module,
    objective: Objective,
    batch: dict[str, Tensor],
    scoring: Scoring,
    reference: ReferenceProvider | None = None,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """``grad_norm/<term>`` (L2 norm over every trainable parameter of that term's gradient)
    and ``grad_cosine/<a>~<b>`` for the objective's terms on ``batch``; ``{}`` for an objective
    with fewer than two terms. Leaves ``.grad`` untouched.

    The batch is scored again with the unfused chunk scorer (the fused head's graph can be
    differentiated only once); the values equal the training step's to float rounding. The
    random generators are forked around it (a dropout mask here leaves training's unchanged).
    """
    with torch.random.fork_rng(devices=[]):  # dropout here must not move the training stream
        return _stats(model, objective, batch, scoring, reference, reduce)


def _stats(model, objective, batch, scoring, reference, reduce) -> dict[str, Tensor]:
    plain = dataclasses.replace(scoring, score_chunk=plain_score_chunk)
    kwargs = {} if reduce is None else {"reduce": reduce}
    terms = batch_loss(model, objective, batch, plain, reference, **kwargs).terms
    if len(terms) < 2:
        return {}
    params = [p for p in model.parameters() if p.requires_grad]
    names = list(terms)
    grads = {}
    for i, name in enumerate(names):
        grads[name] = torch.autograd.grad(
            terms[name], params, retain_graph=i < len(names) - 1, allow_unused=True
        )
    squares = {name: _dot(grads[name], grads[name]) for name in names}
    stats = {f"grad_norm/{name}": squares[name].sqrt() for name in names}
    for a, b in itertools.combinations(names, 2):
        denominator = (squares[a] * squares[b]).sqrt()
        if denominator > 0:  # undefined when a term pulls nowhere (e.g. ORPO at lam=0)
            stats[f"grad_cosine/{a}~{b}"] = _dot(grads[a], grads[b]) / denominator
    return {name: value.float() for name, value in stats.items()}


def _dot(a: tuple[Tensor | None, ...], b: tuple[Tensor | None, ...]) -> Tensor:
    """Sum over parameters of ``<a_i, b_i>`` in float64 (``None``: no gradient, i.e. zero)."""
    total = torch.zeros((), dtype=torch.float64)
    for x, y in zip(a, b):
        if x is not None and y is not None:
            total = total + (x.double() * y.double()).sum().cpu()
    return total
