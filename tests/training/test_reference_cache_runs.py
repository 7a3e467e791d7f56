"""The reference pass with its on-disk cache: a second DPO run on the same model and data scores
nothing (counted in model forward calls) and trains identically; other data, other weights,
another max_length or a corrupt file score again."""

from __future__ import annotations

import functools
import logging
import types
from pathlib import Path

import pytest
import torch

from prefopt.cli.train import train
from prefopt.data import PreferenceDataModule, build_builtin_tokenizer
from prefopt.models import build_tiny_model
from prefopt.objectives.dpo import DPO
from prefopt.training import PreferenceModule, callbacks
from prefopt.training.callbacks import PrecomputeReference


@pytest.fixture
def forward_calls(monkeypatch) -> list[int]:
    """Model forward calls made inside the reference pass (``score_pairs``), appended here."""
    calls: list[int] = []
    real = callbacks.score_pairs

    def counting(model, *args, **kwargs):
        hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            return real(model, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(callbacks, "score_pairs", counting)
    return calls


def _reference_state(run: Path) -> dict:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if "PrecomputeReference" in k]
    return state["logps"]


def test_a_second_run_loads_the_reference_and_trains_the_same(make_cfg, tmp_path, forward_calls):
    overrides = ["objective=dpo", f"module.reference_cache_dir={tmp_path / 'cache'}"]
    first = make_cfg(*overrides, "paths.output_dir=" + str(tmp_path / "first"))
    second = make_cfg(*overrides, "paths.output_dir=" + str(tmp_path / "second"))
    first_metrics = train(first)
    scored = len(forward_calls)
    assert scored == 8  # 48 train + 16 eval pairs, 8 per batch: 6 + 2 batches
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one file per split
    forward_calls.clear()
    second_metrics = train(second)
    assert len(forward_calls) < 0.05 * scored and forward_calls == []  # none at all
    assert second_metrics == first_metrics
    cached, computed = (_reference_state(Path(c.paths.output_dir)) for c in (second, first))
    for split in ("train", "eval"):
        assert torch.equal(cached[split][0], computed[split][0])
        assert torch.equal(cached[split][1], computed[split][1])


class _OneProcess:
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision


def _reference_pass(cache_dir: Path, seed: int = 0, **data) -> dict:
    """The callback's pass on a 1-layer model (weights from ``seed``) and the built-in data."""
    tokenizer = build_builtin_tokenizer()
    data = {"builtin": {"train_size": 12, "eval_size": 4}, "max_length": 64, **data}
    datamodule = PreferenceDataModule(tokenizer, max_prompt_length=48, eval_batch_size=4, **data)
    datamodule.setup()
    torch.manual_seed(seed)
    model = build_tiny_model(tokenizer, hidden_size=16, num_layers=1, num_heads=2)
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    module = PreferenceModule(model, DPO(beta=0.1), optimizer, reference_cache_dir=str(cache_dir))
    trainer = types.SimpleNamespace(
        datamodule=datamodule, strategy=_OneProcess(), precision="32-true", is_global_zero=True
    )
    callback = PrecomputeReference()
    callback.on_train_start(trainer, module)
    return callback.logps


def test_another_key_scores_again(tmp_path, forward_calls):
    cache = tmp_path / "cache"
    base = _reference_pass(cache)
    assert len(forward_calls) == 4  # 12 + 4 pairs, 4 per batch
    runs = {
        "same": {},
        "other weights": {"seed": 1},
        "other data": {"builtin": {"train_size": 12, "eval_size": 4, "seed": 5}},
        "other max_length": {"max_length": 60},
        "packed batches": {"packing": True},
    }
    for name, changes in runs.items():
        forward_calls.clear()
        values = _reference_pass(cache, **changes)
        assert len(forward_calls) == (0 if name == "same" else 4), name
        close = torch.allclose(values["train"][0], base["train"][0], rtol=1e-5, atol=1e-5)
        assert close == (name in ("same", "other max_length", "packed batches")), name
    # no pair reaches 60 tokens, and packing changes only the layout: the same values (to float
    # rounding), each in a file of its own
    assert len(list(cache.glob("*.pt"))) == 2 * len(runs)


def test_a_corrupt_cache_file_is_scored_again_and_replaced(tmp_path, forward_calls, caplog):
    cache = tmp_path / "cache"
    base = _reference_pass(cache)
    for path in cache.glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])  # truncated
    forward_calls.clear()
    with caplog.at_level(logging.WARNING, logger="prefopt.models.reference_cache"):
        again = _reference_pass(cache)
    assert len(forward_calls) == 4 and caplog.text.count("ignoring the reference log-prob") == 2
    assert torch.equal(again["train"][0], base["train"][0])
    forward_calls.clear()
    _reference_pass(cache)  # the rewritten files load
    assert forward_calls == []
