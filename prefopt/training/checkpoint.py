"""Fault tolerance: atomic checkpoint files and the RNG state saved with every checkpoint.

The optimizer, scheduler, loops and callbacks are saved by Lightning, and the data position by
:class:`~prefopt.data.PreferenceDataModule` (``state_dict``); this module adds what is missing for
an exact resume (the random generators) and makes every checkpoint write all-or-nothing.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from prefopt.errors import CheckpointError
from prefopt.models.save import load_checkpoint_file

log = logging.getLogger(__name__)
# what every checkpoint Lightning writes during fit holds
TRAINING_KEYS = ("state_dict", "global_step", "loops")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a hidden temporary file beside the target, ``fsync``, then
    ``os.replace``: a process killed during a save leaves the previous checkpoint untouched
    (never a truncated one). Loading always uses ``weights_only=True`` (prefopt checkpoints hold
    only tensors and plain Python values), so a crafted checkpoint cannot run code, whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says; a file that cannot be loaded is a one-line
    :class:`~prefopt.errors.CheckpointError` naming it. Remote (``scheme://``) paths use
    Lightning's own reader and writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed save
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        checkpoint = load_checkpoint_file(path, map_location=map_location or "cpu")
        missing = [key for key in TRAINING_KEYS if key not in checkpoint]
        if missing:
            raise CheckpointError(
                f"{path}: not a training checkpoint Lightning wrote (no {', '.join(missing)}): "
                "give ckpt_path a run's checkpoints/last.ckpt or best-step*.ckpt"
            )
        return checkpoint


def _fsync_dir(path: Path) -> None:
    """Persist a rename in ``path`` (a directory) on POSIX file systems."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RNGState(L.Callback):
    """Save the random generators (torch CPU and CUDA, Python, NumPy) in each checkpoint and
    restore them when the resumed training starts, so dropout masks (e.g. LoRA dropout) continue
    as if uninterrupted.

    They are restored in ``on_train_start``, after Lightning has created the data iterator (which
    draws a seed from the torch generator, as the uninterrupted run did before saving). Rank 0's
    state is saved and restored on every rank: ``seed_everything`` seeds all ranks alike. Stored
    as tensors and lists only (loadable with ``weights_only=True``).
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": _to_lists(random.getstate()),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._restored = self._restored, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        random.setstate(_to_tuples(state["python"]))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the best checkpoint by a metric) that, on a resumed run,
    removes the checkpoint files of its pattern the restored state does not know: those an
    interrupted run wrote after the checkpoint the run resumes from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restored = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._restored = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._restored and trainer.is_global_zero and self.dirpath):
            return
        self._restored = False
        prefix = (self.filename or "").split("{", 1)[0]
        known = {Path(p).resolve() for p in (self.best_model_path, *self.best_k_models) if p}
        for path in Path(self.dirpath).glob(f"{prefix}*{self.FILE_EXTENSION}"):
            if path.resolve() not in known and path.name != f"{self.CHECKPOINT_NAME_LAST}.ckpt":
                trainer.strategy.remove_checkpoint(path)


class ResumeNotes(L.Callback):
    """On a resumed run: one line saying where training continues and what was restored, and
    TensorBoard events after the resumed step purged (the interrupted run's steps between its
    checkpoint and its end are not shown twice; as ``SummaryWriter(purge_step=...)`` does)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.ckpt_path:
            return
        step = trainer.global_step
        if trainer.is_global_zero:
            log.info(
                "resumed from %s at step %d: weights, optimizer, scheduler, data position and "
                "random state restored",
                trainer.ckpt_path,
                step,
            )
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                _purge_after(logger, step)


def _purge_after(logger: TensorBoardLogger, step: int) -> None:
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    writer = logger.experiment.file_writer
    writer.add_event(Event(step=step, file_version="brain.Event:2"))
    writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: written every ``every_n_train_steps`` optimizer steps and when training
    ends, for ``ckpt_path=last`` (the best checkpoint by a metric is a separate callback).

    Args:
        dirpath: the checkpoint folder.
        every_n_train_steps: the interval in optimizer steps.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100) -> None:
        super().__init__(
            dirpath=dirpath, every_n_train_steps=every_n_train_steps, save_top_k=0, save_last=True
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # the final steps since the last save
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def save_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` for the current step (unless it was just written)."""
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
