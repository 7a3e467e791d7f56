"""Runs shared by the scale-out tests (each made once per session): a 1-process run, 2-process DDP
and FSDP2 runs of the same global batches (DPO with a reference model; padded, and packed), and a
LoRA + DPO run."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefopt.cli.train import train
from tests.conftest import compose_train
from tests.distributed.helpers import (
    FSDP_FLOAT32,
    LORA_DPO,
    PACKED,
    REFERENCE_MODEL,
    RUN,
    TWO_PROCESSES,
    run_cli,
)


@pytest.fixture(scope="session")
def single_run(tmp_path_factory) -> Path:
    """One process, global batch 4, 8 steps of DPO with a reference model (in this process)."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    train(compose_train(run_dir, [*RUN, *REFERENCE_MODEL], fast=False))
    return run_dir


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory) -> Path:
    """One process, LoRA with dropout, DPO against the adapter-free model, 8 steps."""
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    train(compose_train(run_dir, [*RUN, *LORA_DPO], fast=False))
    return run_dir


def _two_process_run(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    run_dir = tmp_path_factory.mktemp(name) / "run"
    code = run_cli(run_dir, [*REFERENCE_MODEL, *TWO_PROCESSES, *overrides])
    assert code == 0, run_dir.with_suffix(".log").read_text()[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory) -> Path:
    """Two processes (gloo) with DDP, 2 pairs each."""
    return _two_process_run(tmp_path_factory, "ddp", ["strategy=ddp"])


@pytest.fixture(scope="session")
def fsdp_run(tmp_path_factory) -> Path:
    """Two processes (gloo) with FSDP2 in float32, 2 pairs each, sharded checkpoints."""
    return _two_process_run(tmp_path_factory, "fsdp", FSDP_FLOAT32)


@pytest.fixture(scope="session")
def ddp_packed_run(tmp_path_factory) -> Path:
    """Two processes with DDP, each packing its 2 pairs padding-free (``data.packing``)."""
    return _two_process_run(tmp_path_factory, "ddp_packed", ["strategy=ddp", *PACKED])


@pytest.fixture(scope="session")
def fsdp_packed_run(tmp_path_factory) -> Path:
    """Two processes with FSDP2 in float32, packed batches."""
    return _two_process_run(tmp_path_factory, "fsdp_packed", [*FSDP_FLOAT32, *PACKED])


@pytest.fixture(scope="session", params=["completion", "completion_seq"])
def scope_runs(request, tmp_path_factory) -> tuple[Path, Path]:
    """The same DPO + NLL runs with another ``module.nll_scope``: 1 process and 2 (DDP)."""
    scope = [f"module.nll_scope={request.param}"]
    single = tmp_path_factory.mktemp(f"single_{request.param}") / "run"
    train(compose_train(single, [*RUN, *REFERENCE_MODEL, *scope], fast=False))
    ddp = _two_process_run(tmp_path_factory, f"ddp_{request.param}", ["strategy=ddp", *scope])
    return single, ddp
