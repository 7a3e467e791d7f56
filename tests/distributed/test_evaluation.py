"""The default evaluators on 2 processes (gloo): each rank generates its shard of the prompt
sample, the results are gathered in sample order, and the values are those of one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.distributed.helpers import event_files, scalars


def _gen_scalars(run: Path) -> dict[tuple[str, int], float]:
    return {k: v for k, v in scalars(event_files(run)).items() if k[0].startswith("val/gen/")}


def _tables(run: Path) -> list[tuple[int, str]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    return [
        (e.step, e.tensor_proto.string_val[0].decode())
        for e in acc.Tensors("val/gen/samples/text_summary")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["ddp_run", "fsdp_run"])
def test_two_processes_evaluate_the_sample_of_one_process(request, single_run, run):
    other = request.getfixturevalue(run)
    expected, actual = _gen_scalars(single_run), _gen_scalars(other)
    # RUN: the step-0 validation, validations after steps 4 and 8 (every 2nd evaluates), then
    # the final one (step 8 again)
    assert {step for tag, step in expected if tag == "val/gen/exact_match/accuracy"} == {0, 8}
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    # the same prompts, completions and scores, in the same order: the 4 prompts of the sample
    # (FAST) were split 2 + 2 over the ranks and gathered back
    tables = _tables(other)
    assert tables == _tables(single_run)
    assert len(tables[0][1].splitlines()) == 2 + 4
    log = other.with_suffix(".log").read_text()
    assert log.count("evaluation at step 8: 4 prompts (2 on this rank)") == 2  # one per rank
