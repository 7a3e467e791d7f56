"""Packed rows equal the padded batch: per-sequence log-probs, the NLL of every scope and the
gradients (Llama, Qwen2, Mistral; sdpa and eager; sliding windows), sequences that never see each
other, the flash-attention varlen plumbing, and one-line refusals."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from prefopt.data.collate import PreferenceCollator
from prefopt.data.packing import PackedPreferenceCollator
from prefopt.errors import ConfigError
from prefopt.models.logps import Scoring
from prefopt.models.packed import (
    PackedRows,
    block_causal_mask,
    check_packing_support,
    packed_model_inputs,
)
from tests.conftest import tiny_decoder

VOCAB = 61
ARCHITECTURES = ["llama", "qwen2", "mistral"]
# (prompt, chosen, rejected): one-token prompt, responses shorter and longer than the other
SPECS = [(3, 4, 2), (5, 1, 3), (1, 6, 6), (7, 9, 2)]


def _model(architecture="llama", attn="sdpa", **overrides):
    return tiny_decoder(architecture, VOCAB, attn, **overrides)


def _rows(specs=SPECS, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for lengths in specs:
        ids = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in lengths]
        rows.append(dict(zip(("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), ids)))
    return rows


def _batches(pack_length=20):
    """The 8 sequences (5 to 16 tokens, 65 in all) padded to 16 columns, or packed into 4 rows
    of at most 20 (18 wide)."""
    rows = _rows()
    packed = PackedPreferenceCollator(pad_token_id=0, pack_length=pack_length)(rows)
    return PreferenceCollator(pad_token_id=0)(rows), packed


def _stats_and_grads(model, batch, scoring, rejected_grad=True):
    """ORPO-like loss (NLL - mean logsigmoid of the mean log-prob margin) and its gradients."""
    model.zero_grad()
    stats = scoring(model, batch, rejected_grad=rejected_grad)
    avg = stats.avg_logps
    b = avg.shape[0] // 2
    loss = stats.nll_sum / stats.nll_count
    if rejected_grad:
        loss = loss - F.logsigmoid(avg[:b] - avg[b:]).mean()
    loss.backward()
    return stats, {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same(packed, plain, packed_grads=None, plain_grads=None):
    assert packed.counts.tolist() == plain.counts.tolist() == [4, 1, 6, 9, 2, 3, 6, 2]
    assert_close(packed.logps, plain.logps, atol=1e-5, rtol=1e-6)
    assert_close(packed.nll_sum / packed.nll_count, plain.nll_sum / plain.nll_count)
    assert_close(packed.logits_sum, plain.logits_sum, atol=1e-6, rtol=1e-5)
    for name, grad in (plain_grads or {}).items():
        assert grad.abs().sum() > 0, name
        assert_close(packed_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_the_packed_batch_uses_fewer_positions():
    plain, packed = _batches()
    assert plain["input_ids"].shape == (8, 16) and packed["input_ids"].shape == (4, 18)
    assert int(packed["attention_mask"].sum()) == int(plain["attention_mask"].sum()) == 65


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("scope", ["full", "completion", "completion_seq"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_stats_and_gradients_equal_the_padded_batch(architecture, attn, scope, chunk_size):
    model, (plain, packed) = _model(architecture, attn), _batches()
    scoring = Scoring(scope, chunk_size)
    plain_stats, plain_grads = _stats_and_grads(model, plain, scoring)
    packed_stats, packed_grads = _stats_and_grads(model, packed, scoring)
    _assert_same(packed_stats, plain_stats, packed_grads, plain_grads)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_rejected_without_gradient_and_prompt_sharing_baseline(architecture):
    """SFT's setting (rejected scored without gradients), against the padded batch both with
    and without prompt sharing: packing needs neither."""
    model, (plain, packed) = _model(architecture), _batches()
    packed_stats, packed_grads = _stats_and_grads(model, packed, Scoring(chunk_size=4), False)
    for sharing in (False, True):
        scoring = Scoring(chunk_size=4, prompt_sharing=sharing)
        plain_stats, plain_grads = _stats_and_grads(model, plain, scoring, False)
        _assert_same(packed_stats, plain_stats, packed_grads, plain_grads)


@pytest.mark.parametrize(
    ("architecture", "overrides"),
    [
        ("mistral", {"sliding_window": 4}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    ],
)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_sliding_windows_are_applied_inside_each_sequence(architecture, overrides, attn):
    """A window of 4 positions (sequences of up to 16): Mistral's on every layer, Qwen2's on its
    second layer only (one mask per layer type)."""
    plain, packed = _batches()
    windowed = _model(architecture, attn, **overrides)
    plain_stats, plain_grads = _stats_and_grads(windowed, plain, Scoring())
    packed_stats, packed_grads = _stats_and_grads(windowed, packed, Scoring())
    _assert_same(packed_stats, plain_stats, packed_grads, plain_grads)
    full = Scoring()(_model(architecture, attn), plain)
    assert (full.logps - plain_stats.logps).abs().max() > 1e-3  # the window matters here


def test_a_sequence_never_sees_the_other_sequences_of_its_row():
    model, (_, packed) = _model(), _batches()
    before = Scoring()(model, packed).logps
    ids = packed["sequence_ids"]
    row = 1  # holds sequences 1, 2 and 4, no padding
    assert ids[row].unique().tolist() == [1, 2, 4]
    target = int(ids[row, -1])  # the row's last sequence: every token before it is another's
    changed = dict(packed, input_ids=packed["input_ids"].clone())
    others = ids[row] != target
    changed["input_ids"][row, others] = (changed["input_ids"][row, others] % (VOCAB - 1)) + 1
    after = Scoring()(model, changed).logps
    assert_close(after[target], before[target], atol=0, rtol=0)
    assert (after - before).abs().max() > 1e-4  # the changed sequences did change


def test_block_causal_mask_by_hand():
    """Row [a a b b -]: a sees a (causally), b sees b, the padding only itself; window 1 leaves
    the diagonal."""
    sequence_ids = torch.tensor([[0, 0, 1, 1, -1]])
    position_ids = torch.tensor([[0, 1, 0, 1, 0]])
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_causal_mask(sequence_ids, position_ids)[0, 0], expected)
    windowed = block_causal_mask(sequence_ids, position_ids, window=1)[0, 0]
    assert torch.equal(windowed, torch.eye(5, dtype=torch.bool))


def _varlen_attention(calls):
    """A stand-in for flash_attention_2 on CPU: causal attention inside each [cu[i], cu[i+1])
    of the flattened tokens, as flash_attn_varlen_func computes it."""

    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        assert attention_mask is None and query.shape[0] == 1  # padding-free: one flat row
        cu = kwargs["cu_seq_lens_q"].tolist()
        calls.append((cu, kwargs["max_length_q"]))
        out = [
            F.scaled_dot_product_attention(
                query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                scale=scaling, enable_gqa=True,
            )
            for a, b in zip(cu[:-1], cu[1:])
        ]  # fmt: skip
        return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None

    return attention


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_flash_attention_gets_the_varlen_boundaries_of_the_real_tokens(monkeypatch, architecture):
    calls = []
    monkeypatch.setitem(
        ALL_ATTENTION_FUNCTIONS._global_mapping, "flash_attention_2", _varlen_attention(calls)
    )
    model, (plain, packed) = _model(architecture), _batches()
    plain_stats, plain_grads = _stats_and_grads(model, plain, Scoring())
    model.config._attn_implementation = "flash_attention_2"
    kwargs, _ = packed_model_inputs(model, packed["input_ids"], PackedRows.of(packed))
    assert kwargs["input_ids"].shape == (1, 65) and kwargs["attention_mask"] is None
    packed_stats, packed_grads = _stats_and_grads(model, packed, Scoring())
    _assert_same(packed_stats, plain_stats, packed_grads, plain_grads)
    # each layer's call gets the 8 sequences' spans of the 65 real tokens, no padding
    lengths = [len(p) + len(r) for p, r in _sequences(_rows())]
    cu, longest = calls[0]
    assert len(cu) == 9 and cu[-1] == 65 and longest == max(lengths) == 16
    assert sorted(b - a for a, b in zip(cu[:-1], cu[1:])) == sorted(lengths)


def _sequences(rows):
    prompts = [r["prompt_input_ids"] for r in rows]
    responses = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
    return list(zip(prompts + prompts, responses))


def test_unsupported_models_and_attention_are_refused_in_one_line():
    gpt2 = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("gpt2", vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)
    )
    with pytest.raises(ConfigError, match="supports llama, mistral, qwen2 models, not gpt2"):
        check_packing_support(gpt2)
    model = _model()
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(ConfigError, match="attn_implementation=flex_attention: use model.attn"):
        check_packing_support(model)
    check_packing_support(_model(attn="eager"))


def test_prompt_sharing_true_refuses_packed_batches_and_auto_scores_them_unshared():
    model, (plain, packed) = _model(), _batches()
    with pytest.raises(ValueError, match="prompt_sharing=true does not combine with packed"):
        Scoring(prompt_sharing=True)(model, packed)
    assert_close(Scoring(prompt_sharing="auto")(model, packed).logps, Scoring()(model, plain).logps)
    with pytest.raises(ValueError, match="packed rows support neither output_router_logits"):
        Scoring()(model, packed, output_router_logits=True)


@pytest.mark.parametrize("window", [None, 3])
def test_varlen_sdpa_attention_equals_the_block_mask_and_is_plain_sdpa_unpacked(window):
    """Per-sequence sdpa calls (the CPU padding-free path) give what one sdpa call with the
    block-diagonal mask gives, grouped-query attention and a sliding window included; without
    sequence boundaries the function is transformers' sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from prefopt.models.packed import block_causal_mask, varlen_sdpa_attention

    g = torch.Generator().manual_seed(0)
    lengths = [5, 2, 7]
    n = sum(lengths)
    query = torch.randn(1, 4, n, 8, generator=g)
    key, value = torch.randn(1, 2, n, 8, generator=g), torch.randn(1, 2, n, 8, generator=g)
    sequence_ids = torch.cat([torch.full((m,), i) for i, m in enumerate(lengths)])[None]
    positions = torch.cat([torch.arange(m) for m in lengths])[None]
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 2, True, False
    bounds = torch.tensor([0, 5, 7, 14], dtype=torch.int32)
    got, _ = varlen_sdpa_attention(
        module, query, key, value, None, scaling=0.5, cu_seq_lens_q=bounds, sliding_window=window
    )
    mask = block_causal_mask(sequence_ids, positions, window)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.5)
    assert_close(got, expected)
    plain, _ = varlen_sdpa_attention(module, query, key, value, mask, scaling=0.5)
    assert_close(plain, expected)
