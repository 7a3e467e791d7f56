"""Nothing lost on Ctrl-C: SIGINT and SIGTERM stop training at the next step with a checkpoint.

SLURM sends SIGTERM before it pre-empts a job, a terminal SIGINT on Ctrl-C. During the training
loop :class:`StopOnSignal` only notes the signal; at the end of the current optimizer step every
rank agrees to stop (one all-reduce of a flag per step, only with several processes), ``last.ckpt``
is written (atomically, as every checkpoint) and :class:`TrainingInterrupted` is raised, which
``prefopt-train`` records as ``{"status": "interrupted", "step": N}`` before exiting with the
conventional code (128 + the signal's number). ``ckpt_path=last`` resumes from that step. A signal
outside the training loop (data setup, the final validation), or a second one while waiting for
the step to end, interrupts at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import lightning as L

from prefopt.training.checkpoint import LastCheckpoint

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(BaseException):  # noqa: N818 (not an error: a request to stop)
    """Training stopped on a signal.

    Attributes:
        signum: the signal's number.
        step: optimizer steps done (the checkpoint's step, if one was written).
        checkpoint: the checkpoint written at that step, or ``None``.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None = None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted by {name} at step {step}{where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignal(L.Callback):
    """Stop at the next step boundary on SIGINT / SIGTERM, with a checkpoint (see the module)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._in_loop = False
        self._trainer: L.Trainer | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._in_loop and self.requested is None:
            self.requested = signum  # no logging here: the main thread may be inside a write
            return
        step = self._trainer.global_step if self._trainer is not None else 0
        raise TrainingInterrupted(signum, step)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this process (from the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def uninstall(self) -> None:
        """Give the signals back to the handlers they had before :meth:`install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self.install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()  # after Lightning's own SIGTERM handler (registered when fit starts)
        self._in_loop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.requested is not None
        if trainer.world_size > 1:  # every rank stops at the same step (the save is collective)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self._in_loop = False
        name = signal.Signals(self.requested or signal.SIGTERM).name
        log.warning("%s received: saving a checkpoint at step %d", name, trainer.global_step)
        path = save_last_checkpoint(trainer)
        raise TrainingInterrupted(self.requested or signal.SIGTERM, trainer.global_step, path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_loop = False

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._in_loop = False
        self.uninstall()


def save_last_checkpoint(trainer: L.Trainer) -> Path:
    """Write ``last.ckpt`` now (through the run's :class:`LastCheckpoint`, so that it does not
    write the same step again at the end), on every rank; return its path."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint):
            callback.save_now(trainer)
            return Path(callback.dirpath) / "last.ckpt"
    path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path
