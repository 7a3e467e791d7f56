"""The study's plots: log-probs over steps per arm, final log-probs against λ, accuracy per arm."""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from prefopt.report import Run
from prefopt.report.plots import _pool
from prefopt.report.stats import summarize

from .findings import ACCURACY, CHOSEN, REJECTED, SFT_LAMBDA, by_lambda


def _name(lam: float) -> str:
    return "SFT (λ = 0)" if lam == SFT_LAMBDA else f"ORPO λ = {lam:g}"


def plot_findings(runs: list[Run], dpo: list[Run], out: Path) -> list[Path]:
    """Write the three plots to ``out``; return their paths."""
    grid = by_lambda(runs)
    if not grid:
        return []
    colors = colormaps["viridis"]
    color = {lam: colors(i / max(len(grid) - 1, 1)) for i, lam in enumerate(grid)}
    written = []

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    for ax, tag in zip(fig.subplots(1, 2, sharey=True), (CHOSEN, REJECTED)):
        for lam, arm in grid.items():
            steps, means, stds = _pool([r.curves[tag] for r in arm.values() if tag in r.curves])
            ax.plot(steps, means, marker=".", color=color[lam], label=_name(lam))
            lo, hi = [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)]
            ax.fill_between(steps, lo, hi, color=color[lam], alpha=0.15)
        ax.set_title(f"{tag.removeprefix('val/')} (mean ± std over seeds)", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    written.append(out / "logps_over_steps.png")
    fig.savefig(written[-1], dpi=110)

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for tag, style in ((CHOSEN, "o-"), (REJECTED, "s--")):
        points = [
            (lam, summarize([r.final(tag) for r in arm.values()])) for lam, arm in grid.items()
        ]
        points = [(lam, s) for lam, s in points if s is not None]
        errors = [(s.high - s.mean) if s.high is not None else 0.0 for _, s in points]
        ax.errorbar(
            [lam for lam, _ in points],
            [s.mean for _, s in points],
            yerr=errors,
            fmt=style,
            capsize=3,
            label=tag.removeprefix("val/avg_logps/"),
        )
    ax.set_xlabel("λ (0 = SFT)")
    ax.set_ylabel("final per-token log-prob (95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(out / "logps_vs_lambda.png")
    fig.savefig(written[-1], dpi=110)

    arms = [(_name(lam), list(arm.values())) for lam, arm in grid.items()]
    if dpo:
        arms.append(("DPO from SFT", [r for r in dpo if r.status == "completed"]))
    stats = [(name, summarize([r.final(ACCURACY) for r in members])) for name, members in arms]
    stats = [(name, s) for name, s in stats if s is not None]
    if stats:
        fig = Figure(figsize=(1.4 * len(stats) + 2, 3.6), layout="constrained")
        ax = fig.subplots()
        errors = [(s.high - s.mean) if s.high is not None else 0.0 for _, s in stats]
        ax.bar(
            range(len(stats)),
            [s.mean for _, s in stats],
            yerr=errors,
            capsize=4,
            color=[colors(i / max(len(stats) - 1, 1)) for i in range(len(stats))],
        )
        ax.set_xticks(range(len(stats)), [name for name, _ in stats], fontsize=8)
        ax.set_ylabel("greedy exact match (95 % CI)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, axis="y")
        written.append(out / "generation_accuracy.png")
        fig.savefig(written[-1], dpi=110)
    return written
