"""The report's tables: one row per run, one per arm (mean, std, 95 % CI over seeds), the paired
differences from a baseline arm; as CSV and Markdown."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from prefopt.report.arms import arms, short, swept_keys
from prefopt.report.runs import SHOWN, Run
from prefopt.report.stats import CONFIDENCE, Paired, Summary, paired, summarize


def fmt(value: float | None) -> str:
    """Four significant digits (the CSV keeps every digit); empty for a missing value."""
    return "" if value is None else f"{value:.4g}"


def _keys(runs: list[Run]) -> list[str]:
    """Every key that labels some arm, in a stable order."""
    seen: dict[str, None] = {}
    for keys in swept_keys(runs).values():
        seen.update(dict.fromkeys(keys))
    return list(seen)


def run_rows(runs: list[Run], metrics: list[str], best_by: str) -> list[dict[str, object]]:
    """One row per run: arm, swept values, status, and each metric's final value and its value
    at the best step of ``best_by``."""
    keys = _keys(runs)
    rows = []
    for run in runs:
        step = run.best_step(best_by)
        row: dict[str, object] = {"run": run.name, "status": run.status, "arm": run.label}
        row |= {"objective": run.objective} | {short(k): run.config.get(k) for k in keys}
        row |= {"seed": run.seed, "last_step": run.last_step, "best_step": step}
        row |= {f"final {tag}": run.final(tag) for tag in metrics}
        row |= {f"best {tag}": run.at(tag, step) for tag in metrics}
        rows.append(row | {"error": run.error})
    return rows


def arm_summaries(runs: list[Run], metrics: list[str]) -> dict[str, dict[str, Summary | None]]:
    """``{arm: {metric: summary of the final values of its completed runs}}``."""
    return {
        label: {
            tag: summarize([r.final(tag) for r in members if r.status == "completed"])
            for tag in metrics
        }
        for label, members in arms(runs).items()
    }


def arm_rows(runs: list[Run], metrics: list[str]) -> list[dict[str, object]]:
    """One row per arm: its seeds, how many completed, and per metric mean, std and CI."""
    summaries = arm_summaries(runs, metrics)
    rows = []
    for label, members in arms(runs).items():
        done = [r for r in members if r.status == "completed"]
        row: dict[str, object] = {"arm": label, "objective": members[0].objective}
        row |= {"seeds": " ".join(str(r.seed) for r in members)}
        row |= {"completed": len(done), "runs": len(members)}
        for tag in metrics:
            s = summaries[label][tag]
            row |= {
                f"mean {tag}": s and s.mean,
                f"std {tag}": s and s.std,
                f"ci_low {tag}": s and s.low,
                f"ci_high {tag}": s and s.high,
            }
        rows.append(row)
    return rows


def _by_seed(members: list[Run], tag: str) -> dict[int, float]:
    return {
        r.seed: r.final(tag)
        for r in members
        if r.status == "completed" and r.seed is not None and r.final(tag) is not None
    }


def paired_rows(runs: list[Run], metrics: list[str], baseline: str) -> list[dict[str, object]]:
    """One row per arm other than ``baseline``: per metric, the mean paired difference from the
    baseline over the seeds both completed, its CI and the paired t-test's p-value."""
    grouped = arms(runs)
    base = grouped[baseline]
    rows = []
    for label, members in grouped.items():
        if label == baseline:
            continue
        row: dict[str, object] = {"arm": label, "baseline": baseline}
        for tag in metrics:
            result = paired(_by_seed(members, tag), _by_seed(base, tag))
            row |= {
                f"pairs {tag}": result and result.n,
                f"diff {tag}": result and result.diff.mean,
                f"ci_low {tag}": result and result.diff.low,
                f"ci_high {tag}": result and result.diff.high,
                f"p {tag}": result and result.p,
            }
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
    """``value<sep>other`` (final / best); one of them or nothing when missing."""
    return "" if value is None else fmt(value) if other is None else fmt(value) + sep + fmt(other)


def _summary(s: Summary | None) -> str:
    if s is None:
        return ""
    if s.std is None:
        return f"{fmt(s.mean)} (n=1)"
    return f"{fmt(s.mean)} ± {fmt(s.std)} [{fmt(s.low)}, {fmt(s.high)}]"


def _paired_cell(result: Paired | None) -> str:
    if result is None:
        return ""
    d = result.diff
    interval = f" [{fmt(d.low)}, {fmt(d.high)}]" if d.low is not None else ""
    p = f", p={result.p:.2g}" if result.p is not None else ""
    return f"{d.mean:+.4g}{interval}{p} (n={result.n})"


def _name(tag: str) -> str:
    return tag.removeprefix("val/")


def markdown(
    runs: list[Run],
    metrics: list[str],
    best_by: str,
    plots: list[Path],
    sweep_dir: Path,
    baseline: str | None = None,
) -> str:
    """``report.md``: counts, the per-run table, the per-arm table, paired differences, errors,
    plots."""
    counts = Counter(run.status for run in runs)
    shown = [t for t in metrics if t in SHOWN]
    generation = [t for t in metrics if t.startswith("val/gen/")]
    per_run = _md_table(
        ["run", "status", "arm", "seed", "step"] + [f"{_name(t)} final / best" for t in shown],
        [
            [f"`{r.name}`", r.status if r.status == "completed" else f"**{r.status}**"]
            + [r.label, str(r.seed if r.seed is not None else ""), str(r.last_step or "")]
            + [_pair(r.final(t), r.at(t, r.best_step(best_by)), " / ") for t in shown]
            for r in runs
        ],
    )
    grouped = arms(runs)
    level = f"{CONFIDENCE:.0%}"
    parts = [
        f"# Sweep report: `{sweep_dir}`",
        f"{len(runs)} run(s): " + ", ".join(f"{n} {status}" for status, n in counts.items()) + ". "
        f"*best*: the value at the validation step with the best `{best_by}`. An arm is the "
        "runs that differ only by their seed; its label is the objective and what was swept.",
        "## Runs",
        per_run,
    ]
    for title, tags in (("", shown), (" — generation", generation)):
        if not tags:
            continue
        summaries = arm_summaries(runs, tags)
        parts += [
            f"## Arms{title}: mean ± std [{level} CI, Student's t] over seeds (final values, "
            "completed runs)",
            _md_table(
                ["arm", "seeds", "completed"] + [_name(t) for t in tags],
                [
                    [label, " ".join(str(r.seed) for r in members)]
                    + [f"{sum(r.status == 'completed' for r in members)}/{len(members)}"]
                    + [_summary(summaries[label][t]) for t in tags]
                    for label, members in grouped.items()
                ],
            ),
        ]
        if baseline is None:
            continue
        base = grouped[baseline]
        lines = [
            [label, *(_paired_cell(paired(_by_seed(m, t), _by_seed(base, t))) for t in tags)]
            for label, m in grouped.items()
            if label != baseline
        ]
        parts += [
            f"## Paired differences from `{baseline}`{title} (arm − baseline, same seeds; mean "
            f"[{level} CI], paired t-test p)",
            _md_table(["arm"] + [_name(t) for t in tags], lines),
        ]
    problems = [r for r in runs if r.status in ("failed", "interrupted")]
    if problems:
        lines = [
            f"- `{r.name}`: {r.error}"
            if r.status == "failed"
            else f"- `{r.name}`: interrupted "
            f"at step {r.step} (resume with `ckpt_path=last hydra.run.dir=<its folder>`)"
            for r in problems
        ]
        parts += ["## Failed and interrupted runs", "\n".join(lines)]
    parts += ["## Plots", *(f"![{path.stem}]({path.name})" for path in plots)]
    return "\n\n".join(parts) + "\n"
