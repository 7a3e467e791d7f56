"""Fault tolerance: atomic checkpoint files and the RNG state saved with every checkpoint.

The optimizer, scheduler, loops and callbacks are saved by Lightning, and the data position by
:class:`~prefopt.data.PreferenceDataModule` (``state_dict``); this module adds what is missing for
an exact resume (the random generators) and makes every checkpoint write all-or-nothing.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from prefopt.models.save import load_checkpoint_file


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
        return load_checkpoint_file(path, map_location=map_location or "cpu")


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
