"""Strategies: 2-process DDP and FSDP2 (gloo, CPU) log the same metrics as one process on the same
global batches; GPU-only strategies (FSDP1, DeepSpeed) compose and instantiate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from torch.distributed.checkpoint import FileSystemReader

from prefopt.cli.train import train
from prefopt.data import build_builtin_tokenizer
from prefopt.errors import ConfigError
from prefopt.models import build_tiny_model
from prefopt.training.strategies import FSDP1Strategy, FSDP2Strategy, _publish, decoder_layers
from tests.conftest import compose_train
from tests.distributed.helpers import assert_same_metrics

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


@pytest.mark.slow
def test_ddp_two_processes_log_the_global_metrics_of_one_process(single_run, ddp_run):
    assert_same_metrics(single_run, ddp_run)
    assert (ddp_run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_matches_one_process_for_the_completion_nll_scopes(scope_runs):
    """Token-pooled over ranks (completion) and per-sequence means (completion_seq)."""
    single, ddp = scope_runs
    assert_same_metrics(single, ddp)


@pytest.mark.slow
def test_fsdp2_two_processes_log_the_global_metrics_of_one_process(single_run, fsdp_run):
    assert_same_metrics(single_run, fsdp_run)
    last = fsdp_run / "checkpoints" / "last.ckpt"
    # a sharded checkpoint: one file per rank, published through a symlink
    assert last.is_symlink() and len(list(last.glob("*.distcp"))) == 2
    # the policy and the DPO reference model are both sharded over the two ranks
    stored = FileSystemReader(last).read_metadata().state_dict_metadata
    for prefix in ("state_dict.model.", "state_dict.reference.model."):
        shards = [len(m.chunks) for k, m in stored.items() if k.startswith(prefix)]
        assert shards and set(shards) == {2}, prefix
    assert (fsdp_run / "hf_model" / "model.safetensors").is_file()  # gathered at the end


def test_decoder_layers_are_found_from_no_split_modules():
    model = build_tiny_model(build_builtin_tokenizer(), hidden_size=16, num_layers=3, num_heads=2)
    layers = decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 3
    assert layers == list(model.model.layers)
    with pytest.raises(ValueError, match="found no decoder layers to shard in Linear"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_a_save_is_published_atomically_through_the_symlink(tmp_path):
    old, new, stale = (tmp_path / n for n in (".last.ckpt.1", ".last.ckpt.2", ".last.ckpt.0"))
    for folder in (old, new, stale):
        folder.mkdir()
    (tmp_path / "last.ckpt").symlink_to(old.name)
    _publish(tmp_path / "last.ckpt", new)
    assert (tmp_path / "last.ckpt").resolve() == new.resolve()
    assert not old.exists() and not stale.exists()  # the replaced one and a killed save's


def _strategy(tmp_path: Path, name: str, *overrides: str):
    cfg = compose_train(tmp_path, [f"strategy={name}", *overrides])
    return cfg, instantiate(cfg.strategy)


def test_fsdp_config_builds_the_fsdp2_strategy(tmp_path):
    cfg, strategy = _strategy(tmp_path, "fsdp", "strategy.cpu_offload=true")
    assert isinstance(strategy, FSDP2Strategy) and isinstance(strategy, ModelParallelStrategy)
    assert strategy.param_dtype == torch.bfloat16 and strategy.reduce_dtype == torch.float32
    assert strategy.cpu_offload and not strategy.activation_checkpointing


def test_fsdp1_config_builds_lightning_fsdp_and_needs_a_gpu(tmp_path):
    cfg, strategy = _strategy(tmp_path, "fsdp1")
    assert isinstance(strategy, FSDP1Strategy) and isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert cfg.strategy.state_dict_type == "sharded"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fsdp1 .* requires a GPU accelerator; on CPUs use"):
            L.Trainer(accelerator="cpu", strategy=instantiate(cfg.strategy), logger=False)


@pytest.mark.parametrize(
    ("name", "stage", "offload_optimizer", "offload_parameters"),
    [
        ("deepspeed_zero2", 2, False, False),
        ("deepspeed_zero2_offload", 2, True, False),
        ("deepspeed_zero3", 3, False, False),
        ("deepspeed_zero3_offload", 3, True, True),
    ],
)
def test_deepspeed_configs_compose_and_instantiate_or_ask_for_deepspeed(
    tmp_path, name, stage, offload_optimizer, offload_parameters
):
    cfg = compose_train(tmp_path, [f"strategy={name}"])
    assert cfg.strategy._target_ == "lightning.pytorch.strategies.DeepSpeedStrategy"
    assert cfg.strategy.stage == stage
    assert cfg.strategy.offload_optimizer == offload_optimizer
    assert cfg.strategy.offload_parameters == offload_parameters
    if not HAS_DEEPSPEED:
        message = r"need deepspeed, which is not installed: pip install 'prefopt\[deepspeed\]'"
        with pytest.raises(ConfigError, match=message):
            train(cfg)  # stops before loading anything
        with pytest.raises(InstantiationException, match="you must have DeepSpeed installed"):
            instantiate(cfg.strategy)
        return
    strategy = instantiate(cfg.strategy)
    assert isinstance(strategy, DeepSpeedStrategy)
    assert strategy.config["zero_optimization"]["stage"] == stage
