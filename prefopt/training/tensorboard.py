"""One TensorBoard event file per run, whatever the number of Trainer calls.

Lightning's ``TensorBoardLogger`` closes its writer at the end of every ``fit`` / ``validate``, and
the next call opens a new event file. A run here makes three calls (the step-0 validation, the
fit, the final validation), and TensorBoard orders event files by name, whose counter sorts
``.10`` before ``.9``: in a long multirun process the step-0 values could be read after the
later ones. This logger only flushes at the end of a call; :func:`close` ends the run's file.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` whose writer stays open across Trainer calls."""

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()  # hparams.yaml

    def close(self) -> None:
        """Flush and close the event file (a later call would open a new one)."""
        if self._experiment is not None:
            self.experiment.flush()
            self.experiment.close()


def close(trainer: L.Trainer) -> None:
    """Close the event files of ``trainer``'s TensorBoard loggers."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.close()
