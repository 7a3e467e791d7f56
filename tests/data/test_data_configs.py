"""Every ``configs/data/*.yaml`` composes with Hydra and builds a working datamodule.

The Hub configs run on tiny in-memory stand-ins with the real datasets' columns (no network):
the test checks the split names each config asks for and how each layout is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import prefopt.data.sources as sources
from prefopt.data import PreferenceDataModule

CONFIGS = Path(__file__).parents[2] / "configs"


def _conv(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _hub_rows(path: str, n: int) -> dict[str, list]:
    q = [f"Is {i} odd?" for i in range(n)]
    good, bad = [f"{i} is {'odd' if i % 2 else 'even'}." for i in range(n)], ["Maybe."] * n
    if path == "Anthropic/hh-rlhf":
        return {
            "chosen": [f"\n\nHuman: {x}\n\nAssistant: {y}" for x, y in zip(q, good)],
            "rejected": [f"\n\nHuman: {x}\n\nAssistant: {y}" for x, y in zip(q, bad)],
        }
    if path == "Intel/orca_dpo_pairs":
        return {"system": ["Be brief."] * n, "question": q, "chosen": good, "rejected": bad}
    rows = {"chosen": list(map(_conv, q, good)), "rejected": list(map(_conv, q, bad))}
    if path == "HuggingFaceH4/ultrafeedback_binarized":
        rows |= {
            "prompt": q,
            "prompt_id": ["x"] * n,
            "messages": rows["chosen"],
            "score_chosen": [9.0] * n,
        }
    if path == "argilla/dpo-mix-7k":
        rows |= {"dataset": ["capybara"] * n, "chosen_rating": [5.0] * n}
    return rows


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(overrides=[f"+data={name}", "+seed=0", *overrides]).data


def test_every_data_config_is_tested():
    assert {p.stem for p in (CONFIGS / "data").glob("*.yaml")} == {
        "builtin",
        "local_jsonl",
        *(c[0] for c in HUB_CASES),
    }


def test_builtin_default(builtin_tokenizer):
    cfg = _compose("builtin", "data.builtin.train_size=64", "data.builtin.eval_size=8")
    assert cfg.format == "conversational" and cfg.group_by_length
    dm = instantiate(cfg, tokenizer=builtin_tokenizer)
    assert isinstance(dm, PreferenceDataModule)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * 16
    assert (len(dm.train_dataset), len(dm.eval_dataset)) == (64, 8)


def test_local_jsonl(builtin_tokenizer, fixtures, cache_dir):
    path = fixtures / "conversational_implicit.jsonl"
    cfg = _compose("local_jsonl", f"data.path={path}", "data.eval_fraction=0.5")
    dm = instantiate(cfg, tokenizer=builtin_tokenizer, cache_dir=cache_dir)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.eval_dataset)) == (1, 1)


HUB_CASES = [
    (
        "ultrafeedback",
        "trl-lib/ultrafeedback_binarized",
        ["train", "test"],
        "<s><|user|>Is 1 odd?<|end|><|assistant|>",
        "1 is odd.</s>",
    ),
    (
        "ultrafeedback_h4",
        "HuggingFaceH4/ultrafeedback_binarized",
        ["train_prefs", "test_prefs"],
        "<s><|user|>Is 1 odd?<|end|><|assistant|>",
        "1 is odd.</s>",
    ),
    (
        "hh_rlhf",
        "Anthropic/hh-rlhf",
        ["train", "test"],
        "<s>\n\nHuman: Is 1 odd?\n\nAssistant:",
        " 1 is odd.</s>",
    ),
    (
        "orca_dpo_pairs",
        "Intel/orca_dpo_pairs",
        ["train"],
        "<s><|system|>Be brief.<|end|><|user|>Is 1 odd?<|end|><|assistant|>",
        "1 is odd.</s>",
    ),
    (
        "dpo_mix_7k",
        "argilla/dpo-mix-7k",
        ["train", "test"],
        "<s><|user|>Is 1 odd?<|end|><|assistant|>",
        "1 is odd.</s>",
    ),
]


@pytest.mark.parametrize(("config", "hub_name", "splits", "prompt", "chosen"), HUB_CASES)
def test_hub_config(config, hub_name, splits, prompt, chosen, builtin_tokenizer, monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, cache_dir=None):
        calls.append((path, split))
        return Dataset.from_dict(_hub_rows(path, 40))

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load_dataset)
    cfg = _compose(config)
    assert cfg.path == hub_name
    dm = instantiate(cfg, tokenizer=builtin_tokenizer, max_train_samples=None)
    dm.setup()
    assert calls == [(hub_name, split) for split in splits]
    assert dm.skipped["train"] == {}
    assert len(dm.eval_dataset) == (2 if config == "orca_dpo_pairs" else 40)
    rows = {builtin_tokenizer.decode(r["prompt_input_ids"]): r for r in dm.train_dataset}
    assert builtin_tokenizer.decode(rows[prompt]["chosen_input_ids"]) == chosen
