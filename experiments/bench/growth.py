"""How cost grows: step time and step memory of prefopt's ORPO (its defaults) and TRL's
``ORPOTrainer`` as the rows get longer and as the vocabulary grows, one fresh process per point
and side (:mod:`experiments.bench.probes`, which also isolates the loss stage's memory); a
Markdown table per axis and a PNG plot.

Before each probe, a rough upper bound of its memory is compared with ``MemAvailable``: a point
that would not fit is skipped with a note instead of pushing the machine into the OOM killer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .memory import available_mib, probe_in_subprocess
from .probes import SIDES
from .report import table
from .workload import Workload

SEQS = (256, 512, 1024, 2048, 4096)  # tokens per row, at the workload's vocabulary
VOCABS = (32000, 64000, 128000)  # at VOCAB_SEQ tokens per row
VOCAB_SEQ = 2048
QUICK_SEQS, QUICK_VOCABS, QUICK_VOCAB_SEQ = (64, 128), (2048, 4096), 64  # 3 points
CHUNK = 4096  # prefopt's default module.logits_chunk_size
MIB = 1024 * 1024


@dataclass
class Point:
    """One measured point: ``sides`` maps a side to its probe result (``experiments.bench.
    probes.memory_probe`` with the loss stage), ``skipped`` a side to why it was not run."""

    axis: str  # "sequence" or "vocabulary"
    seq: int
    vocab: int
    sides: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def need_mib(side: str, w: Workload, seq: int, vocab: int) -> float:
    """A rough upper bound of one probe's memory (MiB): the model with its gradients and AdamW
    state, the decoder's activations (measured: 1.05 GiB at 2 pairs x 2048 tokens, linear in T),
    and the loss stage (TRL: 3.5 ``(2B, T, V)`` float32 tensors, measured 3.4 at T = 2048 for
    V = 32k, 64k and 128k; prefopt: about three ``chunk x V``, measured one), plus 1 GiB for the
    libraries. Calibrated on the measured points (Intel Xeon, 2026-12-02: TRL at V = 128k,
    T = 2048 peaked at 15.6 GiB, this bound says 16.3)."""
    rows = 2 * w.memory_batch_size
    model = 4 * 4 * (vocab * w.hidden_size + w.num_layers * 12 * w.hidden_size**2)
    decoder = 4 * rows * seq * w.hidden_size * w.num_layers * 35
    logits = 4 * vocab * (3.5 * rows * seq if side == "trl" else 3 * min(rows * seq, CHUNK))
    return (model + decoder + logits) / MIB + 1024


def run_growth(
    workload: Workload,
    seqs: tuple[int, ...],
    vocabs: tuple[int, ...],
    vocab_seq: int,
    forward: list[str],
    probe: Callable[[str, list[str]], dict[str, float]] = probe_in_subprocess,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[Point]:
    """Probe both sides at every point (``forward``: the command-line flags the probes share,
    e.g. ``--threads``); a point on both axes is measured once."""
    points = [Point("sequence", t, workload.vocab_size) for t in seqs]
    points += [Point("vocabulary", vocab_seq, v) for v in vocabs]
    done: dict[tuple[int, int], Point] = {}
    for point in points:
        key = (point.seq, point.vocab)
        if key in done:
            point.sides, point.skipped = done[key].sides, done[key].skipped
            continue
        done[key] = point
        for side in SIDES:
            need, free = need_mib(side, workload, point.seq, point.vocab), available_mib()
            if need > 0.9 * free:
                point.skipped[side] = f"needs ~{need / 1024:.1f} GiB, {free / 1024:.1f} available"
                log(f"growth: {side} T={point.seq} V={point.vocab} skipped ({point.skipped[side]})")
                continue
            args = ["--probe-seq", str(point.seq), "--vocab-size", str(point.vocab)]
            point.sides[side] = probe(f"{side}:orpo", forward + args + ["--probe-loss-stage"])
            m = point.sides[side]
            log(f"growth: {side} T={point.seq} V={point.vocab}: step {m['step_mib']:.0f} MiB")
    return points


def _cell(point: Point, side: str, key: str, fmt: str) -> str:
    if side in point.sides:
        return format(point.sides[side][key], fmt)
    return f"skipped ({point.skipped[side]})" if side in point.skipped else "-"


def _ratio(point: Point, key: str, numerator: str, denominator: str) -> str:
    if numerator in point.sides and denominator in point.sides:
        return f"{point.sides[numerator][key] / point.sides[denominator][key]:.2f}x"
    return "-"


def growth_table(points: list[Point], axis: str) -> str:
    """One axis's points: step memory, loss-stage memory and step time of both sides."""
    rows = []
    for p in (p for p in points if p.axis == axis):
        rows.append(
            [
                str(p.seq if axis == "sequence" else p.vocab),
                _cell(p, "trl", "step_mib", ",.0f"),
                _cell(p, "prefopt", "step_mib", ",.0f"),
                _ratio(p, "step_mib", "prefopt", "trl"),
                _cell(p, "trl", "loss_stage_mib", ",.0f"),
                _cell(p, "prefopt", "loss_stage_mib", ",.0f"),
                _cell(p, "trl", "seconds", ".2f"),
                _cell(p, "prefopt", "seconds", ".2f"),
                _ratio(p, "seconds", "trl", "prefopt"),
            ]
        )
    header = [
        "tokens per row" if axis == "sequence" else "vocabulary",
        "TRL step memory (MiB)",
        "prefopt step memory (MiB)",
        "prefopt / TRL memory",
        "TRL loss stage (MiB)",
        "prefopt loss stage (MiB)",
        "TRL step (s)",
        "prefopt step (s)",
        "TRL / prefopt time",
    ]
    return table(header, rows)


def plot(points: list[Point], path: Path) -> None:
    """Step memory and step time against the row length, step memory and loss-stage memory
    against the vocabulary, both sides, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("sequence", ("step_mib", "loss_stage_mib"), "memory (MiB): step, loss stage (dashed)"),
        ("sequence", ("seconds",), "step time (s)"),
        ("vocabulary", ("step_mib",), "step memory (MiB)"),
        ("vocabulary", ("loss_stage_mib",), "loss-stage memory (MiB)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (axis, keys, label) in zip(axes.flat, panels):
        on_axis = [p for p in points if p.axis == axis]
        if not on_axis:
            continue
        for side, color, marker in (("trl", "tab:blue", "o"), ("prefopt", "tab:orange", "s")):
            xs = [p for p in on_axis if side in p.sides]
            x = [p.seq if axis == "sequence" else p.vocab for p in xs]
            for key, line in zip(keys, ("-", "--")):
                label_side = f"{side} ORPO" + (" loss stage" if line == "--" else "")
                y = [p.sides[side][key] for p in xs]
                ax.plot(x, y, line, color=color, marker=marker, label=label_side)
        ticks = sorted({p.seq if axis == "sequence" else p.vocab for p in on_axis})
        where = f"vocabulary {on_axis[0].vocab}" if axis == "sequence" else f"T {on_axis[0].seq}"
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(("tokens per row" if axis == "sequence" else "vocabulary") + f" ({where})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("prefopt ORPO vs TRL ORPOTrainer: one step, 2 pairs, rows of equal length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
