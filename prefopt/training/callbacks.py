"""Callbacks: the reference precompute and the dropped-row counts (generations and their
evaluators are ``prefopt.evaluation``).

They hold what used to make the training module reach back into the data: each reads the data
module through its public methods (``predict_dataloader``, ``set_reference_logps``, ``skipped``).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch import Tensor

from prefopt.models.reference import PrecomputedReference, score_pairs

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
    """

    def __init__(self) -> None:
        self.logps: dict[str, tuple[Tensor, Tensor]] | None = None
        self._given_to: int | None = None  # id() of the data module that has the columns

    def _ensure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(getattr(pl_module, "reference", None), PrecomputedReference):
            return
        datamodule = trainer.datamodule
        if self.logps is None:  # neither scored yet nor restored from a checkpoint
            self.logps = {
                split: score_pairs(
                    pl_module.model,
                    datamodule.predict_dataloader(split),
                    pl_module.scoring,
                    pl_module.objective.reduction,
                    pl_module.device,
                )
                for split in datamodule.splits()
            }
        if self._given_to != id(datamodule):
            for split, (chosen, rejected) in self.logps.items():
                datamodule.set_reference_logps(split, chosen.tolist(), rejected.tolist())
            self._given_to = id(datamodule)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"logps": self.logps} if self.logps is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.logps = state_dict.get("logps")
        self._given_to = None


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
