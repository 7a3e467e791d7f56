"""Exact resume: a run SIGKILLed mid-training continues from its last checkpoint with
``ckpt_path=last`` and logs the same later metrics as an uninterrupted run; checkpoint files are
written atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.cli.train import train
from prefopt.training.checkpoint import AtomicCheckpointIO, RNGState
from tests.conftest import ROOT, compose_train
from tests.distributed.helpers import LORA_DPO, RUN, event_files, metrics, run_cli, scalars

EVERY_3_STEPS = "callbacks.last_checkpoint.every_n_train_steps=3"


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_with_the_same_later_metrics(lora_run, tmp_path):
    run_dir = tmp_path / "run"
    kill = [
        "+callbacks.kill._target_=tests.distributed.helpers.KillAtStep",
        "+callbacks.kill.step=7",
    ]
    assert run_cli(run_dir, [*LORA_DPO, EVERY_3_STEPS, *kill]) == -signal.SIGKILL
    assert not (run_dir / "hf_model").exists()

    # the last checkpoint (step 6: epoch 1, 1 of its 5 batches done) holds everything to resume
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["PreferenceDataModule"] == {"epoch": 1, "skip": 1}
    assert any(key.startswith("RNGState") for key in checkpoint["callbacks"])
    assert checkpoint["optimizer_states"] and checkpoint["lr_schedulers"]
    assert not any(k.startswith("reference.") for k in checkpoint["state_dict"])  # LoRA

    before = event_files(run_dir)
    train(compose_train(run_dir, [*RUN, *LORA_DPO, EVERY_3_STEPS, "ckpt_path=last"], fast=False))
    resumed = metrics(scalars(event_files(run_dir) - before))
    expected = metrics(scalars(event_files(lora_run)))
    assert {step for tag, step in resumed if tag == "train/loss"} == {6, 7}  # steps 7 and 8
    assert ("val/loss", 8) in resumed
    for key, value in resumed.items():
        assert value == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key


KILLED_SAVE = """
import os, signal, sys, torch
from prefopt.training.checkpoint import AtomicCheckpointIO

class KillWhilePickled:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

io = AtomicCheckpointIO()
io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, sys.argv[1])
io.save_checkpoint({"step": 2, "weights": torch.zeros(3), "x": KillWhilePickled()}, sys.argv[1])
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["step"] == 1 and checkpoint["weights"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]  # the partial one is hidden

    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True) == {"step": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the leftover is cleaned up


def test_rng_state_is_restored_when_training_starts():
    callback = RNGState()
    torch.manual_seed(0)
    saved = callback.state_dict()
    expected = torch.rand(3)
    torch.rand(5)  # what a resumed run draws before training (e.g. the data iterator's seed)
    callback.load_state_dict(saved)
    callback.on_train_start(None, None)
    assert torch.equal(torch.rand(3), expected)


def test_a_resumed_dpo_run_keeps_the_reference_scored_before_training(tmp_path):
    """module.reference=precomputed: the reference log-probs come back from the checkpoint. Were
    they scored again by the trained policy at resume, the later rewards would differ."""
    dpo = [
        *RUN,
        "objective=dpo",
        "scheduler=constant",
        "callbacks.last_checkpoint.every_n_train_steps=4",
    ]
    whole = tmp_path / "whole"
    train(compose_train(whole, dpo, fast=False))
    split = tmp_path / "split"
    train(compose_train(split, [*dpo, "trainer.max_steps=4"], fast=False))
    first = event_files(split)
    train(compose_train(split, [*dpo, "ckpt_path=last"], fast=False))
    resumed = metrics(scalars(event_files(split) - first))
    expected = metrics(scalars(event_files(whole)))
    assert ("train/rewards/margins", 7) in resumed
    for key, value in resumed.items():
        if key[1] > 4:  # the steps trained after the resume (the final validation included)
            assert value == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "prefopt.cli.train", *RUN, *overrides]
    command += ["callbacks.progress_bar.every_n_steps=1", f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _interrupt_after(proc: subprocess.Popen, step: int, signum: int) -> tuple[str, str]:
    """Read the progress records on stdout (not a terminal) until ``step``, then send ``signum``."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if f"step {step}/" in line:
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=120)
    return "".join(lines) + out, err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_the_step_with_a_checkpoint_and_a_resume_continues(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, "trainer.max_steps=400", "save_hf_model=false")
    out, err = _interrupt_after(proc, 3, signum)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    status = json.loads((run_dir / "status.json").read_text())
    step = status["step"]
    assert status == {"status": "interrupted", "step": step, "signal": signum} and step >= 3
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == step  # saved at the step it stopped
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1] == (
        f"prefopt-train: interrupted by {name} at step {step}; checkpoint "
        f"{run_dir}/checkpoints/last.ckpt (resume with ckpt_path=last and the same hydra.run.dir)"
    )
    if signum == signal.SIGTERM:
        return
    # the resume: continues from that step, quietly, and TensorBoard holds each step once
    before = event_files(run_dir)
    proc = _start(run_dir, f"trainer.max_steps={step + 2}", "ckpt_path=last", "save_hf_model=false")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert f"resumed from {run_dir}/checkpoints/last.ckpt at step {step}" in out
    assert "not resumable" not in err and "is not empty" not in err
    resumed = scalars(event_files(run_dir) - before)
    assert {s for tag, s in resumed if tag == "train/loss"} == {step, step + 1}
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()  # TensorBoard's own reading: the interrupted run's later steps are purged
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == step + 1
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
