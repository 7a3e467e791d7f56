"""LM head + log-softmax + gather for N positions, with a backward that reuses the logits buffer.

``F.cross_entropy(head(hidden), targets)`` keeps the ``(N, V)`` logits and their ``(N, V)``
log-softmax for backward, and allocates two more ``(N, V)`` tensors there (the NLL's gradient and
the log-softmax's). Here the forward keeps the logits and one ``(N,)`` log-sum-exp, and the
backward turns the logits, in place, into their own gradient
``d log p(y_i) / d z_i = onehot(y_i) - softmax(z_i)`` (times the incoming gradient). So the loss
stage holds a single ``(N, V)`` float32 tensor, and the element-wise passes run over blocks of
rows small enough to stay in the CPU cache. Same values and gradients as the straightforward
computation (to float rounding; ``tests/models/test_fused_head.py``).

For a vocabulary larger than ``vocab_chunk_size`` (32,768 by default) the head is tiled over
the vocabulary too (:func:`tiled_head_logps`): a running log-sum-exp over vocabulary tiles in
forward, the tiles' logits recomputed in backward. The loss stage then holds one
``chunk x vocab_chunk_size`` tile, whatever V (a 128k vocabulary costs what a 32k one does), for
one more LM-head matmul in backward.

:func:`token_logps` runs it over the scored positions of a batch in chunks (recomputed in
backward), which is how :func:`prefopt.models.logps.sequence_stats` calls it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

# rows per block of the element-wise passes on CPU: 16 x 32k float32 logits = 2 MiB (L2-sized)
CPU_BLOCK_BYTES = 2 * 1024 * 1024
# vocabulary entries per tile of the tiled head (a larger vocabulary is tiled)
VOCAB_CHUNK_SIZE = 32768
# (hidden (N, H), weight (V, H), bias (V,) or None, targets (N,)) -> (logps (N,), logit means (N,))
ChunkScorer = Callable[[Tensor, Tensor, Tensor | None, Tensor], tuple[Tensor, Tensor]]


def head_logps(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """``log_softmax(hidden @ weight.T + bias)[i, targets[i]]`` in float32.

    Args:
        hidden: (N, H) hidden states.
        weight: (V, H) LM head weight.
        bias: (V,) LM head bias, or ``None``.
        targets: (N,) token ids.

    Returns:
        (N,) float32 log-probs; differentiable with respect to ``hidden``, ``weight``, ``bias``
        (backward may run once: the saved logits become the gradient).
    """
    return _HeadLogps.apply(hidden, weight, bias, targets)


def _row_blocks(logits: Tensor) -> list[slice]:
    n, v = logits.shape
    rows = n if logits.device.type != "cpu" else max(1, CPU_BLOCK_BYTES // (4 * max(v, 1)))
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


class _HeadLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor):
        logits = F.linear(hidden, weight, bias).float()  # (N, V)
        lse = logits.new_empty(logits.shape[0])  # (N,)
        for rows in _row_blocks(logits):
            torch.logsumexp(logits[rows], dim=-1, out=lse[rows])
        logps = logits.gather(1, targets[:, None]).squeeze(1) - lse  # (N,)
        ctx.save_for_backward(hidden, weight, targets, logits, lse)
        ctx.has_bias, ctx.used = bias is not None, False
        return logps

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.used:
            raise RuntimeError("head_logps: backward can run once (its logits became gradients)")
        ctx.used = True
        hidden, weight, targets, logits, lse = ctx.saved_tensors
        grad = grad.float()
        for rows in _row_blocks(logits):  # -grad * softmax, in place
            logits[rows].sub_(lse[rows, None]).exp_().mul_(-grad[rows, None])
        logits[torch.arange(len(targets), device=targets.device), targets] += grad  # + onehot
        grad_logits = logits.to(weight.dtype)  # (N, V)
        grad_hidden = grad_logits @ weight if ctx.needs_input_grad[0] else None  # (N, H)
        grad_weight = grad_logits.T @ hidden if ctx.needs_input_grad[1] else None  # (V, H)
        grad_bias = grad_logits.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_hidden, grad_weight, grad_bias, None


def tiled_head_logps(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, tile: int
) -> Tensor:
    """:func:`head_logps` without an ``(N, V)`` tensor: the vocabulary in tiles of ``tile``.

    Returns:
        (N,) float32 log-probs (the same values to float rounding); the backward recomputes
        each tile's logits and holds one ``(N, tile)`` block at a time.
    """
    return _TiledHeadLogps.apply(hidden, weight, bias, targets, tile)


def _tiles(vocab: int, tile: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + tile, vocab)) for lo in range(0, vocab, tile)]


def _tile_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, lo: int, hi: int) -> Tensor:
    return F.linear(hidden, weight[lo:hi], None if bias is None else bias[lo:hi]).float()


class _TiledHeadLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, tile: int):
        n = hidden.shape[0]
        lse = torch.full((n,), -torch.inf, dtype=torch.float32, device=hidden.device)  # (N,)
        picked = torch.zeros(n, dtype=torch.float32, device=hidden.device)  # (N,)
        for lo, hi in _tiles(weight.shape[0], tile):
            logits = _tile_logits(hidden, weight, bias, lo, hi)  # (N, tile)
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=-1))
            inside = ((targets >= lo) & (targets < hi)).nonzero().flatten()
            picked[inside] = logits[inside, targets[inside] - lo]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.tile = tile
        return picked - lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        grad = grad.float()
        grad_hidden = (
            torch.zeros_like(hidden, dtype=torch.float32) if ctx.needs_input_grad[0] else None
        )
        grad_weight = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        grad_bias = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
        for lo, hi in _tiles(weight.shape[0], ctx.tile):
            logits = _tile_logits(hidden, weight, bias, lo, hi)  # (N, tile), recomputed
            block = logits.sub_(lse[:, None]).exp_().mul_(-grad[:, None])  # -grad * softmax
            inside = ((targets >= lo) & (targets < hi)).nonzero().flatten()
            block[inside, targets[inside] - lo] += grad[inside]  # + onehot
            block = block.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden += block.float() @ weight[lo:hi].float()  # (N, H)
            if grad_weight is not None:
                grad_weight[lo:hi] = block.T @ hidden  # (tile, H)
            if grad_bias is not None:
                grad_bias[lo:hi] = block.sum(0)
        grad_hidden = grad_hidden.to(hidden.dtype) if grad_hidden is not None else None
        return grad_hidden, grad_weight, grad_bias, None, None


def _score_chunk(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    vocab_chunk_size: int | None = VOCAB_CHUNK_SIZE,
):
    """(N, H) hidden states -> (N,) log-prob of ``targets`` and (N,) vocabulary-mean logit."""
    if vocab_chunk_size is not None and weight.shape[0] > vocab_chunk_size:
        logps = tiled_head_logps(hidden, weight, bias, targets, vocab_chunk_size)  # (N,)
    else:
        logps = head_logps(hidden, weight, bias, targets)  # (N,); one (N, V) buffer
    with torch.no_grad():  # mean_v(h . w_v + b_v) = h . mean_v(w_v) + mean(b): no (N, V) pass
        means = hidden.float() @ weight.mean(0, dtype=torch.float32)  # (N,); no float W copy
        if bias is not None:
            means += bias.mean(dtype=torch.float32)
    return logps, means


def token_logps(
    hidden: Tensor,
    head: nn.Module,
    targets: Tensor,
    chunk_size: int | None = 4096,
    grad_positions: int | None = None,
    score_chunk: ChunkScorer | None = None,
    vocab_chunk_size: int | None = VOCAB_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Log-probs of ``targets`` under ``head(hidden)``, in float32, chunk by chunk.

    Args:
        hidden: (N, H) hidden states at the scored positions.
        head: the LM head (``nn.Linear``-like: ``weight`` (V, H), optional ``bias``).
        targets: (N,) next-token ids.
        chunk_size: positions per chunk; ``None`` scores all positions at once.
        grad_positions: only the first ``grad_positions`` positions need gradients (the rest
            are scored under ``torch.no_grad``); ``None`` means all.
        score_chunk: ``(hidden, weight, bias, targets) -> (logps, logit_means)`` of one chunk
            (default: the fused head; the benchmark swaps in ``F.cross_entropy`` to measure it).
        vocab_chunk_size: a larger vocabulary is tiled in tiles of this many entries (the
            default scorer only; ``None``: never).

    Returns:
        ``(logps, logit_means)``, each (N,); ``logit_means`` is detached.
    """
    n = hidden.shape[0]
    grad_positions = n if grad_positions is None else grad_positions
    chunk_size = chunk_size or max(n, 1)
    weight, bias = head.weight, getattr(head, "bias", None)
    tiled = (
        score_chunk is None and vocab_chunk_size is not None and weight.shape[0] > vocab_chunk_size
    )
    score = score_chunk or functools.partial(_score_chunk, vocab_chunk_size=vocab_chunk_size)
    logps, means = [], []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        # a chunk straddling grad_positions is split so that each part is scored once
        for lo, hi in ((start, min(stop, grad_positions)), (max(start, grad_positions), stop)):
            if lo >= hi:
                continue
            args = (hidden[lo:hi], weight, bias, targets[lo:hi])
            needs_grad = lo < grad_positions and torch.is_grad_enabled()
            if not needs_grad:
                with torch.no_grad():
                    out = score(*args)
            elif n > chunk_size and not tiled:  # recompute logits in backward: ~ chunk x V
                # (the tiled head saves no logits: it recomputes its tiles itself)
                out = checkpoint(score, *args, use_reentrant=False)
            else:
                out = score(*args)
            logps.append(out[0])
            means.append(out[1])
    if not logps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(means)
