"""The log-prob function against a direct per-sequence computation from full logits."""

import pytest
import torch
from torch.testing import assert_close
from transformers import AutoConfig, AutoModelForCausalLM

from prefopt.models.logps import sequence_stats, token_logps
from prefopt.models.oracle import full_logits_stats

VOCAB = 50


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama",
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def _batch():
    """Two pairs. Pair 0: prompt 3 tokens, chosen 4, rejected 2. Pair 1: prompt 5, chosen 1,
    rejected 3. Rows are right-padded to T = 8 with pad id 0."""
    g = torch.Generator().manual_seed(0)
    specs = [(3, 4), (5, 1), (3, 2), (5, 3)]  # (prompt, response) per row: chosen rows first
    T = 8
    input_ids = torch.zeros(4, T, dtype=torch.long)
    attention = torch.zeros(4, T, dtype=torch.long)
    labels = torch.full((4, T), -100)
    prompts = [
        torch.randint(1, VOCAB, (3,), generator=g),
        torch.randint(1, VOCAB, (5,), generator=g),
    ]
    for i, (p, r) in enumerate(specs):
        ids = torch.cat([prompts[i % 2], torch.randint(1, VOCAB, (r,), generator=g)])
        input_ids[i, : p + r] = ids
        attention[i, : p + r] = 1
        labels[i, p : p + r] = ids[p:]
    return input_ids, attention, labels


def _direct(model, input_ids, attention, labels, scope="full"):
    """The full-logits oracle: (2B, T, V) logits, log_softmax, gather, mask, reduce."""
    return full_logits_stats(model, input_ids, attention, labels, scope)


@pytest.mark.parametrize("scope", ["full", "completion", "completion_seq"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_matches_direct_computation(model, scope, chunk_size):
    batch = _batch()
    ref = _direct(model, *batch, scope=scope)
    stats = sequence_stats(model, *batch, nll_scope=scope, chunk_size=chunk_size)
    assert_close(stats.logps, ref.logps)
    assert stats.counts.tolist() == ref.counts.tolist() == [4, 1, 2, 3]
    assert_close(stats.nll_sum / stats.nll_count, ref.nll_sum / ref.nll_count)
    assert_close(stats.logits_sum, ref.logits_sum)


@pytest.mark.parametrize("chunk_size", [None, 2, 5])
def test_gradients_match_direct_computation(model, chunk_size):
    """Loss = NLL - mean(avg logps chosen - rejected): gradients equal the full-logits route."""
    batch = _batch()

    def grads(fn):
        model.zero_grad()
        fn().backward()
        return [p.grad.clone() for p in model.parameters()]

    def ours():
        s = sequence_stats(model, *batch, nll_scope="full", chunk_size=chunk_size)
        avg = s.logps / s.counts
        return s.nll_sum / s.nll_count - (avg[:2] - avg[2:]).mean()

    def direct():
        r = _direct(model, *batch)
        return r.nll_sum / r.nll_count - (r.avg_logps[:2] - r.avg_logps[2:]).mean()

    for a, b in zip(grads(ours), grads(direct)):
        assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rejected_grad_false_scores_rejected_without_gradient(model):
    batch = _batch()
    with_grad = sequence_stats(model, *batch, chunk_size=3)
    without = sequence_stats(model, *batch, chunk_size=3, rejected_grad=False)
    assert_close(with_grad.logps, without.logps)
    (g,) = torch.autograd.grad(without.logps[:2].sum(), [model.lm_head.weight])
    assert g.abs().sum() > 0
    with pytest.raises(RuntimeError):  # the rejected scores are not part of any graph
        torch.autograd.grad(without.logps[2:].sum(), [model.lm_head.weight])


def test_no_full_vocab_tensor_over_all_positions(model):
    """The LM head only ever sees the needed positions, at most chunk_size at a time."""
    batch = _batch()
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, a, o: seen.append(tuple(o.shape)))
    real_linear = torch.nn.functional.linear
    shapes = []

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        if w is model.lm_head.weight:
            shapes.append(tuple(out.shape))
        return out

    torch.nn.functional.linear = spy
    try:
        sequence_stats(model, *batch, nll_scope="completion", chunk_size=4).logps.sum().backward()
    finally:
        torch.nn.functional.linear = real_linear
        hook.remove()
    assert seen == [(4, 1, VOCAB)]  # the model's own head: one position per row
    assert max(s[0] for s in shapes) <= 4 and sum(s[0] for s in shapes) >= 10


def test_unknown_scope():
    with pytest.raises(ValueError, match="unknown nll_scope 'prompt'; available: full"):
        sequence_stats(None, *_batch(), nll_scope="prompt")


def test_token_logps_empty():
    out, means = token_logps(torch.zeros(0, 4), torch.nn.Linear(4, 3), torch.zeros(0).long())
    assert out.shape == (0,) and means.shape == (0,)
