"""Callbacks: the reference precompute and the dropped-row counts (generations and their
evaluators are ``prefopt.evaluation``).

They hold what used to make the training module reach back into the data: each reads the data
module through its public methods (``predict_dataloader``, ``set_reference_logps``, ``skipped``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from torch import Tensor

from prefopt.models.reference import PrecomputedReference, score_pairs
from prefopt.models.reference_cache import model_description, reference_cache_key, weights_digest

log = logging.getLogger(__name__)


class PrecomputeReference(L.Callback):
    """Score every train and eval pair once with the initial policy, before training, and store
    the values with the data (``set_reference_logps``), for ``module.reference=precomputed``.

    The values are kept in this callback's checkpoint state, so a resumed run restores them
    instead of scoring the (now trained) policy. They follow the objective's ``reduction``
    (summed for DPO, per-token means for a ``mean`` objective). Does nothing unless the module's
    objective needs a reference and its provider is :class:`PrecomputedReference`. The work is
    done when training starts (after a resumed run's state is restored, whatever the strategy)
    or at the first validation before it (a validation at step 0, a sanity check).

    With the provider's cache (``module.reference_cache_dir``), each split's values are looked up
    on disk first and written there after scoring (``prefopt.models.reference_cache``): a second
    run on the same weights, data and settings scores nothing. Every rank hashes and looks up;
    the cache is used only if every rank finds the file, and rank 0 writes it.
    """

    def __init__(self) -> None:
        self.logps: dict[str, tuple[Tensor, Tensor]] | None = None
        self._given_to: int | None = None  # id() of the data module that has the columns

    def _ensure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(getattr(pl_module, "reference", None), PrecomputedReference):
            return
        datamodule = trainer.datamodule
        if self.logps is None:  # neither scored yet nor restored from a checkpoint
            started = time.perf_counter()
            keys = _cache_keys(trainer, pl_module)
            self.logps = {s: self._split(trainer, pl_module, s, key) for s, key in keys.items()}
            pairs = sum(len(chosen) for chosen, _ in self.logps.values())
            log.info(
                "reference log-probs: %d pairs in %.2f s", pairs, time.perf_counter() - started
            )
        if self._given_to != id(datamodule):
            for split, (chosen, rejected) in self.logps.items():
                datamodule.set_reference_logps(split, chosen.tolist(), rejected.tolist())
            self._given_to = id(datamodule)

    def _split(
        self, trainer: L.Trainer, pl_module: L.LightningModule, split: str, key: str | None
    ) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs of ``split``: from the cache, else scored."""
        cache, datamodule = pl_module.reference.cache, trainer.datamodule
        num_pairs = len(getattr(datamodule, f"{split}_dataset"))
        cached = cache.load(key, num_pairs) if key is not None else None
        if trainer.strategy.reduce_boolean_decision(cached is not None, all=True):
            log.info("reference log-probs of the %s split: cached in %s", split, cache.path(key))
            return cached
        values = score_pairs(
            pl_module.model,
            datamodule.predict_dataloader(split),
            pl_module.scoring,
            pl_module.objective.reduction,
            pl_module.device,
        )
        if key is not None and trainer.is_global_zero:
            cache.save(key, *values, {"split": split, "pairs": num_pairs})
        return values

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"logps": self.logps} if self.logps is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.logps = state_dict.get("logps")
        self._given_to = None


def _cache_keys(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str | None]:
    """``{split: cache key}`` for every split (keys ``None``: no cache, or weights that cannot
    be hashed here). Hashes the weights once, on every rank (sharded ones are gathered)."""
    splits = trainer.datamodule.splits()
    if pl_module.reference.cache is None:
        return dict.fromkeys(splits)
    weights = weights_digest(pl_module.model)
    if weights is None:
        log.info("reference log-prob cache skipped: the weights are partitioned or on meta")
        return dict.fromkeys(splits)
    scoring = pl_module.scoring
    settings = {
        "reduction": pl_module.objective.reduction,
        "chunk_size": scoring.chunk_size,
        "vocab_chunk_size": scoring.vocab_chunk_size,
        "prompt_sharing": scoring.prompt_sharing,
        "score_chunk": getattr(scoring.score_chunk, "__qualname__", None),
        "precision": str(trainer.precision),
        "param_dtype": str(getattr(trainer.strategy, "param_dtype", None)),
        "device": pl_module.device.type,
        "torch": torch.__version__,
    }
    config = model_description(pl_module.model)
    fingerprint = trainer.datamodule.fingerprint
    return {s: reference_cache_key(weights, config, fingerprint(s), settings) for s in splits}


class SkippedRows(L.Callback):
    """Log the data module's dropped-row counts once, as ``data/skipped/<split>/<reason>``."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        skipped = getattr(trainer.datamodule, "skipped", None) or {}
        counts = {
            f"data/skipped/{split}/{reason}": float(n)
            for split, reasons in skipped.items()
            for reason, n in reasons.items()
        }
        for logger in trainer.loggers if counts else ():
            logger.log_metrics(counts, step=0)
