"""The report's tables: one row per run, one per group of seeds; CSV and Markdown."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from statistics import mean, stdev

from prefopt.report.runs import METRICS, Run, sort_key


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
