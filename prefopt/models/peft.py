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
from torch import nn
from transformers import PreTrainedModel

from prefopt.errors import ConfigError

log = logging.getLogger(__name__)


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
        model: a Hugging Face causal LM (optionally 4-bit: ``model.quantization``).
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


def quantization_config(
    quant_type: str = "nf4", double_quant: bool = True, compute_dtype: str = "bfloat16"
) -> Any:
    """QLoRA's 4-bit weights (NF4 + double quantization) as a ``BitsAndBytesConfig``.

    Raises:
        ConfigError: without CUDA or bitsandbytes.
    """
    check_4bit_support()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )
