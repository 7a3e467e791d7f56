"""prefopt-report on hand-made sweeps: known event values, arms labelled by what was swept, means
with Student-t intervals, paired differences from a baseline, every run status."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from prefopt.cli.report import main
from prefopt.report import write_report

CLASSES = {"orpo": "ORPO", "sft": "SFT", "simpo": "SimPO"}
T_975_DF2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom


def make_run(
    sweep: Path,
    name: str,
    *,
    objective: str = "orpo",
    hparams: dict | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    margins: dict[int, float] | None = None,
    extra: dict[str, dict[int, float]] | None = None,
    status: dict | None = None,
    saved: bool = True,
) -> Path:
    """A job folder as prefopt-train writes it: Hydra's composed config, the resolved config
    (``saved``), ``status.json`` (``status``; none if ``None``) and ``val/`` events, where
    ``val/avg_logps/chosen`` is ``-1 + margin``, ``val/avg_logps/rejected`` is ``-1`` and
    ``val/accuracies/avg_logps`` is ``0.5 + margin / 10``."""
    run = sweep / name
    composed = {
        "seed": seed,
        "objective": {
            "_target_": f"prefopt.objectives.{objective}.{CLASSES[objective]}",
            **(hparams if hparams is not None else {"lam": 0.1}),
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
    if margins or extra:
        writer = SummaryWriter(run / "tensorboard")
        for step, margin in (margins or {}).items():
            writer.add_scalar("val/margins/avg_logps", margin, step)
            writer.add_scalar("val/accuracies/avg_logps", 0.5 + margin / 10, step)
            writer.add_scalar("val/avg_logps/chosen", -1.0 + margin, step)
            writer.add_scalar("val/avg_logps/rejected", -1.0, step)
            writer.add_scalar("val/nll_loss", 2.0 - step / 100, step)
        for tag, points in (extra or {}).items():
            for step, value in points.items():
                writer.add_scalar(tag, value, step)
        writer.close()
    return run


def read_csv(path: Path, key: str = "run") -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row[key]: row for row in csv.DictReader(f)}


DONE = {"status": "completed"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """ORPO at λ 0.1 and 0.5 and SFT (whose lam only scales metrics), seeds 0-2, and the report
    with SFT as the baseline (written once: plots are slow).

    Final margins: ORPO λ=0.1 (0.1, 0.2, 0.3), λ=0.5 (0.3, 0.5, 0.4), SFT (0.0, 0.1, 0.05); the
    best ORPO λ=0.1 margin is at step 20 (0.5 + seed)."""
    sweep = tmp_path_factory.mktemp("sweep")
    for seed, final in enumerate((0.1, 0.2, 0.3)):
        margins = {0: 0.0, 10: 0.0, 20: 0.5 + seed, 30: final}
        make_run(sweep, f"lam=0.1,seed={seed}", seed=seed, margins=margins, status=DONE)
    for seed, final in enumerate((0.3, 0.5, 0.4)):
        make_run(
            sweep,
            f"lam=0.5,seed={seed}",
            hparams={"lam": 0.5},
            seed=seed,
            margins={0: 0.0, 30: final},
            status=DONE,
        )
    for seed, (lam, final) in enumerate(((0.1, 0.0), (0.5, 0.1), (0.1, 0.05))):
        make_run(
            sweep,
            f"objective=sft,lam={lam},seed={seed}",
            objective="sft",
            hparams={"lam": lam},
            seed=seed,
            margins={0: 0.0, 30: final},
            status=DONE,
        )
    main([str(sweep), "--baseline", "sft"])  # writes to <sweep>/report
    return sweep


def test_cli_writes_the_tables_and_plots_to_sweep_dir_report(sweep):
    assert sorted(p.name for p in (sweep / "report").iterdir()) == [
        "arms.csv",
        "curves.png",
        "final_vs_lambda.png",
        "paired.csv",
        "report.md",
        "runs.csv",
    ]


def test_arms_are_labelled_by_the_objective_and_what_was_swept(sweep):
    runs = read_csv(sweep / "report" / "runs.csv")
    assert runs["lam=0.1,seed=2"]["arm"] == "orpo λ=0.1"
    assert runs["lam=0.5,seed=0"]["arm"] == "orpo λ=0.5"
    # SFT's lam only scales rewards/*: its runs are one arm whatever their lam
    assert {
        runs[f"objective=sft,lam={lam},seed={s}"]["arm"] for s, lam in enumerate((0.1, 0.5, 0.1))
    } == {"sft"}
    seed2 = runs["lam=0.1,seed=2"]
    assert (seed2["objective"], seed2["λ"], seed2["seed"]) == ("orpo", "0.1", "2")
    assert float(seed2["final val/margins/avg_logps"]) == pytest.approx(0.3)
    assert float(seed2["final val/avg_logps/chosen"]) == pytest.approx(-0.7)
    # best: every metric at the step where the margin peaked (step 20, margin 2.5)
    assert seed2["best_step"] == "20" and seed2["last_step"] == "30"
    assert float(seed2["best val/margins/avg_logps"]) == pytest.approx(2.5)
    assert float(seed2["best val/nll_loss"]) == pytest.approx(1.8)


def test_arm_means_have_student_t_intervals(sweep):
    arms = read_csv(sweep / "report" / "arms.csv", key="arm")
    assert list(arms) == ["orpo λ=0.1", "orpo λ=0.5", "sft"]
    orpo = arms["orpo λ=0.1"]
    assert orpo["seeds"] == "0 1 2" and orpo["completed"] == "3"
    tag = "val/margins/avg_logps"
    assert float(orpo[f"mean {tag}"]) == pytest.approx(0.2)
    assert float(orpo[f"std {tag}"]) == pytest.approx(0.1)  # sample std
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert float(orpo[f"ci_low {tag}"]) == pytest.approx(0.2 - half)
    assert float(orpo[f"ci_high {tag}"]) == pytest.approx(0.2 + half)
    report = (sweep / "report" / "report.md").read_text()
    assert (
        f"| orpo λ=0.1 | 0 1 2 | 3/3 | 0.2 ± 0.1 [{0.2 - half:.4g}, {0.2 + half:.4g}] |" in report
    )


def test_paired_differences_from_the_baseline(sweep):
    """ORPO λ=0.5 − SFT per seed: 0.3, 0.4, 0.35 -> mean 0.35, std 0.05, t = 0.35 / (0.05 / √3)
    = 12.12 with 2 degrees of freedom: p = 0.00674 (two-sided)."""
    paired = read_csv(sweep / "report" / "paired.csv", key="arm")
    row = paired["orpo λ=0.5"]
    tag = "val/margins/avg_logps"
    assert row["baseline"] == "sft" and row[f"pairs {tag}"] == "3"
    assert float(row[f"diff {tag}"]) == pytest.approx(0.35)
    half = T_975_DF2 * 0.05 / math.sqrt(3)
    assert float(row[f"ci_low {tag}"]) == pytest.approx(0.35 - half)
    assert float(row[f"p {tag}"]) == pytest.approx(0.006738, rel=1e-3)
    assert "sft" not in paired
    report = (sweep / "report" / "report.md").read_text()
    assert "## Paired differences from `sft`" in report
    assert "| orpo λ=0.5 | +0.35 [" in report and "p=0.0067 (n=3)" in report


def test_a_swept_objective_hyperparameter_is_tabulated_and_plotted_by_its_value(tmp_path):
    for gamma in (0.5, 1.0):
        for seed in (0, 1):
            make_run(
                tmp_path,
                f"gamma={gamma},seed={seed}",
                objective="simpo",
                hparams={"beta": 2.0, "gamma": gamma},
                seed=seed,
                margins={0: 0.0, 10: gamma + seed / 10},
                status=DONE,
            )
    written = write_report(tmp_path, tmp_path / "out")
    arms = read_csv(tmp_path / "out" / "arms.csv", key="arm")
    assert list(arms) == ["simpo γ=0.5", "simpo γ=1"]
    assert float(arms["simpo γ=1"]["mean val/margins/avg_logps"]) == pytest.approx(1.05)
    assert tmp_path / "out" / "final_vs_gamma.png" in written
    assert imread(tmp_path / "out" / "final_vs_gamma.png").shape[0] > 200


def test_generation_metrics_get_columns_and_intervals(tmp_path):
    for seed, accuracy in enumerate((0.5, 0.7)):
        make_run(
            tmp_path,
            f"seed={seed}",
            seed=seed,
            margins={0: 0.0, 10: 0.1},
            extra={"val/gen/exact_match/accuracy": {0: 0.1, 10: accuracy}},
            status=DONE,
        )
    write_report(tmp_path, tmp_path / "out")
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert float(runs["seed=1"]["final val/gen/exact_match/accuracy"]) == pytest.approx(0.7)
    arms = read_csv(tmp_path / "out" / "arms.csv", key="arm")
    assert float(arms["orpo"]["mean val/gen/exact_match/accuracy"]) == pytest.approx(0.6)
    assert "gen/exact_match/accuracy" in (tmp_path / "out" / "report.md").read_text()


def test_failed_interrupted_running_unfinished_and_early_crashed_runs_are_marked(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep, "lam=0.1", margins={5: 0.1}, status=DONE)
    error = "orpo: lam must be in [0, 1e+06],\n got -1"
    make_run(sweep, "lam=-1", hparams={"lam": -1.0}, status={"status": "failed", "error": error})
    make_run(sweep, "lam=0.2", hparams={"lam": 0.2}, margins={5: 0.2}, status={"status": "running"})
    killed = make_run(
        sweep, "lam=0.3", hparams={"lam": 0.3}, margins={5: 0.3}, status={"status": "running"}
    )
    hours_ago = time.time() - 2 * 3600
    for path in [killed / "status.json", *killed.glob("tensorboard/*")]:
        os.utime(path, (hours_ago, hours_ago))
    make_run(sweep, "lam=0.4", hparams={"lam": 0.4}, lr=2e-3, seed=7, saved=False)  # no status
    make_run(
        sweep,
        "lam=0.6",
        hparams={"lam": 0.6},
        margins={5: 0.6},
        status={"status": "interrupted", "step": 5, "signal": 2},
    )

    write_report(sweep, tmp_path / "out", stale_minutes=30)
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert {name: row["status"] for name, row in runs.items()} == {
        "lam=0.1": "completed",
        "lam=-1": "failed",
        "lam=0.2": "running",
        "lam=0.3": "unfinished",
        "lam=0.4": "unfinished",
        "lam=0.6": "interrupted",
    }
    assert runs["lam=-1"]["error"] == "orpo: lam must be in [0, 1e+06], got -1"
    assert runs["lam=-1"]["final val/margins/avg_logps"] == ""
    # read from .hydra/config.yaml: the run crashed before saving config_resolved.yaml
    assert (runs["lam=0.4"]["λ"], runs["lam=0.4"]["lr"], runs["lam=0.4"]["seed"]) == (
        "0.4",
        "0.002",
        "7",
    )
    report = (tmp_path / "out" / "report.md").read_text()
    assert "6 run(s): " in report and "1 failed" in report and "2 unfinished" in report
    assert "- `lam=-1`: orpo: lam must be in [0, 1e+06], got -1" in report
    assert "- `lam=0.6`: interrupted at step 5 (resume with `ckpt_path=last" in report
    assert "| `lam=-1` | **failed** |" in report


def test_a_step_logged_twice_keeps_the_value_written_last(tmp_path):
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
    assert imread(sweep / "report" / "final_vs_lambda.png").shape[0] > 200
    assert "![curves](curves.png)" in (sweep / "report" / "report.md").read_text()


def test_an_unknown_baseline_lists_the_arms(sweep, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), "--baseline", "dpo", "--out", str(sweep / "other")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "prefopt-report: error: --baseline 'dpo' matches 0 arms; the arms are: orpo λ=0.1, "
        "orpo λ=0.5, sft"
    )


def test_cli_fails_clearly_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err.strip() == f"prefopt-report: error: no runs found under {tmp_path}"
    )
