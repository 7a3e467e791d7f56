"""prefopt-report on hand-made sweeps: known event values, every run status, both SFT arms."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from prefopt.cli.report import main
from prefopt.report import write_report

CLASSES = {"orpo": "ORPO", "sft": "SFT"}


def make_run(
    sweep: Path,
    name: str,
    *,
    objective: str = "orpo",
    lam: float = 0.1,
    lr: float = 1e-3,
    seed: int = 0,
    margins: dict[int, float] | None = None,
    status: dict | None = None,
    saved: bool = True,
) -> Path:
    """A job folder as prefopt-train writes it: Hydra's composed config, the resolved config
    (``saved``), ``status.json`` (``status``; none if ``None``) and ``val/`` events, where
    ``val/logps/chosen`` is ``-1 + margin`` and ``val/logps/rejected`` is ``-1``."""
    run = sweep / name
    composed = {
        "seed": seed,
        "objective": {
            "_target_": f"prefopt.objectives.{objective}.{CLASSES[objective]}",
            "lam": lam,
        },
        "optimizer": {"lr": lr},
        "data": {"seed": "${seed}"},
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(composed), run / ".hydra" / "config.yaml")
    if saved:
        resolved = composed | {"data": {"seed": seed}, "paths": {"output_dir": str(run)}}
        OmegaConf.save(OmegaConf.create(resolved), run / "config_resolved.yaml")
    if status is not None:
        (run / "status.json").write_text(json.dumps(status))
    if margins:
        writer = SummaryWriter(run / "tensorboard")
        for step, margin in margins.items():
            writer.add_scalar("val/margins/avg_logps", margin, step)
            writer.add_scalar("val/logps/chosen", -1.0 + margin, step)
            writer.add_scalar("val/logps/rejected", -1.0, step)
            writer.add_scalar("val/nll_loss", 2.0 - step / 100, step)
        writer.close()
    return run


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {row.get("run") or f"{row['objective']} {row['lam']}": row for row in rows}


DONE = {"status": "completed"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Five completed runs and their report in ``<sweep>/report`` (written once: plots are slow)."""
    sweep = tmp_path_factory.mktemp("sweep")
    # ORPO lambda 0.1 over three seeds: best margin at step 20, final margins 0.1, 0.2, 0.3
    for seed, final in enumerate((0.1, 0.2, 0.3)):
        margins = {10: 0.0, 20: 0.5 + seed, 30: final}
        make_run(sweep, f"objective.lam=0.1,seed={seed}", seed=seed, margins=margins, status=DONE)
    make_run(sweep, "objective.lam=0,seed=0", lam=0.0, margins={10: 0.05}, status=DONE)
    make_run(sweep, "objective=sft,seed=0", objective="sft", margins={10: 0.04}, status=DONE)
    main([str(sweep)])  # writes to <sweep>/report
    return sweep


def test_cli_writes_the_tables_and_plots_to_sweep_dir_report(sweep):
    assert sorted(p.name for p in (sweep / "report").iterdir()) == [
        "curves.png",
        "margin_vs_lambda.png",
        "report.md",
        "runs.csv",
        "seeds.csv",
    ]


def test_table_has_final_and_best_values_and_mean_std_over_seeds(sweep):
    out = sweep / "report"
    runs = read_csv(out / "runs.csv")

    seed2 = runs["objective.lam=0.1,seed=2"]
    assert (seed2["objective"], seed2["lam"], seed2["lr"], seed2["seed"]) == (
        "orpo",
        "0.1",
        "0.001",
        "2",
    )
    assert float(seed2["final val/margins/avg_logps"]) == pytest.approx(0.3)
    assert float(seed2["final val/logps/chosen"]) == pytest.approx(-0.7)
    # best: every metric at the step where the margin peaked (step 20, margin 2.5)
    assert seed2["best_step"] == "20" and seed2["last_step"] == "30"
    assert float(seed2["best val/margins/avg_logps"]) == pytest.approx(2.5)
    assert float(seed2["best val/nll_loss"]) == pytest.approx(1.8)

    seeds = read_csv(out / "seeds.csv")
    orpo = seeds["orpo 0.1"]
    assert orpo["seeds"] == "0 1 2" and orpo["completed"] == "3"
    assert float(orpo["mean val/margins/avg_logps"]) == pytest.approx(0.2)
    assert float(orpo["std val/margins/avg_logps"]) == pytest.approx(0.1)  # sample std
    report = (out / "report.md").read_text()
    assert "| orpo | 0.1 | 0.001 | 0 1 2 | 3/3 | 0.2 ± 0.1 |" in report
    assert "| 0.3 / 2.5 |" in report  # final / best margin of seed 2


def test_lambda_zero_is_the_sft_arm_and_sft_runs_have_no_lambda(sweep):
    runs = read_csv(sweep / "report" / "runs.csv")
    assert runs["objective.lam=0,seed=0"]["objective"] == "sft (λ=0)"
    assert (runs["objective=sft,seed=0"]["objective"], runs["objective=sft,seed=0"]["lam"]) == (
        "sft",
        "",
    )
    report = (sweep / "report" / "report.md").read_text()
    assert "| `objective=sft,seed=0` | completed | sft | — | 0.001 | 0 |" in report
    # SFT arms come first, then ORPO
    assert list(runs)[:2] == ["objective=sft,seed=0", "objective.lam=0,seed=0"]


def test_failed_running_unfinished_and_early_crashed_runs_are_marked(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep, "objective.lam=0.1", margins={5: 0.1}, status=DONE)
    error = "ValueError: orpo: lam must be >= 0,\n got -1"
    make_run(sweep, "objective.lam=-1", lam=-1.0, status={"status": "failed", "error": error})
    make_run(sweep, "objective.lam=0.2", lam=0.2, margins={5: 0.2}, status={"status": "running"})
    killed = make_run(
        sweep, "objective.lam=0.3", lam=0.3, margins={5: 0.3}, status={"status": "running"}
    )
    hours_ago = time.time() - 2 * 3600
    for path in [killed / "status.json", *killed.glob("tensorboard/*")]:
        os.utime(path, (hours_ago, hours_ago))
    make_run(sweep, "objective.lam=0.4", lam=0.4, lr=2e-3, seed=7, saved=False)  # no status

    write_report(sweep, tmp_path / "out", stale_minutes=30)
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert {name: row["status"] for name, row in runs.items()} == {
        "objective.lam=0.1": "completed",
        "objective.lam=-1": "failed",
        "objective.lam=0.2": "running",
        "objective.lam=0.3": "unfinished",
        "objective.lam=0.4": "unfinished",
    }
    assert runs["objective.lam=-1"]["error"] == "ValueError: orpo: lam must be >= 0, got -1"
    assert runs["objective.lam=-1"]["final val/margins/avg_logps"] == ""
    # read from .hydra/config.yaml: the run crashed before saving config_resolved.yaml
    assert (runs["objective.lam=0.4"]["lam"], runs["objective.lam=0.4"]["lr"]) == ("0.4", "0.002")
    assert runs["objective.lam=0.4"]["seed"] == "7"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "5 run(s): " in report and "1 failed" in report and "2 unfinished" in report
    assert "- `objective.lam=-1`: ValueError: orpo: lam must be >= 0, got -1" in report
    assert "| `objective.lam=-1` | **failed** |" in report


def test_a_step_logged_twice_keeps_the_value_written_last(tmp_path):
    """Fit and the final validate write two event files; the report reads both."""
    run = make_run(tmp_path, "a", margins={1: 0.1, 2: 0.2}, status=DONE)
    writer = SummaryWriter(run / "tensorboard")
    writer.add_scalar("val/margins/avg_logps", 0.25, 2)
    writer.add_scalar("val/margins/avg_logps", 0.3, 3)
    writer.close()
    write_report(tmp_path, tmp_path / "out")
    row = read_csv(tmp_path / "out" / "runs.csv")["a"]
    assert float(row["final val/margins/avg_logps"]) == pytest.approx(0.3)
    assert row["last_step"] == "3"


def test_plots_are_readable_pngs(sweep):
    curves = imread(sweep / "report" / "curves.png")
    assert curves.shape[1] > curves.shape[0] > 200  # three panels side by side
    assert imread(sweep / "report" / "margin_vs_lambda.png").shape[0] > 200
    assert "![curves](curves.png)" in (sweep / "report" / "report.md").read_text()


def test_cli_fails_clearly_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err.strip() == f"prefopt-report: error: no runs found under {tmp_path}"
    )
