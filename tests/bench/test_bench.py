"""The benchmark (experiments/bench) at its quick sizes: every peer's parity with TRL, refusals of
a wrong loss, one timed round, the memory probes, the growth series, the packing hook, the
real-length workload and the report.

Skipped when trl (the ``bench`` extra) is not installed; prefopt itself never imports it.
"""

import dataclasses
import logging
import os
import sys

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl")

from experiments.bench import cli, growth, packing, real_data  # noqa: E402
from experiments.bench import peers as P  # noqa: E402
from experiments.bench import variants as bench_run  # noqa: E402
from experiments.bench.probes import memory_probe  # noqa: E402
from experiments.bench.render import render  # noqa: E402
from experiments.bench.report import BenchRun, write_section  # noqa: E402
from experiments.bench.trl_runners import CPORunner  # noqa: E402
from experiments.bench.workload import QUICK, collate  # noqa: E402
from prefopt.models.logps import Scoring  # noqa: E402
from prefopt.objectives.cpo import CPO  # noqa: E402

ONE_STEP = dataclasses.replace(QUICK, steps=1)
# what each TRL peer reports, so what the parity check compares
PEER_KEYS = {
    "orpo": {"loss", "nll_loss", "logps/chosen", "logps/rejected"},
    "dpo": {"loss", "logps/chosen", "logps/rejected"},
    "simpo": {"loss", "logps/chosen", "logps/rejected"},  # cpo_alpha=0: TRL's NLL is a dummy 0
    "cpo": {"loss", "nll_loss", "logps/chosen", "logps/rejected"},
    "sft": {"loss"},
}


@pytest.fixture(scope="module")
def quick_run():
    results, parity, notes = bench_run.run_throughput(ONE_STEP)
    return results, parity, notes


def test_every_variant_computes_its_trl_peers_first_batch_values(quick_run):
    _, parity, _ = quick_run
    assert set(parity) == set(P.PEERS)
    for comparison in P.COMPARISONS:
        losses = parity[comparison.key]
        peer = losses[comparison.peer]
        assert set(peer) == PEER_KEYS[comparison.key]
        expected = {comparison.peer, *comparison.variants}
        assert set(losses) == expected
        for value in losses.values():
            for key, ref in peer.items():
                assert value[key] == pytest.approx(ref, rel=1e-5), (comparison.key, key)
    # the DPO loss is log 2 before training, so the check leans on the summed log-probs
    assert parity["dpo"][P.DPO_NAME]["logps/chosen"] < -50


def test_parity_check_refuses_a_different_loss():
    class Fake:
        def __init__(self, loss):
            self.loss = loss

        def first_loss(self):
            return {"loss": self.loss, "logps/chosen": -3.0}

    variants = {
        P.TRL: bench_run.Variant(Fake(2.0), "random"),
        P.NEEDED: bench_run.Variant(Fake(2.001), "random"),
    }
    with pytest.raises(
        RuntimeError, match="parity check failed: \\+ needed positions, chunked loss"
    ):
        bench_run.check_parity(variants, P.comparisons(()))


def test_parity_check_refuses_a_misaligned_nll_scope():
    """prefopt's CPO with its NLL over prompt + response (``full``) is not TRL's CPO (response
    only): the check catches it, so nothing would be timed."""
    pairs = ONE_STEP.pairs(2)
    model = ONE_STEP.build_model()
    trl = CPORunner(model, [pairs], ONE_STEP.max_length, loss_type="sigmoid", beta=0.1)
    wrong = bench_run.PrefoptRunner(model, CPO(beta=0.1), [collate(pairs, [0, 1])], Scoring())
    variants = {
        P.TRL_CPO: bench_run.Variant(trl, "random"),
        P.CPO_NAME: bench_run.Variant(wrong, "grouped"),
    }
    cpo = [c for c in P.COMPARISONS if c.key == "cpo"]
    with pytest.raises(
        RuntimeError, match="parity check failed: prefopt CPO loss=.*nothing was timed"
    ):
        bench_run.check_parity(variants, cpo)


@pytest.mark.parametrize("key", P.PEERS)
def test_memory_probe_of_each_peer_measures_both_sides(key):
    for side in ("trl", "prefopt"):
        memory = memory_probe(f"{side}:{key}", QUICK, loss_stage=key == "orpo")
        assert memory["peak_mib"] > 0 and memory["seconds"] > 0
        if key == "orpo":
            assert memory["loss_stage_mib"] == memory["step_mib"] - memory["decoder_mib"]


def test_memory_probe_names_its_sides_and_peers():
    with pytest.raises(ValueError, match="unknown memory probe 'trl:kto'"):
        memory_probe("trl:kto", QUICK)


def fake_probe(probe: str, args: list[str]) -> dict[str, float]:
    """The probe in-process, from the flags ``run_growth`` passes to the subprocess."""
    parsed = cli.parse_args(["--quick", *args])
    return memory_probe(probe, cli.workload_from(parsed), loss_stage=parsed.probe_loss_stage)


def test_growth_measures_both_axes_once_per_point_and_plots(tmp_path):
    calls = []

    def probe(name, args):
        calls.append((name, tuple(args)))
        return fake_probe(name, args)

    points = growth.run_growth(QUICK, (32, 64), (2048, 3000), 64, [], probe, log=lambda _: None)
    assert len(calls) == 2 * 3  # (64, 2048) is on both axes, measured once
    assert [p.sides["trl"]["step_mib"] for p in points if p.seq == 64 and p.vocab == 2048]
    assert "| 3000 |" in growth.growth_table(points, "vocabulary")
    growth.plot(points, tmp_path / "img" / "growth.png")
    assert (tmp_path / "img" / "growth.png").stat().st_size > 10_000


def test_growth_skips_a_point_that_would_not_fit(monkeypatch):
    monkeypatch.setattr(growth, "available_mib", lambda: 100.0)
    points = growth.run_growth(QUICK, (64,), (), 64, [], fake_probe, log=lambda _: None)
    assert not points[0].sides
    assert points[0].skipped["trl"].startswith("needs ~1.")
    assert "skipped (needs" in growth.growth_table(points, "sequence")


def test_against_a_prefopt_without_packing_the_row_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefopt.data.packing", None)  # import raises ImportError
    assert packing.packing_seam()[0] is None
    results, _, notes = bench_run.run_throughput(ONE_STEP, peers=())
    assert P.PACKED not in {r.name for r in results}
    assert P.GROUPED in {r.name for r in results}
    assert any("`+ packing` skipped: prefopt.data.packing is not importable" in n for n in notes)


def test_the_packed_row_is_checked_against_trl_and_timed():
    """prefopt's PackedPreferenceCollator on the length-grouped batches: TRL's first-batch loss,
    and more of each batch is real tokens than in the padded rows."""
    results, parity, notes = bench_run.run_throughput(ONE_STEP, peers=())
    assert P.PACKED in parity["orpo"] and not notes
    by_name = {r.name: r for r in results}
    packed = by_name[P.PACKED]
    assert packed.batching == "packed"
    assert by_name[P.GROUPED].padding_efficiency < packed.padding_efficiency <= 1


@pytest.mark.skipif(real_data.missing() is not None, reason="no ../shared preference data")
def test_real_lengths_come_from_prefopts_data_code_and_feed_the_pairs():
    before = logging.getLogger("prefopt").level
    real = real_data.load_real_lengths(max_rows=8)
    assert logging.getLogger("prefopt").level == before  # quiet while reading, then as it was
    assert len(real.files) >= 1 and real.pool
    assert real.duplicates > 0  # the shared folder holds each dataset in two layouts
    wide = dataclasses.replace(QUICK, max_length=10**6, max_prompt_length=10**6 - 1)
    workload = dataclasses.replace(wide, workload="real", length_pool=real.pool)
    drawn = real_data.pair_lengths(workload.pairs(20))
    assert set(drawn) <= set(real.pool)
    stats = real_data.length_stats(list(real.pool))
    assert stats["prompt_median"] <= stats["prompt_p90"]


def test_without_shared_data_the_synthetic_lengths_are_used_with_a_note(tmp_path, capsys):
    args = cli.parse_args(["--quick", "--shared", str(tmp_path)])
    workload, lengths, notes = cli.with_lengths(args, QUICK)
    assert workload.workload == "synthetic" and not lengths
    assert "synthetic lengths are used" in notes[0] and "note:" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--workload real: .* not found"):
        cli.with_lengths(cli.parse_args(["--workload", "real", "--shared", str(tmp_path)]), QUICK)


def test_report_has_every_section_and_target(quick_run, tmp_path):
    results, parity, notes = quick_run
    assert all(len(r.seconds) == 1 and r.real_tokens > 0 for r in results)
    memory = {"orpo": {s: fake_probe(f"{s}:orpo", []) for s in ("trl", "prefopt")}}
    padding = bench_run.padding_at_scale(ONE_STEP, megabatches=1)
    assert padding["grouped"] >= padding["random"]
    points = growth.run_growth(QUICK, (64,), (2048,), 64, [], fake_probe, log=lambda _: None)
    info = {"cpu": "x", "torch threads": "1"}
    run = BenchRun(
        "cmd",
        info,
        ONE_STEP,
        1e11,
        results,
        parity,
        P.PEERS,
        padding,
        {},
        memory,
        points,
        None,
        notes,
    )
    report = render(run)
    for heading in ["### Parity", "### Step memory", "### How cost grows", "### Targets"]:
        assert heading in report
    for c in P.COMPARISONS:
        assert f"### {c.title}" in report
    targets = ["packing efficiency", "vs TRL ORPOTrainer", "vs TRL DPOTrainer", "SimPO real"]
    targets += ["CPO step memory", "vocabulary 128k", "useful MFU of ORPO + packing"]
    for target in targets:
        assert target in report
    assert "| ORPO step memory vs its TRL peer, vocabulary 32k, T 1024 | <= 0.5x |" in report
    assert "prefopt has no packing yet" in report or P.PACKED in report

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nhand-written text\n")
    write_section(doc, report)
    write_section(doc, "second run")  # replaces the section, keeps the text around it
    text = doc.read_text()
    assert text.startswith("# Performance\n\nhand-written text\n")
    assert "second run" in text and "### Parity" not in text


def test_denormals_are_flushed_for_both_sides_unless_kept():
    tiny = torch.tensor([1e-39])
    try:
        assert cli.set_denormals(keep=True) == "kept"
        assert (tiny * 1.0).item() != 0.0
        if cli.set_denormals(keep=False) == "flushed to zero, both sides":
            assert (tiny * 1.0).item() == 0.0
        assert cli.parse_args(["--keep-denormals"]).keep_denormals
    finally:
        torch.set_flush_denormal(False)
