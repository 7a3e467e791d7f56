"""Packed batches and the reference cache under data parallelism: 2-process DDP and FSDP2 runs
that pack each rank's pairs padding-free log the metrics of the padded 1-process run (same global
batches), and a second FSDP2 DPO run loads the reference log-probs the first one cached."""

from __future__ import annotations

import pytest

from tests.distributed.helpers import FSDP_FLOAT32, TWO_PROCESSES, assert_same_metrics, run_cli


@pytest.mark.slow
def test_ddp_with_packed_batches_logs_the_padded_one_process_metrics(single_run, ddp_packed_run):
    assert_same_metrics(single_run, ddp_packed_run)


@pytest.mark.slow
def test_fsdp2_with_packed_batches_logs_the_padded_one_process_metrics(single_run, fsdp_packed_run):
    assert_same_metrics(single_run, fsdp_packed_run)


@pytest.mark.slow
def test_fsdp2_reads_the_reference_cache_a_first_fsdp2_run_wrote(tmp_path):
    """module.reference=precomputed under FSDP2: every rank hashes the sharded weights (gathered
    one tensor at a time), the second run loads both splits and logs the first run's metrics."""
    cache = tmp_path / "cache"
    overrides = [
        *TWO_PROCESSES,
        *FSDP_FLOAT32,
        "objective=dpo",
        f"module.reference_cache_dir={cache}",
    ]
    runs = [tmp_path / "first", tmp_path / "second"]
    for run in runs:
        assert run_cli(run, overrides) == 0, run.with_suffix(".log").read_text()[-3000:]
    assert len(list(cache.glob("*.pt"))) == 2  # train and eval, written once by rank 0
    log = runs[1].with_suffix(".log").read_text()
    assert log.count("reference log-probs of the train split: cached in") >= 1
    assert "scored reference log-probs" not in log
    assert_same_metrics(runs[0], runs[1])
