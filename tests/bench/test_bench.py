"""The benchmark (experiments/bench) in quick mode: parity with TRL, one timed round, the report.

Skipped when trl (the ``bench`` extra) is not installed; prefopt itself never imports it.
"""

import dataclasses
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl")

from experiments.bench import cli as bench  # noqa: E402
from experiments.bench import variants as bench_run  # noqa: E402
from experiments.bench.render import render  # noqa: E402
from experiments.bench.report import write_section  # noqa: E402


@pytest.fixture(scope="module")
def quick_run():
    workload = dataclasses.replace(bench.QUICK, steps=1)
    results, parity = bench_run.run_throughput(workload)
    return workload, results, parity


def test_every_orpo_variant_computes_trls_first_batch_loss(quick_run):
    _, _, parity = quick_run
    trl = parity[bench_run.TRL]
    assert set(parity) == {
        bench_run.TRL,
        bench_run.FULL_LOGITS,
        bench_run.NEEDED,
        bench_run.FUSED,
        bench_run.GROUPED,
        bench_run.SHARED,
    }
    for value in parity.values():
        assert value["loss"] == pytest.approx(trl["loss"], rel=1e-5)
        assert value["nll_loss"] == pytest.approx(trl["nll_loss"], rel=1e-5)


def test_parity_check_refuses_a_different_loss():
    class Fake:
        def __init__(self, loss):
            self.loss = loss

        def first_loss(self):
            return {"loss": self.loss, "nll_loss": 1.0}

    runners = {bench_run.TRL: (Fake(2.0), "random"), bench_run.NEEDED: (Fake(2.001), "random")}
    with pytest.raises(
        RuntimeError, match="parity check failed: \\+ needed positions, chunked loss"
    ):
        bench_run.check_parity(runners)


def test_report_has_every_section_and_target(quick_run, tmp_path):
    workload, results, parity = quick_run
    assert all(len(r.seconds) == 1 and r.real_tokens > 0 for r in results)
    memory = {side: bench.memory_probe(side, workload) for side in ("trl", "prefopt")}
    assert all(m["peak_mib"] > 0 and m["step_mib"] >= 0 for m in memory.values())
    padding = bench_run.padding_at_scale(workload, megabatches=1)
    assert padding["grouped"] > padding["random"]
    report = render("cmd", {"cpu": "x"}, workload, 1e11, results, parity, memory, padding)
    for heading in ("### Parity", "### ORPO: TRL vs prefopt", "### Peak memory", "### Targets"):
        assert heading in report
    for target in ("real tokens/s vs TRL", "step memory vs TRL", "useful MFU", "vs SFT"):
        assert target in report

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nhand-written text\n")
    write_section(doc, report)
    write_section(doc, "second run")  # replaces the section, keeps the text around it
    text = doc.read_text()
    assert text.startswith("# Performance\n\nhand-written text\n")
    assert "second run" in text and "### Parity" not in text
