"""Numerics shared by the objectives: stable ``log1mexp`` and ORPO's log odds ratio.

Every objective that needs these imports them from here (never from another objective's file).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LN2 = math.log(2.0)


def upcast(x: Tensor) -> Tensor:
    """bf16/fp16 to float32; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable over the whole range (Maechler 2012).

    Uses ``log(-expm1(x))`` for ``x > -ln 2`` and ``log1p(-exp(x))`` below. Each branch is fed a
    safe dummy value where it is not selected, so that the unused branch can produce neither an
    infinite value nor a NaN gradient (``torch.where`` differentiates both branches).

    Args:
        x: any shape, values < 0 (0 maps to ``-inf``).

    Returns:
        Tensor of ``x``'s shape and dtype.
    """
    near_zero = x > -_LN2
    dummy = torch.full_like(x, -1.0)
    x_near = torch.where(near_zero, x, dummy)
    x_far = torch.where(near_zero, dummy, x)
    return torch.where(near_zero, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def log_odds(chosen_avg_logps: Tensor, rejected_avg_logps: Tensor) -> Tensor:
    """Log odds ratio of chosen over rejected (ORPO paper Eq. 6-7, inside the sigmoid).

    ``(c - r) - (log1mexp(c) - log1mexp(r))`` with ``c``/``r`` the mean per-token log-probs.
    A mean log-prob that rounded to exactly 0 (a saturated model, P == 1 in float) is clamped to
    the largest float below 0 whose ``log1mexp`` is finite, so the result stays finite.

    Args:
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen responses, < 0.
        rejected_avg_logps: (B,) same for the rejected responses.

    Returns:
        (B,) log odds ratio; float32/float64 inputs keep their dtype, bf16/fp16 give float32.
    """
    c, r = upcast(chosen_avg_logps), upcast(rejected_avg_logps)
    ceiling = -(torch.finfo(c.dtype).eps ** 2)  # ~ -1.4e-14 in float32: log1mexp finite
    c, r = c.clamp(max=ceiling), r.clamp(max=ceiling)
    return (c - r) - (log1mexp(c) - log1mexp(r))
