"""Benchmark prefopt's training step against TRL's trainers in one run.

    python experiments/bench                              # the full run (README.md: 20-30 min)
    python experiments/bench --quick                      # a smoke run, about a minute
    python experiments/bench --write docs/performance.md  # update the docs' tables and plot

Every variant trains a copy of the same initial tiny model on the same pairs with the same batch
size (forward, loss, backward, AdamW step); step i of each variant runs right after step i of the
others (the order flips each round), after a check that every prefopt variant computes its TRL
peer's loss on the first batch. Step memory is measured in a fresh subprocess per side, and so is
each point of the growth series. See ``experiments/bench/README.md`` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from . import growth, real_data
from .memory import gemm_peak, machine, probe_in_subprocess
from .peers import PEERS
from .probes import memory_probe
from .render import render
from .report import BenchRun, write_section
from .variants import padding_at_scale, run_throughput
from .workload import QUICK, Workload

QUICK_ROWS = 24  # rows read from each real file in quick mode


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _peers(text: str) -> tuple[str, ...]:
    peers = {x for x in text.split(",") if x}
    if peers - set(PEERS):
        unknown = ", ".join(sorted(peers - set(PEERS)))
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; available: {','.join(PEERS)}")
    return tuple(p for p in PEERS if p in peers | {"orpo"})  # ORPO always


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefopt vs TRL's trainers, training steps")
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny sizes: a smoke run")
    add("--workload", choices=["auto", "real", "synthetic"], default="auto",
        help="pair lengths: real (from SHARED/data/preference), synthetic (log-normal); "
        "auto: real when SHARED has them")  # fmt: skip
    add("--shared", type=Path, default=real_data.SHARED, help="the shared folder (../shared)")
    add(
        "--peers",
        type=_peers,
        default=PEERS,
        help=f"comma list of {','.join(PEERS)} (orpo: always)",
    )
    add("--steps", type=int, help="timed steps per variant")
    add("--batch-size", type=int, help="pairs per step")
    add("--vocab-size", type=int, help="vocabulary of the tiny model")
    add("--threads", type=int, help="torch threads (default: torch's choice)")
    add("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: untested so far")
    add(
        "--keep-denormals",
        action="store_true",
        help="do not flush float32 denormals to zero (prefopt-train flushes them by default; "
        "the benchmark does it for both sides, in one process)",
    )
    add("--skip-memory", action="store_true", help="no step-memory subprocesses")
    add("--skip-growth", action="store_true", help="no growth series")
    add("--growth-seq", type=_ints, help=f"tokens per row (default {growth.SEQS})")
    add("--growth-vocab", type=_ints, help=f"vocabularies (default {growth.VOCABS})")
    add(
        "--growth-vocab-seq",
        type=int,
        help=f"tokens per row of the vocabulary series ({growth.VOCAB_SEQ})",
    )
    add("--write", type=Path, help="update the bench section of this Markdown (and its plot)")
    add(
        "--plot",
        type=Path,
        help="the growth plot (default with --write: img/perf_growth.png beside it)",
    )
    add("--json", type=Path, help="also write the raw numbers here")
    add("--memory-probe", help=argparse.SUPPRESS)  # SIDE:KEY, in a subprocess
    add("--probe-seq", type=int, help=argparse.SUPPRESS)
    add("--probe-loss-stage", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    workload = QUICK if args.quick else Workload()
    changes = {"steps": args.steps, "batch_size": args.batch_size, "vocab_size": args.vocab_size}
    changes["memory_seq_len"] = args.probe_seq
    return dataclasses.replace(workload, **{k: v for k, v in changes.items() if v})


def with_lengths(args: argparse.Namespace, workload: Workload) -> tuple[Workload, dict, list[str]]:
    """The workload with the real lengths when asked for and available; the length statistics
    and a note when it falls back to the synthetic lengths."""
    why = real_data.missing(args.shared) if args.workload != "synthetic" else "--workload synthetic"
    if why and args.workload == "real":
        raise SystemExit(f"--workload real: {why}")
    if why:
        note = f"real-length workload unavailable ({why}): the synthetic lengths are used"
        print(f"note: {note}", file=sys.stderr)
        return workload, {}, [note] if args.workload == "auto" else []
    real = real_data.load_real_lengths(args.shared, QUICK_ROWS if args.quick else None)
    source = (
        f"{len(real.pool)} distinct pairs of {len(real.files)} files in "
        f"{args.shared / real_data.DATA} ({real.duplicates} duplicates across files dropped), "
        f"tokenized with {Path(real.tokenizer).name} by PreferenceDataModule, chat template"
    )
    stats = {"pool": real_data.length_stats(list(real.pool)), "source": source}
    return dataclasses.replace(workload, workload="real", length_pool=real.pool), stats, []


def measure_memory(args: argparse.Namespace, forward: list[str]) -> dict:
    """Step memory of both sides of every comparison, a fresh process each (quick: ORPO)."""
    vocab = ["--vocab-size", str(args.vocab_size)] if args.vocab_size else []
    memory = {}
    for key in ("orpo",) if args.quick else args.peers:
        sides = ("trl", "prefopt")
        memory[key] = {s: probe_in_subprocess(f"{s}:{key}", forward + vocab) for s in sides}
    return memory


def measure_growth(args, workload: Workload, forward: list[str]) -> tuple[list, str | None]:
    """The growth series, and the plot's path relative to the written Markdown (if any)."""
    quick = args.quick
    seqs = args.growth_seq or (growth.QUICK_SEQS if quick else growth.SEQS)
    vocabs = args.growth_vocab or (growth.QUICK_VOCABS if quick else growth.VOCABS)
    vocab_seq = args.growth_vocab_seq or (growth.QUICK_VOCAB_SEQ if quick else growth.VOCAB_SEQ)
    points = growth.run_growth(workload, seqs, vocabs, vocab_seq, forward)
    png = args.plot or (args.write.parent / "img" / "perf_growth.png" if args.write else None)
    if not png:
        return points, None
    growth.plot(points, png)
    base = args.write.parent if args.write else Path.cwd()
    return points, os.path.relpath(png.resolve(), base.resolve())


def set_denormals(keep: bool) -> str:
    """As prefopt-train's ``flush_denormal: true``, for every variant of both sides (one
    process): on CPU a GEMM over denormal floats is ~150x slower, and CPO's sigmoid of a summed
    log-prob margin produces them. Returns the run table's line."""
    if keep:
        torch.set_flush_denormal(False)
        return "kept"
    return "flushed to zero, both sides" if torch.set_flush_denormal(True) else "kept (no FTZ)"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    denormals = set_denormals(keep=args.keep_denormals)
    workload = workload_from(args)
    if args.memory_probe:
        probe = memory_probe(args.memory_probe, workload, args.device, args.probe_loss_stage)
        print(json.dumps(probe))
        return ""
    started = last = time.perf_counter()
    info = machine()
    info["float32 denormals"] = denormals

    def lap(part: str) -> None:
        nonlocal last
        info[f"wall time: {part}"] = f"{time.perf_counter() - last:.0f} s"
        last = time.perf_counter()

    workload, lengths, notes = with_lengths(args, workload)
    lap("lengths")
    size = 512 if args.quick else 2048
    peak = gemm_peak(size, device=args.device)
    results, parity, run_notes = run_throughput(workload, args.device, args.peers)
    peak = max(peak, gemm_peak(size, device=args.device))  # before and after: the best
    padding = padding_at_scale(workload)
    timed = workload.pairs(workload.batch_size * workload.steps)
    lengths["timed"] = real_data.length_stats(real_data.pair_lengths(timed))
    lap("throughput")
    forward = ["--quick"] * args.quick + ["--device", args.device]
    forward += ["--threads", str(args.threads)] if args.threads else []
    forward += ["--keep-denormals"] if args.keep_denormals else []
    memory, points, plot = {}, [], None
    if not args.skip_memory:
        memory = measure_memory(args, forward)
        lap("memory probes")
    if not args.skip_growth:
        points, plot = measure_growth(args, workload, forward)
        lap("growth")
    command = "python experiments/bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    info["load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    info["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    run = BenchRun(
        command.strip(), info, workload, peak, results, parity, args.peers, padding, lengths,
        memory, points, plot, notes + run_notes,
    )  # fmt: skip
    report = render(run)
    if args.quick:
        report += "\n`--quick`: tiny sizes for a smoke run; the targets apply to the default run.\n"
    print(report)
    if args.write:
        write_section(args.write, report)
    if args.json:
        raw = dataclasses.asdict(run) | {"results": [dataclasses.asdict(r) for r in results]}
        raw["workload"].pop("length_pool")
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
