"""The report's plots: validation curves per arm, and final metrics against each swept key.

Every objective is drawn on the same axes: per-token mean log-probs (``avg_logps/*``, logged by
every objective), never DPO's sums next to ORPO's means. Curves start at the step-0 validation;
panels of a column share their y limits.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from prefopt.report.arms import arms, short, swept_keys
from prefopt.report.runs import Run
from prefopt.report.stats import summarize

CURVE_TAGS = ("val/margins/avg_logps", "val/avg_logps/chosen", "val/avg_logps/rejected")
AGAINST_TAGS = ("val/margins/avg_logps", "val/accuracies/avg_logps")
ROW_KEY = "optimizer.lr"
MAX_ROWS = 4  # more learning rates than this (an Optuna search): one row


def _colors(labels: list[str]) -> dict[str, object]:
    palette = colormaps["tab10"]
    return {label: palette(i % 10) for i, label in enumerate(labels)}


def _pool(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std per step over the seeds that reached that step."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            by_step[step].append(value)
    steps = sorted(by_step)
    means = [mean(by_step[s]) for s in steps]
    stds = [stdev(by_step[s]) if len(by_step[s]) > 1 else 0.0 for s in steps]
    return steps, means, stds


def plot_curves(runs: list[Run], path: Path) -> Path | None:
    """Margin and chosen / rejected per-token log-probs against the step, one line per arm
    (mean over seeds, ±1 std shaded), one row per learning rate when it was swept."""
    runs = [r for r in runs if any(tag in r.curves for tag in CURVE_TAGS)]
    if not runs:
        return None
    swept = {k for keys in swept_keys(runs).values() for k in keys}
    lrs = sorted({r.config.get(ROW_KEY) for r in runs}, key=lambda v: (v is None, v or 0.0))
    rows = lrs if ROW_KEY in swept and len(lrs) <= MAX_ROWS else [None]
    grouped = arms(runs)
    colors = _colors(list(grouped))
    fig = Figure(figsize=(4.2 * len(CURVE_TAGS), 3.2 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(CURVE_TAGS), squeeze=False, sharey="col", sharex=True)
    for i, lr in enumerate(rows):
        for j, tag in enumerate(CURVE_TAGS):
            ax = axes[i][j]
            for label, members in grouped.items():
                if lr is not None and members[0].config.get(ROW_KEY) != lr:
                    continue
                steps, means, stds = _pool([r.curves[tag] for r in members if tag in r.curves])
                if not steps:
                    continue
                ax.plot(steps, means, label=label, marker=".", color=colors[label])
                if len(members) > 1:
                    lo = [m - s for m, s in zip(means, stds)]
                    hi = [m + s for m, s in zip(means, stds)]
                    ax.fill_between(steps, lo, hi, color=colors[label], alpha=0.15)
            title = tag.removeprefix("val/")
            ax.set_title(title if lr is None else f"{title} (lr={lr:g})", fontsize=10)
            ax.set_xlabel("step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


def numeric_keys(runs: list[Run]) -> list[str]:
    """The swept keys that take numeric values (the x axes of :func:`plot_against`)."""
    keys: dict[str, None] = {}
    for objective_keys in swept_keys(runs).values():
        keys.update(dict.fromkeys(objective_keys))
    return [
        k
        for k in keys
        if all(isinstance(r.config.get(k), (int, float, type(None))) for r in runs)
        and any(isinstance(r.config.get(k), (int, float)) for r in runs)
    ]


def plot_against(runs: list[Run], key: str, tags: list[str], path: Path) -> Path | None:
    """Final values of ``tags`` against ``key`` (one line per objective and other swept values,
    mean over seeds with 95 % CI bars); arms without ``key`` as dashed horizontal lines."""
    done = [r for r in runs if r.status == "completed"]
    keys = swept_keys(runs)

    def x(run: Run) -> float | None:  # None: the run's arm is not defined by ``key``
        value = run.config.get(key) if key in keys.get(run.arm_name, []) else None
        return float(value) if isinstance(value, (int, float)) else None

    if not any(x(r) is not None for r in done):
        return None
    tags = [t for t in tags if any(r.final(t) is not None for r in done)]
    fig = Figure(figsize=(4.6 * len(tags), 3.6), layout="constrained")
    axes = fig.subplots(1, len(tags), squeeze=False)[0]
    lines: dict[str, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    flat: dict[str, list[Run]] = {}
    for run in done:
        if x(run) is not None:
            rest = " ".join(p for p in run.label.split(" ") if not p.startswith(f"{short(key)}="))
            lines[rest][x(run)].append(run)
        else:
            flat.setdefault(run.label, []).append(run)
    colors = _colors([*lines, *flat])
    for ax, tag in zip(axes, tags):
        for label, points in lines.items():
            xs = sorted(points)
            stats = [summarize([r.final(tag) for r in points[x]]) for x in xs]
            kept = [(x, s) for x, s in zip(xs, stats) if s is not None]
            if not kept:
                continue
            ys = [s.mean for _, s in kept]
            errors = [(s.high - s.mean) if s.high is not None else 0.0 for _, s in kept]
            ax.errorbar(
                [x for x, _ in kept],
                ys,
                yerr=errors,
                marker="o",
                capsize=3,
                color=colors[label],
                label=label,
            )
        for label, members in flat.items():
            s = summarize([r.final(tag) for r in members])
            if s is not None:
                ax.axhline(s.mean, color=colors[label], linestyle="--", label=label)
        ax.set_xlabel(short(key))
        ax.set_title(f"final {tag.removeprefix('val/')}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path
