"""Summaries of the timed steps and the Markdown tables the benchmark prints and writes."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .growth import Point
    from .workload import Workload

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Result:
    """One variant's timed steps and the work they did."""

    name: str
    batching: str
    seconds: list[float]
    real_tokens: int
    pairs: int
    padding_efficiency: float
    useful_flops: float
    dense_flops: float

    @property
    def total(self) -> float:
        return sum(self.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.total

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.total

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]

    def mfu(self, peak: float, dense: bool = False) -> float:
        return (self.dense_flops if dense else self.useful_flops) / self.total / peak


@dataclass
class BenchRun:
    """Everything one run measured, for the report.

    Attributes:
        command: the command line.
        info: the machine: CPU, cores, threads, versions, load averages, wall time.
        workload: sizes and the length source (``workload.workload``: real or synthetic).
        peak: the measured GEMM peak (FLOP/s).
        results: the timed variants.
        parity: ``{comparison key: {variant: {loss, nll_loss, logps/*}}}``, peer first.
        peers: the comparison keys that ran.
        padding: padding (and packing) efficiency over an epoch-sized pool.
        lengths: ``{"pool": stats, "timed": stats}`` (``real_data.length_stats``) and
            ``"source"``, a line on where the lengths come from.
        memory: ``{comparison key: {side: probe result}}`` at ``memory_seq_len``.
        growth: the growth points.
        plot: the growth plot's path relative to the written Markdown (None: no plot).
        notes: what was skipped or fell back, and why.
    """

    command: str
    info: dict[str, str]
    workload: Workload
    peak: float
    results: list[Result]
    parity: dict[str, dict[str, dict[str, float]]]
    peers: tuple[str, ...]
    padding: dict[str, float]
    lengths: dict = field(default_factory=dict)
    memory: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    growth: list[Point] = field(default_factory=list)
    plot: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def by_name(self) -> dict[str, Result]:
        return {r.name: r for r in self.results}


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def paired_ratio(a: Result, b: Result) -> float:
    """Median over batches of ``a``'s step time / ``b``'s on the same batch (robust to drift)."""
    return statistics.median(x / y for x, y in zip(a.seconds, b.seconds))


def results_table(
    results: list[Result], peak: float, baseline: Result, paired: bool = False
) -> str:
    """Throughput, step times, padding and MFU of every variant, and its speed-up over
    ``baseline`` (same pairs, so the ratio of tokens/s is the ratio of total times); with
    ``paired`` (same batches too), also the median per-batch step-time ratio."""
    rows = []
    for r in results:
        rows.append(
            [
                r.name,
                r.batching,
                f"{r.tokens_per_s:,.0f}",
                f"{r.pairs_per_s:.2f}",
                f"{r.median:.3f}",
                f"{r.p90:.3f}",
                f"{100 * r.padding_efficiency:.0f} %",
                f"{100 * r.mfu(peak):.1f} %",
                f"{100 * r.mfu(peak, dense=True):.1f} %",
                f"{r.tokens_per_s / baseline.tokens_per_s:.2f}x",
            ]
            + ([f"{paired_ratio(r, baseline):.2f}x"] if paired else [])
        )
    header = [
        "variant",
        "batches",
        "real tokens/s",
        "pairs/s",
        "median step (s)",
        "p90 step (s)",
        "padding eff.",
        "useful MFU",
        "6ND MFU",
        f"tokens/s vs {baseline.name}",
    ] + ([f"step time / {baseline.name}'s, same batch (median)"] if paired else [])
    return table(header, rows)


def memory_table(memory: dict[str, dict[str, dict[str, float]]], titles: dict[str, str]) -> str:
    """Step memory, peak RSS and step time of both sides of each comparison (``memory``: key ->
    side -> probe result), and prefopt's step memory over TRL's."""
    rows = []
    for key, sides in memory.items():
        trl, ours = sides["trl"], sides["prefopt"]
        rows.append(
            [
                titles.get(key, key),
                f"{trl['step_mib']:,.0f}",
                f"{ours['step_mib']:,.0f}",
                f"{ours['step_mib'] / trl['step_mib']:.2f}x",
                f"{trl['peak_mib']:,.0f}",
                f"{ours['peak_mib']:,.0f}",
                f"{trl['seconds']:.2f}",
                f"{ours['seconds']:.2f}",
            ]
        )
    header = [
        "comparison",
        "TRL step memory (MiB)",
        "prefopt step memory (MiB)",
        "prefopt / TRL",
        "TRL peak RSS (MiB)",
        "prefopt peak RSS (MiB)",
        "TRL step (s)",
        "prefopt step (s)",
    ]
    return table(header, rows)


def write_section(path: Path, text: str) -> None:
    """Replace the text between the bench markers of ``path`` (append them if absent)."""
    block = f"{BEGIN}\n{text.strip()}\n{END}"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        new = pattern.sub(lambda _: block, old)
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block + "\n"
    path.write_text(new)
