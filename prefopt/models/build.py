"""The run's policy and tokenizer, built from the ``model`` and ``peft`` config nodes.

One function for every place that needs the model of a config: ``prefopt-train`` at the start
(and again on rank 0 to gather a sharded model at the end) and ``prefopt-export`` when it rebuilds
a run's model from its ``config_resolved.yaml``.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from transformers import PreTrainedTokenizerBase

from prefopt.data.tokenizer import load_tokenizer
from prefopt.errors import UserError


def tokenizer_name(model_cfg: DictConfig) -> str:
    """The tokenizer a model config means: ``model.tokenizer`` if set, else the pretrained
    model's own (``model.name_or_path``), else the built-in byte-level one (tiny model)."""
    return model_cfg.get("tokenizer") or model_cfg.get("name_or_path") or "builtin"


def build_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of :func:`tokenizer_name`, loaded.

    Raises:
        UserError: as :func:`prefopt.data.tokenizer.load_tokenizer`, the message prefixed with
            the config key that named the tokenizer.
    """
    name = tokenizer_name(model_cfg)
    try:
        return load_tokenizer(name)
    except UserError as err:
        key = "model.tokenizer" if model_cfg.get("tokenizer") else "model.name_or_path"
        raise type(err)(f"{key}: {err}") from err


def build_model(
    model_cfg: DictConfig,
    peft_cfg: DictConfig | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` as the config says: loaded (tiny, pretrained, 4-bit), wrapped with
    adapters if ``peft_cfg``, with the model surgery of :func:`prefopt.models.load.load_model`.

    Args:
        model_cfg: the ``model`` node (``_target_: prefopt.models.load_model``).
        peft_cfg: the ``peft`` node (a ``_partial_`` adapter wrapper), or ``None``.
        tokenizer: the tokenizer, if already loaded (else :func:`build_tokenizer`).
    """
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(model_cfg)
    peft = instantiate(peft_cfg) if peft_cfg else None
    model = instantiate(model_cfg, tokenizer=tokenizer, peft=peft)
    return model, tokenizer
