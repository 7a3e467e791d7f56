"""Shared fixtures: compose the real configs/train.yaml with Hydra's compose API."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SHARED = ROOT.parent / "shared"
# prefopt's on-disk caches (the reference log-probs) go to a folder of this test session, never
# to the user's ~/.cache/prefopt (inherited by the runs the tests start in subprocesses)
os.environ["PREFOPT_CACHE"] = tempfile.mkdtemp(prefix="prefopt-test-cache-")

# A few seconds per run: a 1-layer tiny model, a handful of pairs and steps.
FAST = [
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "data.builtin.train_size=48",
    "data.builtin.eval_size=16",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=1",
    "model.tiny.intermediate_size=64",
    "callbacks.progress_bar.every_n_steps=0",  # no progress records (and no bar: not a terminal)
    "evaluation.num_prompts=4",
    "evaluation.max_new_tokens=8",
]


def compose_train(output_dir: Path, overrides: list[str] = (), fast: bool = True) -> DictConfig:
    """The composed run config, writing to ``output_dir``."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[*(FAST if fast else []), *overrides, f"paths.output_dir={output_dir}"],
        )


def assert_generates(folder: Path, new_tokens: int = 4) -> None:
    """The folder loads with transformers (model + tokenizer with its chat template) and greedily
    generates ``new_tokens`` tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is 12 odd or even?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(
        **prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
    )
    assert out.shape[1] == prompt["input_ids"].shape[1] + new_tokens


@pytest.fixture
def make_cfg(tmp_path):
    def make(*overrides: str, fast: bool = True) -> DictConfig:
        return compose_train(tmp_path / "run", list(overrides), fast=fast)

    return make


def tiny_decoder(architecture: str = "llama", vocab_size: int = 61, attn: str = "sdpa", **kw):
    """A 2-layer, 32-wide decoder of ``architecture`` (Llama, Qwen2, Mistral) with grouped-query
    attention (4 heads, 2 key/value heads), untied embeddings, seeded weights, in eval mode."""
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        architecture,
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
        **kw,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn).eval()
