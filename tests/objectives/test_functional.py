"""Shared numerics: log1mexp and the log odds ratio, against 50-digit math and at the extremes."""

import math

import mpmath
import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives.functional import log1mexp, log_odds


def test_log_odds_agrees_with_mpmath_to_float32_precision():
    """|err| <= 1e-5 (1 + |ref|) over log-probs spanning [-1e4, -1e-9], against 50-digit math."""
    mpmath.mp.dps = 50
    g = torch.Generator().manual_seed(1)
    exponents = torch.empty(400, 2).uniform_(-9, 4, generator=g)
    logps = -(10.0**exponents)  # (400, 2) in [-1e4, -1e-9]
    got = log_odds(logps[:, 0].float(), logps[:, 1].float()).double()

    def log_odds_mp(x):
        x = mpmath.mpf(x)
        return x - mpmath.log(1 - mpmath.exp(x))

    for (c, r), value in zip(logps.float().double().tolist(), got.tolist()):
        ref = float(log_odds_mp(c) - log_odds_mp(r))
        assert abs(value - ref) <= 1e-5 * (1 + abs(ref)), (c, r, value, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_odds_keeps_float_dtype(dtype):
    out = log_odds(torch.tensor([-1.0], dtype=dtype), torch.tensor([-2.0], dtype=dtype))
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_log_odds_upcasts_half_precision(dtype):
    out = log_odds(torch.tensor([-1.0], dtype=dtype), torch.tensor([-2.0], dtype=dtype))
    assert out.dtype == torch.float32
    assert_close(out, log_odds(torch.tensor([-1.0]), torch.tensor([-2.0])))


def test_log1mexp_gradient_is_finite_near_zero():
    """TRL 1.16's log1mexp returns a NaN gradient at -1e-9 through torch.where's unused branch."""
    x = torch.tensor([-1e-9, -1e-6, -0.6931, -0.6932, -30.0, -1e4], requires_grad=True)
    y = log1mexp(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    # d/dx log(1 - e^x) = -1 / (e^-x - 1) ~ 1/x near 0
    assert_close(x.grad[0], torch.tensor(-1e9), rtol=1e-3, atol=0)
    assert_close(y[2], torch.tensor(math.log(1 - math.exp(-0.6931))))
