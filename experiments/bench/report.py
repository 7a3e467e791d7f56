"""Summaries of the timed steps and the Markdown tables the benchmark prints and writes."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

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


def memory_table(memory: dict[str, dict[str, float]]) -> str:
    """Peak and per-step memory of each side (MiB), and the ratio to TRL's."""
    trl = memory.get("trl")
    rows = []
    for side, m in memory.items():
        ratio = f"{m['step_mib'] / trl['step_mib']:.2f}x" if trl else "-"
        rows.append(
            [side, f"{m['step_mib']:,.0f}", f"{m['peak_mib']:,.0f}", f"{m['seconds']:.2f}", ratio]
        )
    header = ["side", "step memory (MiB)", "peak RSS (MiB)", "step (s)", "step memory vs TRL"]
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
