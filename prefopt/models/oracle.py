"""The straightforward log-prob computation, kept as the oracle the fast path is checked against.

Full ``(2B, T, V)`` logits from the model's own LM head, ``log_softmax``, gather, mask, reduce: what
TRL's trainers do. :func:`prefopt.models.logps.sequence_stats` (needed positions only, chunked,
fused head, optional prompt sharing) must give the same values and gradients; the tests and the
benchmark's "full logits" baseline both use this one copy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prefopt.models.logps import IGNORE_INDEX, NLL_SCOPES, SequenceStats


def full_logits_stats(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    nll_scope: str = "full",
) -> SequenceStats:
    """:class:`SequenceStats` of the 2B rows (chosen first) from full logits.

    Args: as :func:`prefopt.models.logps.sequence_stats`.
    """
    if nll_scope not in NLL_SCOPES:
        raise ValueError(f"unknown nll_scope {nll_scope!r}; available: {', '.join(NLL_SCOPES)}")
    b = input_ids.shape[0] // 2
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # (2B,T,V)
    logps = logits[:, :-1].log_softmax(-1)  # (2B, T-1, V)
    token = logps.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (2B, T-1)
    response = labels[:, 1:] != IGNORE_INDEX  # (2B, T-1)
    real = attention_mask[:, 1:].bool()
    seq = (token * response).sum(1)  # (2B,)
    counts = response.sum(1)  # (2B,)
    means = (logits[:, :-1].detach().mean(-1) * response).sum(1)  # (2B,)
    if nll_scope == "full":
        nll_sum, nll_count = -(token[:b] * real[:b]).sum(), real[:b].sum()
    elif nll_scope == "completion":
        nll_sum, nll_count = -seq[:b].sum(), counts[:b].sum()
    else:
        nll_sum, nll_count = -(seq[:b] / counts[:b]).sum(), torch.tensor(b)
    return SequenceStats(seq, counts, nll_sum, nll_count, means)


def full_logits_scoring(
    model: nn.Module,
    batch: dict[str, Tensor],
    rejected_grad: bool = True,
    output_router_logits: bool = False,
) -> SequenceStats:
    """A drop-in for :class:`prefopt.models.logps.Scoring` (``nll_scope="full"``) that uses
    :func:`full_logits_stats`; ``rejected_grad`` and the router loss are ignored."""
    return full_logits_stats(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"], "full"
    )
