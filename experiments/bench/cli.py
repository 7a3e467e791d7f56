"""Benchmark prefopt's training step against TRL's ``ORPOTrainer`` in one process run.

    python experiments/bench                              # ~3-4 min on 2 CPU cores
    python experiments/bench --quick                      # a smoke run, seconds
    python experiments/bench --write docs/performance.md  # update the docs' tables

Every variant trains a copy of the same initial tiny model on the same pairs with the same batch
size (forward, loss, backward, AdamW step); step i of each variant runs right after step i of the
others (the order flips each round), after a check that every ORPO variant computes TRL's loss on
the first batch. Peak memory is measured in one fresh subprocess per side. See
``experiments/bench/README.md`` and ``docs/performance.md``.
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

from prefopt.models.logps import Scoring
from prefopt.objectives.orpo import ORPO

from .memory import gemm_peak, machine, probe_in_subprocess, step_memory
from .render import render
from .report import write_section
from .runners import PrefoptRunner, TRLRunner
from .variants import DEFAULT_SHARING, LAM, padding_at_scale, run_throughput
from .workload import PAD_ID, Workload, collate

QUICK = Workload(
    vocab_size=2048,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    intermediate_size=128,
    batch_size=2,
    steps=2,
    max_length=96,
    max_prompt_length=48,
    prompt_median=24.0,
    response_median=32.0,
    memory_seq_len=128,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefopt vs TRL ORPOTrainer training steps")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--steps", type=int, help="timed steps per variant")
    parser.add_argument("--batch-size", type=int, help="pairs per step")
    parser.add_argument("--vocab-size", type=int, help="vocabulary of the tiny model")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: untested so far"
    )
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory subprocesses")
    parser.add_argument("--write", type=Path, help="update the bench section of this Markdown")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--memory-probe", choices=["trl", "prefopt"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    workload = QUICK if args.quick else Workload()
    changes = {"steps": args.steps, "batch_size": args.batch_size, "vocab_size": args.vocab_size}
    return dataclasses.replace(workload, **{k: v for k, v in changes.items() if v})


def memory_probe(side: str, workload: Workload, device: str = "cpu") -> dict[str, float]:
    """One warm-up step, then the measured step on rows of ``memory_seq_len`` tokens (run this
    in a fresh process: the resident-set high-water mark is per process)."""
    model = workload.build_model()
    size = workload.memory_batch_size
    batches = [workload.pairs(size, seed_offset=1), workload.long_pairs()]
    if side == "trl":
        runner = TRLRunner(model, LAM, workload.memory_seq_len, PAD_ID, batches, device)
    else:
        index = list(range(size))
        collated = [collate(rows, index) for rows in batches]
        runner = PrefoptRunner(
            model, ORPO(LAM), collated, Scoring(prompt_sharing=DEFAULT_SHARING), device=device
        )
    del model
    return step_memory(runner.step, device)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = workload_from(args)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, workload, args.device)))
        return ""
    started = time.perf_counter()
    info = machine()
    size = 512 if args.quick else 2048
    peak = gemm_peak(size, device=args.device)
    results, parity = run_throughput(workload, args.device)
    peak = max(peak, gemm_peak(size, device=args.device))  # before and after: the best
    padding = padding_at_scale(workload)
    memory = {}
    if not args.skip_memory:
        forward = ["--quick"] * args.quick + ["--device", args.device]
        for flag, value in (("--threads", args.threads), ("--vocab-size", args.vocab_size)):
            forward += [flag, str(value)] if value else []
        memory = {side: probe_in_subprocess(side, forward) for side in ("trl", "prefopt")}
    command = "python experiments/bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    info["load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    info["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    report = render(command.strip(), info, workload, peak, results, parity, memory, padding)
    if args.quick:
        report += "\n`--quick`: tiny sizes for a smoke run; the targets apply to the default run.\n"
    print(report)
    if args.write:
        write_section(args.write, report)
    if args.json:
        raw = {
            "machine": info,
            "gemm_peak_flops": peak,
            "workload": dataclasses.asdict(workload),
            "results": [dataclasses.asdict(r) for r in results],
            "parity": parity,
            "memory": memory,
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return report


if __name__ == "__main__":
    main()
