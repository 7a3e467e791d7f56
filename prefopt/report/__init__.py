"""Reporting: runs on disk -> tables -> plots (``prefopt-report``). A leaf: only the CLI imports it.

Reads each run's ``config_resolved.yaml`` (or ``.hydra/config.yaml`` if it crashed before saving
one), ``status.json`` and TensorBoard events; writes ``report.md``, ``runs.csv``, ``arms.csv``
(mean, std and 95 % CI over seeds per arm), ``paired.csv`` (with a baseline), ``curves.png`` and
``final_vs_<key>.png`` per swept numeric key to ``SWEEP_DIR/report/``. A sweep may still be
running or have failed jobs.
"""

from __future__ import annotations

from pathlib import Path

from prefopt.errors import DataNotFoundError
from prefopt.report.arms import arms, find_arm, label_arms, short
from prefopt.report.plots import AGAINST_TAGS, numeric_keys, plot_against, plot_curves
from prefopt.report.runs import METRICS, Run, find_run_dirs, load_run, metrics_of
from prefopt.report.tables import arm_rows, markdown, paired_rows, run_rows, write_csv

__all__ = ["METRICS", "Run", "load_runs", "write_report"]


def load_runs(sweep_dir: Path, stale_minutes: float = 30.0) -> list[Run]:
    """Every run under ``sweep_dir``, labelled by its arm and sorted."""
    return label_arms([load_run(d, sweep_dir, stale_minutes) for d in find_run_dirs(sweep_dir)])


def _file_name(key: str) -> str:
    name = {"λ": "lambda", "β": "beta", "γ": "gamma", "α": "alpha", "τ": "tau"}.get(short(key))
    return name or short(key).replace("/", "_").replace(".", "_")


def write_report(
    sweep_dir: Path,
    out_dir: Path,
    best_by: str = METRICS[0],
    stale_minutes: float = 30.0,
    baseline: str | None = None,
) -> list[Path]:
    """Write the tables and plots for ``sweep_dir`` to ``out_dir``; return the written files.

    Args:
        baseline: an arm (its label, or an objective with one arm) to compare every other arm
            with, seed by seed.
    """
    runs = load_runs(sweep_dir, stale_minutes)
    if not runs:
        raise DataNotFoundError(f"no runs found under {sweep_dir}")
    if baseline is not None:
        baseline = find_arm(list(arms(runs)), baseline)
    metrics = metrics_of(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "runs.csv", out_dir / "arms.csv"]
    write_csv(run_rows(runs, metrics, best_by), written[0])
    write_csv(arm_rows(runs, metrics), written[1])
    if baseline is not None:
        written.append(out_dir / "paired.csv")
        write_csv(paired_rows(runs, metrics, baseline), written[-1])
    against = [*AGAINST_TAGS, *(t for t in metrics if t.startswith("val/gen/"))]
    plots = [plot_curves(runs, out_dir / "curves.png")]
    for key in numeric_keys(runs):
        plots.append(plot_against(runs, key, against, out_dir / f"final_vs_{_file_name(key)}.png"))
    plots = [p for p in plots if p is not None]
    report = out_dir / "report.md"
    report.write_text(markdown(runs, metrics, best_by, plots, sweep_dir, baseline))
    return [report, *written, *plots]
