"""Prompt sharing equals the unshared forward: hidden states, log-probs, NLL and gradients."""

import functools

import pytest
import torch
from torch.testing import assert_close
from transformers import AutoConfig, AutoModelForCausalLM

from prefopt.data.collate import PreferenceCollator
from prefopt.models import logps as logps_module
from prefopt.models.logps import _last_hidden_state, sequence_stats
from prefopt.models.shared_prompt import shared_prompt_hidden, supports_prompt_sharing
from prefopt.objectives.orpo import ORPO
from prefopt.objectives.sft import SFT
from prefopt.training import PreferenceModule
from tests.conftest import tiny_decoder

VOCAB = 61


def _model(architecture="llama", attn="sdpa", **overrides):
    return tiny_decoder(architecture, VOCAB, attn, **overrides)


def _batch():
    """Three pairs with (prompt, chosen, rejected) lengths (3, 4, 2), (5, 1, 3), (1, 6, 6):
    prompts of different lengths (one of a single token), and a chosen response shorter than
    the rejected one, so both the prompt and the response stages have padding."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for p, c, r in [(3, 4, 2), (5, 1, 3), (1, 6, 6)]:
        ids = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (p, c, r)]
        rows.append(dict(zip(("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), ids)))
    return PreferenceCollator(pad_token_id=0)(rows)


def _loss_and_grads(model, batch, shared, scope="full", chunk_size=None, rejected_grad=True):
    """ORPO-style loss (NLL - mean logsigmoid of the mean log-prob margin) and its gradients."""
    model.zero_grad()
    stats = sequence_stats(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["labels"],
        nll_scope=scope,
        chunk_size=chunk_size,
        rejected_grad=rejected_grad,
        prompt_lengths=batch["prompt_lengths"] if shared else None,
    )
    avg = stats.avg_logps
    b = avg.shape[0] // 2
    loss = stats.nll_sum / stats.nll_count
    if rejected_grad:
        loss = loss - torch.nn.functional.logsigmoid(avg[:b] - avg[b:]).mean()
    loss.backward()
    return stats, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_hidden_states_equal_the_unshared_forward_at_real_positions(architecture, attn):
    model, batch = _model(architecture, attn), _batch()
    args = (batch["input_ids"], batch["attention_mask"])
    unshared, _ = _last_hidden_state(model, *args, output_router_logits=False)
    shared = shared_prompt_hidden(model, *args, batch["prompt_lengths"])
    real = batch["attention_mask"].bool()
    assert shared.shape == unshared.shape
    assert_close(shared[real], unshared[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("scope", ["full", "completion", "completion_seq"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_stats_and_gradients_equal_the_unshared_computation(architecture, scope, chunk_size):
    model, batch = _model(architecture), _batch()
    plain, plain_grads = _loss_and_grads(model, batch, False, scope, chunk_size)
    shared, shared_grads = _loss_and_grads(model, batch, True, scope, chunk_size)
    assert shared.counts.tolist() == plain.counts.tolist() == [4, 1, 6, 2, 3, 6]
    assert_close(shared.logps, plain.logps)
    assert_close(shared.nll_sum / shared.nll_count, plain.nll_sum / plain.nll_count)
    assert_close(shared.logits_sum, plain.logits_sum)
    for name, grad in plain_grads.items():
        assert grad.abs().sum() > 0, name
        assert_close(shared_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_rejected_without_gradient_equals_the_unshared_computation():
    """SFT's setting: the rejected rows are scored, but only the chosen NLL is differentiated."""
    model, batch = _model(), _batch()
    plain, plain_grads = _loss_and_grads(model, batch, False, chunk_size=4, rejected_grad=False)
    shared, shared_grads = _loss_and_grads(model, batch, True, chunk_size=4, rejected_grad=False)
    assert_close(shared.logps, plain.logps)
    for name, grad in plain_grads.items():
        assert_close(shared_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_support_checks():
    llama = _model()
    assert supports_prompt_sharing(llama)
    gpt2 = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("gpt2", vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)
    )
    assert not supports_prompt_sharing(gpt2)  # absolute positions: not a supported family
    windowed = _model("mistral", sliding_window=8)
    assert supports_prompt_sharing(windowed, seq_len=8)
    assert not supports_prompt_sharing(windowed, seq_len=9)  # rows longer than the window
    getattr(llama, "activation_checkpointing_enable", llama.gradient_checkpointing_enable)()
    assert not supports_prompt_sharing(llama)  # the cache is off under checkpointing


def _module(model, prompt_sharing, objective=None):
    return PreferenceModule(
        model,
        objective or ORPO(lam=0.1),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        logits_chunk_size=5,
        prompt_sharing=prompt_sharing,
    )


def test_scoring_flag_selects_the_route_and_keeps_the_loss(monkeypatch):
    calls = []
    original = logps_module.shared_prompt_hidden

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(logps_module, "shared_prompt_hidden", counting)
    batch = _batch()
    for objective in (ORPO(lam=0.1), SFT(lam=0.1)):
        losses = {}
        for flag in (False, "auto", True):
            calls.clear()
            scoring = _module(_model(), flag, objective).scoring
            stats = scoring(_model(), batch, rejected_grad=objective.rejected_grad)
            losses[flag] = stats.nll_sum / stats.nll_count
            assert len(calls) == (0 if flag is False else 1), flag
        assert_close(losses["auto"], losses[False])
        assert_close(losses[True], losses[False])


def test_module_rejects_unsupported_models_and_bad_values():
    gpt2 = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("gpt2", vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)
    )
    with pytest.raises(ValueError, match="prompt_sharing=true, but GPT2LMHeadModel does not"):
        _module(gpt2, True)
    _module(gpt2, "auto")  # falls back silently
    with pytest.raises(ValueError, match="prompt_sharing must be auto, true or false"):
        _module(_model(), "yes")
