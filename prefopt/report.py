"""``prefopt-report SWEEP_DIR``: tables and plots comparing the runs of a sweep (docs/sweeps.md).

Reads each run's ``config_resolved.yaml`` (or ``.hydra/config.yaml`` if it crashed before saving
one), ``status.json`` and TensorBoard events; writes ``report.md``, ``runs.csv``, ``seeds.csv``,
``curves.png`` and ``margin_vs_lambda.png`` to ``SWEEP_DIR/report/``. A sweep may still be running
or have failed jobs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev

from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.report_plots import plot_curves, plot_margin_vs_lambda

METRICS = (
    "val/margins/avg_logps",
    "val/accuracies/avg_logps",
    "val/logps/chosen",
    "val/logps/rejected",
    "val/nll_loss",
)
SKIP_DIRS = {"tensorboard", "checkpoints", "hf_model", ".hydra", ".submitit", "report"}

Curve = list[tuple[int, float]]


@dataclass
class Run:
    """One job of a sweep, as found on disk.

    Attributes:
        name: folder relative to the sweep dir (Hydra's override dirname).
        status: ``completed``, ``failed``, ``running`` or ``unfinished`` (no status, or
            "running" without a new event for ``stale_minutes``: a killed job).
        error: the failed job's exception, one line.
        objective: the objective class name in lower case (``orpo``, ``sft``, ``dpo``).
        lam: ORPO's lambda (``None`` for ``sft``, whose loss has none, and ``dpo``).
        group: the config without the seed: equal for runs that differ only by seed.
        curves: ``val/`` tag -> ``[(step, value)]``, sorted, one value per step.
    """

    name: str
    status: str
    error: str | None = None
    objective: str | None = None
    lam: float | None = None
    lr: float | None = None
    seed: int | None = None
    group: str = ""
    curves: dict[str, Curve] = field(default_factory=dict)

    @property
    def arm(self) -> str:
        """``orpo``, ``sft (λ=0)`` for ORPO with lam 0 (exactly SFT), ``sft``, ``dpo``, ..."""
        if self.objective == "orpo" and self.lam == 0:
            return "sft (λ=0)"
        return self.objective or "?"

    @property
    def is_sft(self) -> bool:
        return self.arm.startswith("sft")

    def final(self, tag: str) -> float | None:
        curve = self.curves.get(tag)
        return curve[-1][1] if curve else None

    def best_step(self, tag: str) -> int | None:
        """Step of the best value of ``tag`` (lowest for a ``loss`` tag, else highest)."""
        curve = self.curves.get(tag)
        if not curve:
            return None
        sign = -1.0 if "loss" in tag else 1.0
        return max(reversed(curve), key=lambda point: sign * point[1])[0]  # ties: the later

    def at(self, tag: str, step: int | None) -> float | None:
        return next((v for s, v in self.curves.get(tag, []) if s == step), None)


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders under ``sweep_dir`` (itself included) that hold a run: a ``.hydra`` folder, a
    ``status.json`` or a ``config_resolved.yaml``."""
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        if ".hydra" in dirs or "status.json" in files or "config_resolved.yaml" in files:
            found.append(Path(root))
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
    return sorted(found)


def read_curves(tensorboard_dir: Path) -> dict[str, Curve]:
    """The ``val/`` scalars of every event file in ``tensorboard_dir`` (fit and final validate);
    a step logged more than once keeps the value written last."""
    if not tensorboard_dir.is_dir():
        return {}
    acc = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    acc.Reload()
    curves = {}
    for tag in acc.Tags()["scalars"]:
        if tag.startswith("val/"):
            by_step = {event.step: event.value for event in acc.Scalars(tag)}
            curves[tag] = sorted(by_step.items())
    return curves


def _select(cfg: DictConfig, key: str) -> object:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _config(run_dir: Path) -> tuple[DictConfig | None, str]:
    """The run's config (resolved if saved) and its group key: the config as composed, without
    ``seed``, so that runs with equal keys differ only by seed."""
    resolved, composed = run_dir / "config_resolved.yaml", run_dir / ".hydra" / "config.yaml"
    if composed.exists():  # unresolved: data.seed is still ${seed}, paths ${hydra:...}
        raw_cfg = OmegaConf.load(composed)
        cfg = OmegaConf.load(resolved) if resolved.exists() else raw_cfg
        raw = OmegaConf.to_container(raw_cfg, resolve=False)
    elif resolved.exists():  # a run made without Hydra's app: drop what the seed and dir set
        cfg = OmegaConf.load(resolved)
        raw = OmegaConf.to_container(cfg, resolve=False)
        raw.pop("paths", None)
        raw.get("data", {}).pop("seed", None)
    else:
        return None, f"<no config: {run_dir}>"
    raw.pop("seed", None)
    return cfg, json.dumps(raw, sort_keys=True, default=str).replace(str(run_dir.resolve()), "")


def _status(run_dir: Path, stale_minutes: float) -> tuple[str, str | None]:
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return "unfinished", None
    state, error = status.get("status", "unfinished"), status.get("error")
    if state == "running":
        files = [run_dir / "status.json", *run_dir.glob("*.log"), *run_dir.glob("tensorboard/*")]
        last = max(f.stat().st_mtime for f in files if f.exists())
        if time.time() - last > stale_minutes * 60:
            state = "unfinished"
    return state, " ".join(error.split()) if error else None


def load_run(run_dir: Path, sweep_dir: Path, stale_minutes: float = 30.0) -> Run:
    """Everything the report needs about the run in ``run_dir``."""
    status, error = _status(run_dir, stale_minutes)
    cfg, group = _config(run_dir)
    run = Run(name=str(run_dir.relative_to(sweep_dir)) or ".", status=status, error=error)
    run.group = group
    run.curves = read_curves(run_dir / "tensorboard")
    if cfg is None:
        return run
    target = _select(cfg, "objective._target_")
    run.objective = str(target).rsplit(".", 1)[-1].lower() if target else None
    lam, lr, seed = (_select(cfg, k) for k in ("objective.lam", "optimizer.lr", "seed"))
    run.lam = float(lam) if isinstance(lam, (int, float)) and run.objective != "sft" else None
    run.lr = float(lr) if isinstance(lr, (int, float)) else None
    run.seed = int(seed) if isinstance(seed, int) else None
    return run


def load_runs(sweep_dir: Path, stale_minutes: float = 30.0) -> list[Run]:
    """Every run under ``sweep_dir``, ordered by arm, lr, lambda, seed."""
    runs = [load_run(d, sweep_dir, stale_minutes) for d in find_run_dirs(sweep_dir)]
    return sorted(runs, key=sort_key)


def sort_key(run: Run) -> tuple:
    none_last = float("inf")
    return (not run.is_sft, run.arm, run.lr or none_last, run.lam or 0.0, run.seed or 0, run.name)


def fmt(value: float | None) -> str:
    """Five significant digits (the CSV keeps every digit); empty for a missing value."""
    return "" if value is None else f"{value:.5g}"


def run_rows(runs: list[Run], best_by: str) -> list[dict[str, object]]:
    """One row per run: settings, status, and each metric's final value and value at the best
    step of ``best_by``."""
    rows = []
    for run in runs:
        step = run.best_step(best_by)
        row = {"run": run.name, "status": run.status, "objective": run.arm, "lam": run.lam}
        last = max((curve[-1][0] for curve in run.curves.values()), default=None)
        row |= {"lr": run.lr, "seed": run.seed, "last_step": last, "best_step": step}
        row |= {f"final {tag}": run.final(tag) for tag in METRICS}
        row |= {f"best {tag}": run.at(tag, step) for tag in METRICS}
        rows.append(row | {"error": run.error})
    return rows


def seed_rows(runs: list[Run]) -> list[dict[str, object]]:
    """Runs that differ only by seed, pooled: mean and sample std of the final metrics over the
    completed ones."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    rows = []
    for members in sorted(groups.values(), key=lambda g: sort_key(g[0])):
        done = [r for r in members if r.status == "completed"]
        row = {"objective": members[0].arm, "lam": members[0].lam, "lr": members[0].lr}
        row |= {"seeds": " ".join(str(r.seed) for r in members)}
        row |= {"completed": len(done), "runs": len(members)}
        for tag in METRICS:
            values = [v for v in (r.final(tag) for r in done) if v is not None]
            row[f"mean {tag}"] = mean(values) if values else None
            row[f"std {tag}"] = stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])


def _pair(value: float | None, other: float | None, sep: str) -> str:
    """``value<sep>other`` (final / best, mean ± std); one of them or nothing when missing."""
    return "" if value is None else fmt(value) if other is None else fmt(value) + sep + fmt(other)


def _settings(row: dict[str, object]) -> list[str]:
    lam = "—" if row["lam"] is None else fmt(row["lam"])  # sft: its loss has no lambda
    return [str(row["objective"]), lam, fmt(row["lr"]), str(row.get("seed", row.get("seeds")))]


def markdown(
    runs: list[Run],
    rows: list[dict[str, object]],
    seeds: list[dict[str, object]],
    best_by: str,
    plots: list[Path],
    sweep_dir: Path,
) -> str:
    """``report.md``: counts, the per-run table, the per-seed table, errors, plots."""
    counts = Counter(run.status for run in runs)
    short = [tag.removeprefix("val/") for tag in METRICS]
    per_run = _md_table(
        ["run", "status", "objective", "λ", "lr", "seed", "step"]
        + [f"{name} final / best" for name in short],
        [
            [f"`{r['run']}`", r["status"] if r["status"] == "completed" else f"**{r['status']}**"]
            + [*_settings(r), str(r["last_step"] or "")]
            + [_pair(r[f"final {t}"], r[f"best {t}"], " / ") for t in METRICS]
            for r in rows
        ],
    )
    pooled = _md_table(
        ["objective", "λ", "lr", "seeds", "completed"] + [f"{name} mean ± std" for name in short],
        [
            [*_settings(g), f"{g['completed']}/{g['runs']}"]
            + [_pair(g[f"mean {t}"], g[f"std {t}"], " ± ") for t in METRICS]
            for g in seeds
        ],
    )
    failed = [f"- `{run.name}`: {run.error}" for run in runs if run.status == "failed"]
    parts = [
        f"# Sweep report: `{sweep_dir}`",
        f"{len(runs)} run(s): " + ", ".join(f"{n} {status}" for status, n in counts.items()) + ". "
        f"*best*: the value at the validation step with the best `{best_by}`. "
        "`sft (λ=0)` is ORPO with λ = 0, exactly SFT; `sft`'s loss has no λ.",
        "## Runs",
        per_run,
        "## Mean ± std over seeds (final values of completed runs)",
        pooled,
        *(["## Failed runs", "\n".join(failed)] if failed else []),
        "## Plots",
        *(f"![{path.stem}]({path.name})" for path in plots),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(
    sweep_dir: Path, out_dir: Path, best_by: str = METRICS[0], stale_minutes: float = 30.0
) -> list[Path]:
    """Write the tables and plots for ``sweep_dir`` to ``out_dir``; return the written files."""
    runs = load_runs(sweep_dir, stale_minutes)
    if not runs:
        raise FileNotFoundError(f"no runs found under {sweep_dir}")
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


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``prefopt-report``)."""
    parser = argparse.ArgumentParser(prog="prefopt-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (or a single run)")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report)")
    parser.add_argument("--best-by", default=METRICS[0], help="val/ tag that picks the best step")
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=30.0,
        help="'running' without a new event for this long: reported as unfinished (a killed job)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.sweep_dir / "report"
    try:
        written = write_report(args.sweep_dir, out, args.best_by, args.stale_minutes)
    except FileNotFoundError as err:
        print(f"prefopt-report: error: {err}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(str(p) for p in written))


if __name__ == "__main__":
    main()
