"""The fused LM head + log-softmax equals ``F.cross_entropy`` on full logits: values, gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from prefopt.models.fused_head import CPU_BLOCK_BYTES, head_logps


def _inputs(n=37, h=8, v=4099, bias=True, dtype=torch.float32):
    """37 positions over a vocabulary of 4,099: one row block at the default block size
    (2 MiB holds 127 rows), eight blocks of 5 rows (the last one partial) at the test's."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(v, h, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(v, generator=g, dtype=dtype).requires_grad_() if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, b, targets


def _straightforward(hidden, weight, bias, targets):
    return -F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("block_bytes", [CPU_BLOCK_BYTES, 4 * 4099 * 5])  # 1 block, 5-row blocks
def test_values_and_gradients_equal_cross_entropy(monkeypatch, bias, block_bytes):
    monkeypatch.setattr("prefopt.models.fused_head.CPU_BLOCK_BYTES", block_bytes)
    inputs = _inputs(bias=bias)
    params = [t for t in inputs[:3] if t is not None]
    upstream = torch.randn(37, generator=torch.Generator().manual_seed(1))

    ours = head_logps(*inputs)
    expected = _straightforward(*inputs)
    assert ours.dtype == torch.float32
    assert_close(ours, expected)
    got = torch.autograd.grad((ours * upstream).sum(), params)
    want = torch.autograd.grad((expected * upstream).sum(), params)
    for a, b in zip(got, want):
        assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bfloat16_head_gives_float32_logps_and_bfloat16_gradients():
    hidden, weight, _, targets = _inputs(bias=False, dtype=torch.bfloat16)
    ours = head_logps(hidden, weight, None, targets)
    assert ours.dtype == torch.float32
    assert_close(ours, _straightforward(hidden, weight, None, targets))
    grad_hidden, grad_weight = torch.autograd.grad(ours.sum(), [hidden, weight])
    assert grad_hidden.dtype == grad_weight.dtype == torch.bfloat16


def test_backward_twice_is_refused():
    """The saved logits are overwritten by their gradient, so a second backward must fail."""
    hidden, weight, bias, targets = _inputs()
    out = head_logps(hidden, weight, bias, targets).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward can run once"):
        out.backward()


def test_no_grad_scoring():
    hidden, weight, bias, targets = _inputs()
    with torch.no_grad():
        ours = head_logps(hidden, weight, bias, targets)
    assert not ours.requires_grad
    assert_close(ours, _straightforward(hidden, weight, bias, targets).detach())


@pytest.mark.parametrize("tile", [7, 16, 50])
@pytest.mark.parametrize("with_bias", [False, True])
def test_the_vocabulary_tiled_head_equals_the_fused_one(tile, with_bias):
    """Running log-sum-exp over vocabulary tiles, tiles recomputed in backward: the same
    log-probs and gradients as the fused head (a tile of 50 = the whole vocabulary)."""
    from prefopt.models.fused_head import tiled_head_logps

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(9, 6, generator=g, requires_grad=True)
    weight = torch.randn(50, 6, generator=g, requires_grad=True)
    bias = torch.randn(50, generator=g, requires_grad=True) if with_bias else None
    targets = torch.tensor([0, 49, 6, 7, 13, 14, 15, 16, 30])  # tile edges included
    upstream = torch.randn(9, generator=g)

    def grads(fn):
        out = fn(hidden, weight, bias, targets)
        params = [hidden, weight] + ([bias] if with_bias else [])
        return out, torch.autograd.grad((out * upstream).sum(), params)

    fused, fused_grads = grads(head_logps)
    tiled, tiled_grads = grads(lambda *a: tiled_head_logps(*a, tile))
    torch.testing.assert_close(tiled, fused)
    for a, b in zip(tiled_grads, fused_grads):
        torch.testing.assert_close(a, b)
