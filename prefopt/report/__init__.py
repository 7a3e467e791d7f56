"""Reporting: runs on disk -> tables -> plots (``prefopt-report``). A leaf: only the CLI imports it.

Reads each run's ``config_resolved.yaml`` (or ``.hydra/config.yaml`` if it crashed before saving
one), ``status.json`` and TensorBoard events; writes ``report.md``, ``runs.csv``, ``seeds.csv``,
``curves.png`` and ``margin_vs_lambda.png`` to ``SWEEP_DIR/report/``. A sweep may still be running
or have failed jobs.
"""

from __future__ import annotations

from pathlib import Path

from prefopt.errors import DataNotFoundError
from prefopt.report.plots import plot_curves, plot_margin_vs_lambda
from prefopt.report.runs import METRICS, Run, load_runs
from prefopt.report.tables import markdown, run_rows, seed_rows, write_csv

__all__ = ["METRICS", "Run", "load_runs", "write_report"]


def write_report(
    sweep_dir: Path, out_dir: Path, best_by: str = METRICS[0], stale_minutes: float = 30.0
) -> list[Path]:
    """Write the tables and plots for ``sweep_dir`` to ``out_dir``; return the written files."""
    runs = load_runs(sweep_dir, stale_minutes)
    if not runs:
        raise DataNotFoundError(f"no runs found under {sweep_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, seeds = run_rows(runs, best_by), seed_rows(runs)
    write_csv(rows, out_dir / "runs.csv")
    write_csv(seeds, out_dir / "seeds.csv")
    plots = [plot_curves(runs, out_dir / "curves.png")]
    plots = [
        p for p in [*plots, plot_margin_vs_lambda(runs, out_dir / "margin_vs_lambda.png")] if p
    ]
    report = out_dir / "report.md"
    report.write_text(markdown(runs, rows, seeds, best_by, plots, sweep_dir))
    return [report, out_dir / "runs.csv", out_dir / "seeds.csv", *plots]
