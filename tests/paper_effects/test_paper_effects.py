"""The paper-effects study end to end with a tiny budget: one command trains every arm (SFT, ORPO at
three λ, DPO from the SFT model), reports, and writes the findings computed from those runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from experiments.paper_effects.findings import ACCURACY, CHOSEN, REJECTED, findings
from experiments.paper_effects.study import main
from prefopt.report import load_runs


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "paper_effects"
    args = ["--out", str(out), "--quick", "--steps", "4", "--val-every", "2", "--seeds", "0,1"]
    main([*args, "--dpo-steps", "2"])
    return out


def _events(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _run_dirs(study: Path, lam: float) -> dict[int, Path]:
    found = {}
    for status in study.glob("*/status.json"):
        config = (status.parent / "config_resolved.yaml").read_text()
        if f"lam: {lam}\n" in config:
            seed = int(config.split("\nseed: ")[1].split("\n")[0])
            found[seed] = status.parent
    return found


def test_one_command_writes_the_report_the_findings_and_the_plots(study):
    report = study / "report"
    for name in ("report.md", "findings.md", "findings.json", "curves.png"):
        assert (report / name).is_file(), name
    for png in ("logps_over_steps.png", "logps_vs_lambda.png", "generation_accuracy.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"
    result = json.loads((report / "findings.json").read_text())
    assert result["exit_codes"] == {"grid": 0, "dpo seed 0": 0, "dpo seed 1": 0}
    assert set(result["arms"]) == {
        "sft",
        "orpo λ=0.1",
        "orpo λ=0.5",
        "orpo λ=1",
        "dpo (from the SFT model)",
    }
    text = (report / "findings.md").read_text()
    for finding in ("finding_1", "finding_2", "finding_3"):
        assert result[finding]["claim"] in text
    assert "python experiments/paper_effects --out" in text and "min on" in text


def test_the_checks_are_computed_from_the_runs(study):
    result = json.loads((study / "report" / "findings.json").read_text())
    sft = _run_dirs(study, 0.0)
    assert sorted(sft) == [0, 1]
    for seed, run in sft.items():  # finding 1: the rise of the rejected log-prob from step 0
        curve = _events(run)[REJECTED]
        assert curve[0][0] == 0  # the step-0 validation
        rise = curve[-1][1] - curve[0][1]
        assert result["finding_1"]["per_seed"][str(seed)] == pytest.approx(rise, abs=1e-6)
    orpo = _run_dirs(study, 0.1)
    diffs = [_events(orpo[s])[ACCURACY][-1][1] - _events(sft[s])[ACCURACY][-1][1] for s in (0, 1)]
    assert result["finding_3"]["accuracy_diff"]["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-6)
    step = result["finding_2"]["steps"][0]
    assert (step["from"], step["to"]) == (0.1, 0.5)
    half = _run_dirs(study, 0.5)
    diffs = [_events(half[s])[REJECTED][-1][1] - _events(orpo[s])[REJECTED][-1][1] for s in (0, 1)]
    assert step["rejected_diff"]["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-6)

    # change what a run logged, and the check follows: the rejected log-prob of SFT seed 0 now
    # ends 1.0 higher than it started
    writer = SummaryWriter(sft[0] / "tensorboard")
    start = _events(sft[0])[REJECTED][0][1]
    writer.add_scalar(REJECTED, start + 1.0, 100)
    writer.add_scalar(CHOSEN, -1.0, 100)
    writer.close()
    changed = findings(load_runs(study))
    assert changed["finding_1"]["per_seed"][0] == pytest.approx(1.0, abs=1e-6)
