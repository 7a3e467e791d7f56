"""``prefopt-export``: checkpoints of every trainable strategy and of a LoRA run become Hugging Face
folders that transformers loads and that generate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from prefopt.cli.export import export, main
from tests.conftest import assert_generates


def _logits(folder: Path, input_ids: torch.Tensor) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.slow
@pytest.mark.parametrize("run", ["ddp_run", "fsdp_run"])
def test_a_strategy_checkpoint_exports_the_trained_model(request, tmp_path, run):
    run_dir = request.getfixturevalue(run)
    out = export(run_dir, tmp_path / "hf")  # the run's checkpoints/last.ckpt (file or shards)
    assert_generates(out)
    ids = torch.tensor([[1, 72, 105, 33, 10]])
    # the last checkpoint holds the final weights: the same as the run's own hf_model
    torch.testing.assert_close(_logits(out, ids), _logits(run_dir / "hf_model", ids))


@pytest.mark.slow
def test_a_lora_checkpoint_exports_merged_or_as_an_adapter(lora_run, tmp_path):
    checkpoint = lora_run / "checkpoints" / "last.ckpt"
    merged = export(checkpoint, tmp_path / "merged")
    adapter = export(checkpoint, tmp_path / "adapter", merge_lora=False)
    assert not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_config.json").exists() and (adapter / "base").is_dir()
    assert_generates(merged)
    assert_generates(adapter)  # transformers loads the base and applies the adapter
    ids = torch.tensor([[1, 72, 105, 33, 10]])
    expected = _logits(lora_run / "hf_model", ids)
    torch.testing.assert_close(_logits(merged, ids), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(adapter, ids), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="has deepspeed")
def test_a_deepspeed_checkpoint_without_deepspeed_fails_in_one_line(tmp_path, capsys):
    folder = tmp_path / "last.ckpt"  # the layout Lightning's DeepSpeedStrategy writes
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    (tmp_path / "config_resolved.yaml").write_text("model: {tokenizer: builtin}\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"prefopt-export: error: {folder} is a DeepSpeed checkpoint: consolidating it needs "
        "deepspeed (pip install 'prefopt[deepspeed]')"
    )
