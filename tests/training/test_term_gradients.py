"""Where each term pulls: per-term gradient norms and their cosine, checked against gradients
taken term by term, and logged every N steps without changing the training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoConfig, AutoModelForCausalLM

from prefopt.cli.train import train
from prefopt.data.collate import PreferenceCollator
from prefopt.models.logps import Scoring
from prefopt.objectives import get_objective
from prefopt.training import batch_loss
from prefopt.training.term_gradients import term_gradient_stats

VOCAB = 53


@pytest.fixture
def model():
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return AutoModelForCausalLM.from_config(config)


def _batch():
    g = torch.Generator().manual_seed(3)
    rows = [
        {k: torch.randint(1, VOCAB, (n,), generator=g).tolist() for k, n in zip(keys, lengths)}
        for keys, lengths in [
            (("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), (4, 3, 5)),
            (("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), (2, 6, 2)),
        ]
    ]
    return PreferenceCollator(pad_token_id=0)(rows)


def _flat_grad(model, value):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
    )


def test_orpo_term_norms_and_cosine_equal_the_gradients_of_each_term(model):
    orpo, batch, scoring = get_objective("orpo", lam=0.5), _batch(), Scoring(chunk_size=4)
    stats = term_gradient_stats(model, orpo, batch, scoring)
    out = batch_loss(model, orpo, batch, scoring)  # the fused head: one backward per graph
    # gradients of each term, taken one at a time on fresh graphs
    g_nll = _flat_grad(model, batch_loss(model, orpo, batch, scoring).terms["nll"])
    g_or = _flat_grad(model, batch_loss(model, orpo, batch, scoring).terms["odds_ratio"])
    assert set(stats) == {"grad_norm/nll", "grad_norm/odds_ratio", "grad_cosine/nll~odds_ratio"}
    torch.testing.assert_close(stats["grad_norm/nll"], g_nll.norm(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stats["grad_norm/odds_ratio"], g_or.norm(), rtol=1e-4, atol=1e-6)
    cosine = torch.nn.functional.cosine_similarity(g_nll, g_or, dim=0)
    torch.testing.assert_close(stats["grad_cosine/nll~odds_ratio"], cosine, rtol=1e-4, atol=1e-6)
    # the two terms sum to the loss, and the odds-ratio pull grows with lam
    torch.testing.assert_close(out.terms["nll"] + out.terms["odds_ratio"], out.loss)
    weaker = term_gradient_stats(model, get_objective("orpo", lam=0.1), batch, scoring)
    torch.testing.assert_close(weaker["grad_norm/odds_ratio"] * 5, stats["grad_norm/odds_ratio"])
    assert all(p.grad is None for p in model.parameters())  # .grad untouched


def test_single_term_objectives_have_nothing_to_compare(model):
    assert term_gradient_stats(model, get_objective("sft"), _batch(), Scoring()) == {}


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_a_run_logs_them_every_n_steps_and_trains_the_same(make_cfg, tmp_path):
    from tests.conftest import compose_train

    with_stats = train(make_cfg("module.log_term_grad_norms_every=2"))
    plain = train(compose_train(tmp_path / "plain", []))
    assert with_stats == plain  # the extra passes change nothing the run computes
    scalars = _scalars(tmp_path / "run")
    assert [step for step, _ in scalars["train/grad_norm/nll"]] == [0, 2]
    assert all(value > 0 for _, value in scalars["train/grad_norm/odds_ratio"])
    assert -1 <= scalars["train/grad_cosine/nll~odds_ratio"][0][1] <= 1
