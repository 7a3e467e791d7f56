"""Checks of a composed config that must fail before any model or data is loaded."""

from __future__ import annotations

from omegaconf import DictConfig

from prefopt.models.logps import NLL_SCOPES
from prefopt.module import REFERENCE_SOURCES
from prefopt.objectives import Objective


class ConfigError(ValueError):
    """An impossible combination of config values (one line, printed without a traceback)."""


def check_config(cfg: DictConfig, objective: Objective) -> None:
    """Raise :class:`ConfigError` for the first impossible combination found."""
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
