"""LM head + log-softmax + gather for N positions, with a backward that reuses the logits buffer.

``F.cross_entropy(head(hidden), targets)`` keeps the ``(N, V)`` logits and their ``(N, V)``
log-softmax for backward, and allocates two more ``(N, V)`` tensors there (the NLL's gradient and
the log-softmax's). Here the forward keeps the logits and one ``(N,)`` log-sum-exp, and the
backward turns the logits, in place, into their own gradient
``d log p(y_i) / d z_i = onehot(y_i) - softmax(z_i)`` (times the incoming gradient). So the loss
stage holds a single ``(N, V)`` float32 tensor, and the element-wise passes run over blocks of
rows small enough to stay in the CPU cache. Same values and gradients as the straightforward
computation (to float rounding; ``tests/models/test_fused_head.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# rows per block of the element-wise passes on CPU: 16 x 32k float32 logits = 2 MiB (L2-sized)
CPU_BLOCK_BYTES = 2 * 1024 * 1024


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
