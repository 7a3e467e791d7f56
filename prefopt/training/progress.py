"""Progress a person can read: global steps out of ``max_steps``, an overall ETA, short names.

Training is step-based (``trainer.max_steps``, ``max_epochs: -1``), so the bar counts optimizer
steps across epochs, never "Epoch 9/-2". On a terminal it is a Rich bar; whatever stdout is, a
one-line record (step, loss, the λ-free margin and accuracy, tokens/s, ETA) is logged every
``every_n_steps`` steps and after each validation: to stdout and ``train.log`` when stdout is not
a terminal (nohup, SLURM, ``> log``), to ``train.log`` only when the bar is shown.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

log = logging.getLogger("prefopt.progress")

# (logged key, short name): what every arm's record shows, λ-free metrics first
TRAIN_KEYS = (
    ("train/loss", "loss"),
    ("train/margins/avg_logps", "margin"),
    ("train/accuracies/avg_logps", "acc"),
)
VAL_KEYS = (
    ("val/margins/avg_logps", "margin"),
    ("val/accuracies/avg_logps", "acc"),
    ("val/nll_loss", "nll"),
    ("val/loss", "loss"),
)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


def _values(metrics: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> str:
    parts = []
    for key, short in keys:
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{short} {float(value):.4f}")
    return " | ".join(parts)


def _file_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


class StepProgress(ProgressBar):
    """The progress of a step-based run (see the module docstring).

    Args:
        every_n_steps: steps between two progress records (0: none).
        bar: show the Rich bar: ``auto`` (when stdout is a terminal), ``true`` or ``false``.
    """

    def __init__(self, every_n_steps: int = 50, bar: bool | str = "auto") -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.bar = sys.stdout.isatty() if bar == "auto" else bool(bar)
        self._enabled = True
        self._progress = None
        self._task = None
        self._start = self._tokens = 0.0
        self._first_step = 0

    # ProgressBar's interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def total_steps(self) -> int:
        max_steps = self.trainer.max_steps
        return (
            max_steps
            if max_steps and max_steps > 0
            else int(self.trainer.estimated_stepping_batches)
        )

    def _record(self, message: str) -> None:
        if not self.trainer.is_global_zero:
            return
        if not self.bar:
            log.info(message)  # Hydra's handlers: the console and train.log
            return
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None)
        for handler in _file_handlers():  # the bar is the console's
            handler.handle(record)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._tokens, self._first_step = time.perf_counter(), 0.0, trainer.global_step
        if self.bar and self._enabled and trainer.is_global_zero:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self.total_steps, completed=trainer.global_step, metrics=""
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(batch, dict) and "attention_mask" in batch:
            self._tokens += float(batch["attention_mask"].sum()) * trainer.world_size
        step, total = trainer.global_step, self.total_steps
        metrics = trainer.callback_metrics
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step, metrics=_values(metrics, TRAIN_KEYS[:2])
            )
        if self.every_n_steps and step % self.every_n_steps == 0:
            elapsed = time.perf_counter() - self._start
            done = max(step - self._first_step, 1)
            eta = elapsed / done * max(total - step, 0)
            self._record(
                f"step {step}/{total} | {_values(metrics, TRAIN_KEYS)} | "
                f"{self._tokens / max(elapsed, 1e-9):,.0f} tok/s | "
                f"elapsed {_duration(elapsed)} | ETA {_duration(eta)}"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = _values(trainer.callback_metrics, VAL_KEYS)
        if values:
            self._record(f"validation at step {trainer.global_step} | {values}")

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._task = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        self._stop()
