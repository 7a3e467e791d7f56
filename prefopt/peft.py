"""LoRA and QLoRA adapters through ``peft``, from ``configs/peft/{lora,qlora}.yaml``.

``peft=lora`` wraps the loaded model with trainable low-rank adapters (the base weights stay
frozen); with DPO and ``module.reference=model`` the reference is the same model with its
adapters disabled, so no second copy is held. ``peft=qlora`` also loads the pretrained model in
4-bit NF4 (bitsandbytes), which needs a CUDA GPU: elsewhere it stops with one line before
anything is loaded.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prefopt.config import ConfigError
from prefopt.models.load import load_pretrained_model

log = logging.getLogger(__name__)


def check_peft_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` before anything loads if ``cfg.peft`` cannot run here."""
    if not cfg.get("peft"):
        return
    if importlib.util.find_spec("peft") is None:
        raise ConfigError("peft adapters need the peft package: pip install 'prefopt[peft]'")
    if cfg.model.get("quantization"):
        check_4bit_support()


def check_4bit_support() -> None:
    """Raise :class:`ConfigError` unless 4-bit weights can be used (CUDA and bitsandbytes)."""
    if not torch.cuda.is_available():
        raise ConfigError(
            "peft=qlora loads 4-bit weights with bitsandbytes, which needs a CUDA GPU, and none "
            "is available here; use peft=lora (same adapters, unquantized base model)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("peft=qlora needs bitsandbytes: pip install bitsandbytes")


def apply_lora(
    model: PreTrainedModel,
    r: int = 16,
    alpha: float = 32,
    dropout: float = 0.05,
    target_modules: str | Sequence[str] = "all-linear",
    bias: str = "none",
    modules_to_save: Sequence[str] | None = None,
) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (``peft.get_peft_model``); only they are trainable.

    Args:
        model: a Hugging Face causal LM (optionally 4-bit, from :func:`load_quantized_model`).
        r: adapter rank.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter input (``module.disable_dropout`` also zeroes it).
        target_modules: module names to adapt, or ``all-linear`` (every linear layer but the
            LM head).
        bias: ``none``, ``all`` or ``lora_only`` biases trained.
        modules_to_save: modules trained in full besides the adapters (e.g. ``[lm_head]``).

    Returns:
        The ``peft.PeftModel``.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        bias=bias,
        modules_to_save=list(modules_to_save) if modules_to_save else None,
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info(
        "LoRA r=%d: %d of %d parameters trainable (%.2f%%)",
        r,
        trainable,
        total,
        100 * trainable / total,
    )
    return peft_model


def load_quantized_model(
    tokenizer: PreTrainedTokenizerBase,
    name_or_path: str | None = None,
    quantization: dict[str, Any] | None = None,
    torch_dtype: str | None = "bfloat16",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    tiny: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """A pretrained causal LM with 4-bit weights (QLoRA's NF4 + double quantization).

    Args:
        tokenizer: the run's tokenizer (embeddings grow if it has more tokens).
        name_or_path: a Hub name or a local folder (the tiny model cannot be quantized).
        quantization: ``quant_type`` (nf4), ``double_quant`` (true), ``compute_dtype``.
        torch_dtype: dtype of the unquantized modules.
        attn_implementation, trust_remote_code, revision: as ``from_pretrained``.
        tiny: ignored (present in ``model=tiny``); a ``name_or_path`` is required.

    Raises:
        ConfigError: without CUDA or bitsandbytes, or without a pretrained model.
    """
    check_4bit_support()
    if name_or_path is None:
        raise ConfigError("peft=qlora quantizes a pretrained model: set model.name_or_path")
    from transformers import BitsAndBytesConfig

    options = dict(quantization or {})
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=options.get("quant_type", "nf4"),
        bnb_4bit_use_double_quant=options.get("double_quant", True),
        bnb_4bit_compute_dtype=getattr(torch, options.get("compute_dtype", "bfloat16")),
    )
    return load_pretrained_model(
        name_or_path,
        tokenizer,
        torch_dtype=torch_dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        revision=revision,
        quantization_config=config,
    )
