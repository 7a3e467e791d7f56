"""Checks of a composed config, run before any model or data is loaded (one line each)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator

from omegaconf import DictConfig, OmegaConf

from prefopt.errors import ConfigError
from prefopt.models.logps import NLL_SCOPES
from prefopt.models.packed import PACKING_ATTENTION, VARLEN_SDPA
from prefopt.models.peft import check_4bit_support
from prefopt.models.reference import REFERENCE_SOURCES
from prefopt.objectives import Objective

# What a config from a run folder (prefopt-export) may instantiate.
TRUSTED_TARGET_PREFIXES = ("prefopt.", "torch.", "transformers.", "peft.", "lightning.")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_values(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a value outside its range."""
    lr = cfg.optimizer.get("lr")
    if not _number(lr) or lr <= 0:
        raise ConfigError(
            f"optimizer.lr={lr!r} must be a finite number > 0 (e.g. 1e-3 tiny, 5e-6 7B)"
        )
    data = cfg.data
    for key in ("batch_size", "eval_batch_size"):
        value = data.get(key)
        if value is None and key == "eval_batch_size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"data.{key}={value!r} must be a whole number of pairs >= 1")
    steps = cfg.trainer.get("max_steps")
    if steps is not None and (not isinstance(steps, int) or steps == 0 or steps < -1):
        raise ConfigError(f"trainer.max_steps={steps!r} must be >= 1 (or -1: use max_epochs)")
    for key in ("flush_denormal", "validate_before_training", "save_hf_model"):
        value = cfg.get(key, True)
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None and (not _number(clip) or clip < 0):
        raise ConfigError(f"trainer.gradient_clip_val={clip!r} must be a finite number >= 0")


def check_config(cfg: DictConfig, objective: Objective) -> None:
    """Raise :class:`ConfigError` for the first impossible value or combination found."""
    check_values(cfg)
    data = cfg.data
    if data.get("max_prompt_length") is not None and data.max_prompt_length >= data.max_length:
        raise ConfigError(
            f"data.max_prompt_length ({data.max_prompt_length}) must be smaller than "
            f"data.max_length ({data.max_length}): no room would be left for the response"
        )
    nll_scope = cfg.module.get("nll_scope")
    if nll_scope not in NLL_SCOPES:
        raise ConfigError(f"module.nll_scope={nll_scope!r} is not one of: {', '.join(NLL_SCOPES)}")
    reference = cfg.module.get("reference")
    if objective.needs_reference and reference not in REFERENCE_SOURCES:
        raise ConfigError(
            f"objective {objective.name!r} needs a reference but module.reference={reference!r}; "
            f"use one of: {', '.join(REFERENCE_SOURCES)}"
        )
    if cfg.trainer.get("use_distributed_sampler", False):
        raise ConfigError(
            "trainer.use_distributed_sampler must be false: the datamodule shards the data itself "
            "(so that every arm and every world size sees the same global batches)"
        )
    check_packing_config(cfg)
    check_peft_config(cfg)
    check_strategy_config(cfg)
    check_evaluation_config(cfg)


def check_packing_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for ``data.packing=true`` with a setting it cannot honour (the
    model family is checked once the model is loaded: ``prefopt.models.packed``)."""
    if not cfg.data.get("packing", False):
        return
    module = cfg.get("module") or {}
    if module.get("prompt_sharing") is True:
        raise ConfigError(
            "data.packing=true and module.prompt_sharing=true do not combine (packed rows hold "
            "each prompt per response): set module.prompt_sharing=auto or false"
        )
    if (module.get("router_aux_loss_coef") or 0) > 0:
        raise ConfigError(
            "data.packing=true does not support module.router_aux_loss_coef > 0 (the MoE router "
            "loss of packed rows is not the unpacked one): set data.packing=false"
        )
    attention = cfg.model.get("attn_implementation")
    if attention is not None and attention not in PACKING_ATTENTION:
        raise ConfigError(
            f"data.packing=true cannot keep packed sequences apart with model.attn_implementation="
            f"{attention}: use {', '.join(a for a in PACKING_ATTENTION if a != VARLEN_SDPA)}"
        )


def check_peft_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` if ``cfg.peft`` cannot run here."""
    if not cfg.get("peft"):
        return
    if importlib.util.find_spec("peft") is None:
        raise ConfigError("peft adapters need the peft package: pip install 'prefopt[peft]'")
    if cfg.model.get("quantization"):
        check_4bit_support()


def check_strategy_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` if ``cfg.strategy`` cannot run here."""
    target = str((cfg.get("strategy") or {}).get("_target_", ""))
    if target.endswith("DeepSpeedStrategy") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "the DeepSpeed strategies need deepspeed, which is not installed: "
            "pip install 'prefopt[deepspeed]' (CUDA GPUs only)"
        )


def check_evaluation_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` if the best checkpoint watches a ``val/gen/`` metric that some
    validations will not log (the evaluator is not selected, or evaluation skips validations)."""
    monitor = str(OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor", default="") or "")
    if not monitor.startswith("val/gen/"):
        return
    evaluation = cfg.get("evaluation") or {}
    key = monitor.split("/")[2]
    if key not in evaluation:
        raise ConfigError(
            f"callbacks.model_checkpoint.monitor={monitor!r}, but {key!r} is not among the "
            f"selected evaluators: add it (evaluation=[...,{key}]) or monitor another metric"
        )
    if evaluation.get("every_n_val") != 1:
        raise ConfigError(
            f"callbacks.model_checkpoint.monitor={monitor!r} needs evaluation.every_n_val=1 "
            f"(it is {evaluation.get('every_n_val')}): a validation without evaluation logs no "
            "val/gen/ metric"
        )


def _targets(node: object, path: str) -> Iterator[tuple[str, object]]:
    """``(key path, target)`` of every ``_target_`` in a plain dict/list tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield path, value
            else:
                yield from _targets(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _targets(item, f"{path}[{i}]")


def check_trusted_targets(node: DictConfig | None, source: str) -> None:
    """Refuse a config node that would instantiate anything but prefopt's, torch's,
    transformers', peft's or lightning's own classes and functions (a run folder's config is
    data, not code: a ``_target_: os.system`` there must not run).

    Raises:
        ConfigError: naming the key and the target.
    """
    if node is None:
        return
    tree = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    for path, target in _targets(tree, source):
        if not isinstance(target, str) or not target.startswith(TRUSTED_TARGET_PREFIXES):
            raise ConfigError(
                f"{path}._target_={target!r} is not allowed: a run folder's config may only name "
                f"{', '.join(p.rstrip('.') for p in TRUSTED_TARGET_PREFIXES)} classes"
            )
