"""Packed batches under data parallelism: 2-process DDP and FSDP2 runs that pack each rank's
pairs padding-free log the metrics of the padded 1-process run (same global batches)."""

from __future__ import annotations

import pytest

from tests.distributed.helpers import assert_same_metrics


@pytest.mark.slow
def test_ddp_with_packed_batches_logs_the_padded_one_process_metrics(single_run, ddp_packed_run):
    assert_same_metrics(single_run, ddp_packed_run)


@pytest.mark.slow
def test_fsdp2_with_packed_batches_logs_the_padded_one_process_metrics(single_run, fsdp_packed_run):
    assert_same_metrics(single_run, fsdp_packed_run)
