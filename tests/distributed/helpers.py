"""Helpers of the scale-out tests: the shared run settings, the CLI in a subprocess, TensorBoard
scalars, and a callback that SIGKILLs its own process (imported by the CLI from here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import FAST, ROOT

# 8 optimizer steps over 5 global batches per epoch (so runs cross an epoch boundary); the global
# batch is 4 pairs: data.batch_size=4 on one process, 2 per process on two. DPO with a reference
# model in memory (replicated under DDP, sharded under FSDP2) and an NLL term (token-pooled over
# all ranks), so both paths are compared across strategies.
RUN = [
    *FAST,
    "data.builtin.train_size=20",
    "trainer.max_steps=8",
    "trainer.val_check_interval=4",
]
REFERENCE_MODEL = ["objective=dpo", "objective.nll_coef=0.5", "module.reference=model"]
# LoRA with dropout (so resuming needs the random generators) and DPO whose reference is the model
# with its adapters disabled
LORA_DPO = [
    "peft=lora",
    "peft.dropout=0.1",
    "model.disable_dropout=false",
    "objective=dpo",
    "module.reference=model",
]
TWO_PROCESSES = ["trainer.devices=2", "data.batch_size=2", "data.eval_batch_size=4"]
FSDP_FLOAT32 = ["strategy=fsdp", "strategy.param_dtype=null", "strategy.reduce_dtype=null"]
# padding-free packed batches: the sequences of the 2 pairs of each rank in rows of <= 96 tokens
PACKED = ["data.packing=true", "data.pack_length=96"]

Scalars = dict[tuple[str, int], float]


def run_cli(run_dir: Path, overrides: Iterable[str], timeout: float = 240) -> int:
    """``python -m prefopt.cli.train RUN... overrides hydra.run.dir=run_dir``; the return code."""
    command = [
        sys.executable,
        "-m",
        "prefopt.cli.train",
        *RUN,
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    return proc.returncode


def event_files(run_dir: Path) -> set[Path]:
    return set((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def scalars(files: Iterable[Path]) -> Scalars:
    """``{(tag, step): value}`` of every scalar in the TensorBoard event ``files``."""
    values = {}
    for file in sorted(files):
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.update({(tag, e.step): e.value for e in acc.Scalars(tag)})
    return values


def metrics(values: Scalars) -> Scalars:
    """Only the ``train/`` and ``val/`` entries."""
    return {k: v for k, v in values.items() if k[0].startswith(("train/", "val/"))}


class KillAtStep(L.Callback):
    """SIGKILL this process after optimizer step ``step`` (before that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def assert_same_metrics(reference: Path, other: Path) -> None:
    """The runs logged the same ``train/`` and ``val/`` scalars at the same steps (to float
    rounding), every step and the final validation included."""
    expected, actual = (
        metrics(scalars(event_files(reference))),
        metrics(scalars(event_files(other))),
    )
    assert set(actual) == set(expected)
    assert ("train/loss", 7) in expected and ("val/loss", 8) in expected  # every step, final val
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=2e-5, abs=1e-6), key
