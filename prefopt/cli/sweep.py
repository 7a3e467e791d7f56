"""The end of a multirun: a short table of its jobs, the ``prefopt-report`` line, the exit code.

A Hydra callback (``configs/hydra/default.yaml``): when every job of ``prefopt-train -m`` has
ended, it reads each job's ``status.json`` and prints one row per job (status, last step, the
λ-free margin and accuracy, or the error), then the command that turns the sweep into tables and
plots. A sweep with a failed or interrupted job exits with code 1 after the table; a job that
failed on a user's mistake did not stop the others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = (("val/margins/avg_logps", "margin"), ("val/accuracies/avg_logps", "acc"))


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """``{job, status, ...}`` of every job folder under ``sweep_dir`` (those with a status)."""
    rows = []
    for status_file in sorted(sweep_dir.rglob("status.json")):
        try:
            status = json.loads(status_file.read_text())
        except json.JSONDecodeError:
            status = {"status": "unreadable"}
        job = status_file.parent.relative_to(sweep_dir).as_posix() or "."
        rows.append({"job": job, **status})
    return rows


def summary(rows: list[dict[str, Any]], sweep_dir: Path) -> str:
    """The table and the report command, as printed at the end of a multirun."""
    width = max([len(r["job"]) for r in rows] + [3])
    lines = [f"{'job':<{width}}  {'status':<11}  {'margin':>8}  {'acc':>6}  note"]
    for row in rows:
        metrics = row.get("metrics") or {}
        values = [metrics.get(key) for key, _ in COLUMNS]
        cells = [f"{v:8.4f}" if isinstance(v, (int, float)) else f"{'':8}" for v in values[:1]]
        cells += [f"{v:6.3f}" if isinstance(v, (int, float)) else f"{'':6}" for v in values[1:]]
        note = row.get("error") or (f"at step {row['step']}" if "step" in row else "")
        lines.append(
            f"{row['job']:<{width}}  {row.get('status', '?'):<11}  {'  '.join(cells)}  {note}"
        )
    lines.append(f"report: prefopt-report {sweep_dir}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Print :func:`summary` when a multirun ends; exit 1 if a job failed or was interrupted."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = job_rows(sweep_dir)
        if not rows:
            return
        print(summary(rows, sweep_dir), flush=True)
        if any(row.get("status") != "completed" for row in rows):
            sys.exit(1)
