"""The report's plots: validation curves of ORPO arms against SFT, and final margin against λ."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from prefopt.report.runs import Run

CURVE_TAGS = ("val/margins/avg_logps", "val/logps/chosen", "val/logps/rejected")
MARGIN = "val/margins/avg_logps"
MAX_LR_ROWS = 4  # more learning rates than this (an Optuna search): one row, lr in the labels


def _label(run: Run) -> str:
    if run.objective == "orpo" and not run.is_sft:
        return f"ORPO λ={run.lam:g}"
    return run.arm.upper() if run.arm in ("sft", "dpo") else run.arm.replace("sft", "SFT")


def _style(run: Run, lams: list[float]) -> dict[str, object]:
    """SFT arms in black (dashed for ``objective=sft``), ORPO λ values along a colour map."""
    if run.is_sft:
        return {"color": "black", "linestyle": "--" if run.objective == "sft" else "-"}
    if run.objective == "orpo" and len(lams) > 0:
        position = lams.index(run.lam) / max(len(lams) - 1, 1)
        return {"color": colormaps["viridis"](0.2 + 0.55 * position), "linestyle": "-"}
    return {"color": "tab:gray", "linestyle": ":"}


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
    """``val/margins/avg_logps``, chosen and rejected log-probs against the step, one line per
    arm and λ (mean over seeds, ±1 std shaded), one row of panels per learning rate."""
    runs = [r for r in runs if any(tag in r.curves for tag in CURVE_TAGS)]
    if not runs:
        return None
    lrs = sorted({r.lr for r in runs}, key=lambda lr: lr or 0.0)
    rows = lrs if len(lrs) <= MAX_LR_ROWS else [None]
    lams = sorted({r.lam for r in runs if r.objective == "orpo" and not r.is_sft})
    fig = Figure(figsize=(4.2 * len(CURVE_TAGS), 3.2 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(CURVE_TAGS), squeeze=False)
    for i, lr in enumerate(rows):
        lines: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            if lr is None or run.lr == lr:
                key = _label(run) + (f", lr={run.lr:g}" if lr is None and run.lr else "")
                lines[key].append(run)
        for j, tag in enumerate(CURVE_TAGS):
            ax = axes[i][j]
            for label, members in sorted(lines.items(), key=lambda kv: _order(kv[1][0])):
                steps, means, stds = _pool([r.curves[tag] for r in members if tag in r.curves])
                style = _style(members[0], lams)
                ax.plot(steps, means, label=label, marker=".", **style)
                if len(members) > 1:
                    lo = [m - s for m, s in zip(means, stds)]
                    hi = [m + s for m, s in zip(means, stds)]
                    ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.15)
            ax.set_title(tag if lr is None else f"{tag} (lr={lr:g})", fontsize=10)
            ax.set_xlabel("step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _order(run: Run) -> tuple:
    return (not run.is_sft, run.objective != "sft", run.lam or 0.0)


def plot_margin_vs_lambda(runs: list[Run], path: Path) -> Path | None:
    """Final ``val/margins/avg_logps`` of completed ORPO runs against λ, one line per learning
    rate (mean over seeds, ±1 std bars); ``objective=sft`` runs as dashed horizontal lines."""
    done = [r for r in runs if r.status == "completed" and r.final(MARGIN) is not None]
    orpo = [r for r in done if r.objective == "orpo"]
    if not orpo:
        return None
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    lrs = sorted({r.lr for r in done}, key=lambda lr: lr or 0.0)
    colors = colormaps["tab10"]
    for k, lr in enumerate(lrs):
        points: dict[float, list[float]] = defaultdict(list)
        for run in orpo:
            if run.lr == lr:
                points[run.lam].append(run.final(MARGIN))
        lams = sorted(points)
        ys = [mean(points[lam]) for lam in lams]
        errs = [stdev(points[lam]) if len(points[lam]) > 1 else 0.0 for lam in lams]
        suffix = f", lr={lr:g}" if lr is not None else ""
        if lams:
            ax.errorbar(
                lams, ys, yerr=errs, marker="o", capsize=3, color=colors(k), label="ORPO" + suffix
            )
        sft = [r.final(MARGIN) for r in done if r.objective == "sft" and r.lr == lr]
        if sft:
            ax.axhline(mean(sft), color=colors(k), linestyle="--", label="SFT" + suffix)
    ax.set_xlabel("λ (0 = SFT)")
    ax.set_ylabel(f"final {MARGIN}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path
