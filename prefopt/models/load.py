"""Build the causal LM: a tiny random one from a config (offline default) or a pretrained one,
optionally 4-bit and with LoRA adapters, and the surgery training needs (dropout off,
activation checkpointing) — all where the model is built, so the training module only trains."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from prefopt.errors import ConfigError, DataError, DataNotFoundError, brief

log = logging.getLogger(__name__)

TINY_ARCHITECTURES = ("llama", "qwen2", "mistral")


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    architecture: str = "llama",
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int = 384,
    max_position_embeddings: int = 1024,
    tie_word_embeddings: bool = True,
    **config_overrides: Any,
) -> PreTrainedModel:
    """A randomly initialised Llama/Qwen2/Mistral-architecture model sized to ``tokenizer``.

    The vocabulary is ``len(tokenizer)`` (special tokens included), so any tokenizer works: the
    built-in byte-level one or a local folder such as Phi-3's. Initialisation uses the global
    torch RNG: call ``lightning.seed_everything`` first for a reproducible model.

    Raises:
        ValueError: for an architecture outside ``TINY_ARCHITECTURES``.
    """
    if architecture not in TINY_ARCHITECTURES:
        raise ConfigError(
            f"model.tiny.architecture={architecture!r} is unknown; "
            f"available: {', '.join(TINY_ARCHITECTURES)}"
        )
    config = AutoConfig.for_model(
        architecture,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config_overrides,
    )
    model = AutoModelForCausalLM.from_config(config)
    log.info(
        "built tiny %s model: %.2fM parameters, vocabulary %d",
        architecture,
        sum(p.numel() for p in model.parameters()) / 1e6,
        config.vocab_size,
    )
    return model


def load_pretrained_model(
    name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    torch_dtype: str | None = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    **from_pretrained_kwargs: Any,
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` (a Hub name or a local folder).

    Extra keyword arguments (e.g. ``quantization_config``) go to ``from_pretrained``. The
    embeddings are never resized: a tokenizer with more tokens than the model has rows is an
    error (see :func:`check_vocabulary`).

    Raises:
        DataNotFoundError: no such folder, or a name neither in the cache nor on the Hub.
        DataError: a folder transformers cannot load as a causal LM.
    """
    dtype = getattr(torch, torch_dtype) if torch_dtype not in (None, "auto") else torch_dtype
    local = name_or_path.startswith(("/", "./", "../", "~")) or Path(name_or_path).exists()
    if local and not Path(name_or_path).expanduser().is_dir():
        raise DataNotFoundError(f"model.name_or_path={name_or_path}: no such model folder")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            revision=revision,
            **from_pretrained_kwargs,
        )
    except OSError as err:
        where = "" if local else ", not in the Hugging Face cache, and the Hub did not provide it"
        raise DataNotFoundError(
            f"model.name_or_path={name_or_path}: cannot load the model{where} ({brief(err)})"
        ) from err
    except ValueError as err:
        raise DataError(f"model.name_or_path={name_or_path}: {brief(err, 300)}") from err
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def check_vocabulary(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embeddings; warn about one far smaller
    than the model's vocabulary (most likely not the model's own tokenizer).

    Raises:
        ConfigError: ``len(tokenizer)`` exceeds the number of embedding rows.
    """
    rows = model.get_input_embeddings().num_embeddings
    name = getattr(tokenizer, "name_or_path", "") or "builtin"
    if len(tokenizer) > rows:
        raise ConfigError(
            f"the tokenizer ({name}) has {len(tokenizer)} tokens but the model's embeddings have "
            f"{rows} rows, so ids {rows}..{len(tokenizer) - 1} index past them: use the model's "
            "own tokenizer (model.tokenizer=null) or one made for this model"
        )
    if len(tokenizer) < rows // 2:
        log.warning(
            "the tokenizer (%s) has %d tokens but the model's vocabulary %d: is it the model's "
            "own tokenizer? (model.tokenizer=null uses model.name_or_path's)",
            name,
            len(tokenizer),
            rows,
        )


def load_model(
    tokenizer: PreTrainedTokenizerBase,
    name_or_path: str | None = None,
    tiny: dict[str, Any] | None = None,
    quantization: dict[str, Any] | None = None,
    peft: Callable[[nn.Module], nn.Module] | None = None,
    disable_dropout: bool = True,
    gradient_checkpointing: bool = False,
    **pretrained_kwargs: Any,
) -> nn.Module:
    """The model a ``configs/model/*.yaml`` describes, ready to train.

    Args:
        tokenizer: the run's tokenizer (sizes the tiny model's vocabulary).
        name_or_path: a Hub name or local folder; ``None`` builds the tiny model.
        tiny: keyword arguments of :func:`build_tiny_model` (used when ``name_or_path`` is None).
        quantization: load the pretrained weights in 4 bits (QLoRA; ``peft=qlora`` sets it):
            ``quant_type``, ``double_quant``, ``compute_dtype`` (see
            :func:`prefopt.models.peft.quantization_config`).
        peft: wraps the loaded model with adapters (``configs/peft/*.yaml``), or ``None``.
        disable_dropout: zero every dropout probability, adapters' included (as TRL does).
        gradient_checkpointing: recompute decoder activations in backward.
        **pretrained_kwargs: keyword arguments of :func:`load_pretrained_model`.
    """
    if quantization:
        from prefopt.models.peft import quantization_config

        if name_or_path is None:
            raise ConfigError("peft=qlora quantizes a pretrained model: set model.name_or_path")
        pretrained_kwargs["quantization_config"] = quantization_config(**quantization)
    if name_or_path is None:
        model = build_tiny_model(tokenizer, **(tiny or {}))
    else:
        model = load_pretrained_model(name_or_path, tokenizer, **pretrained_kwargs)
        check_vocabulary(model, tokenizer)
    if peft is not None:
        model = peft(model)
    if disable_dropout:
        _disable_dropout(model)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model


def _disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (modules and attention-dropout attributes)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in backward (non-reentrant), with
    transformers' ``activation_checkpointing_enable`` (5.x) or ``gradient_checkpointing_enable``."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
