"""Run the study: the grid (SFT arm + ORPO at three λ, paired seeds), the two-stage DPO baseline
(DPO started from each seed's SFT model), the sweep report, then the findings as checks.

    python experiments/paper_effects --out multirun/paper_effects        # the full study
    python experiments/paper_effects --out /tmp/pe --quick --steps 4 --seeds 0,1   # a smoke run

Everything runs through ``prefopt-train`` (``python -m prefopt.cli.train``) and
``prefopt.report``; the checks are computed from the runs on disk (``findings.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from prefopt.report import load_runs, write_report

from .findings import SFT_LAMBDA, findings, markdown
from .plots import plot_findings

# --quick: the test suite's sizes (tests/conftest.py FAST), a few seconds per run
QUICK = [
    "data.builtin.train_size=48",
    "data.builtin.eval_size=16",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=1",
    "model.tiny.intermediate_size=64",
    "evaluation.num_prompts=8",
    "evaluation.max_new_tokens=8",
    "evaluation.every_n_val=1",
    "callbacks.progress_bar.every_n_steps=0",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python experiments/paper_effects", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the sweep folder to write")
    parser.add_argument("--seeds", default="0,1,2", help="paired seeds (default 0,1,2)")
    parser.add_argument("--lams", default="0.1,0.5,1.0", help="ORPO's λ values besides SFT (0)")
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps per run")
    parser.add_argument("--val-every", type=int, default=300, help="validation interval")
    parser.add_argument(
        "--dpo-steps", type=int, default=300, help="steps of the DPO stage (0: none)"
    )
    parser.add_argument("--dpo-lr", type=float, default=2e-4, help="learning rate of the DPO stage")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("overrides", nargs="*", help="more prefopt-train overrides for every run")
    return parser.parse_args(argv)


def _train(args: list[str], log: Path) -> int:
    command = [sys.executable, "-m", "prefopt.cli.train", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write(shlex.join(command) + "\n")
        out.flush()
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def run_study(args: argparse.Namespace, argv: list[str]) -> dict:
    """Train every arm, report, check; return the findings (also written to ``report/``)."""
    started = time.perf_counter()
    out: Path = args.out.resolve()
    extra = [*(QUICK if args.quick else []), *args.overrides]
    steps = [f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.val_every}"]
    lams = ",".join(str(v) for v in [SFT_LAMBDA, *[float(x) for x in args.lams.split(",")]])
    exclude = ["experiment", "trainer.max_steps", "trainer.val_check_interval", *_keys(extra)]
    grid = [
        "-m",
        "experiment=paper_effects",
        f"objective.lam={lams}",
        f"seed={args.seeds}",
        *steps,
        *extra,
        f"hydra.sweep.dir={out}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]",
    ]
    codes = {"grid": _train(grid, out.parent / f"{out.name}.log")}
    dpo_dir = out.parent / f"{out.name}_dpo_from_sft"
    if args.dpo_steps > 0:
        for run in load_runs(out):
            if run.config.get("objective.lam") == SFT_LAMBDA and run.status == "completed":
                codes[f"dpo seed {run.seed}"] = _train(
                    [
                        "objective=dpo",
                        f"model.name_or_path='{out / run.name / 'hf_model'}'",  # quoted: = and ,
                        f"seed={run.seed}",
                        f"optimizer.lr={args.dpo_lr}",
                        f"trainer.max_steps={args.dpo_steps}",
                        f"trainer.val_check_interval={max(1, args.dpo_steps // 3)}",
                        *extra,
                        f"hydra.run.dir='{dpo_dir / f'seed={run.seed}'}'",
                    ],
                    dpo_dir / f"seed={run.seed}.log",
                )
    report_dir = out / "report"
    runs = load_runs(out)
    sft_label = next((r.label for r in runs if r.config.get("objective.lam") == SFT_LAMBDA), None)
    write_report(out, report_dir, baseline=sft_label)
    dpo = load_runs(dpo_dir) if dpo_dir.is_dir() else []
    result = findings(runs, dpo)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["command"] = "python experiments/paper_effects " + shlex.join(argv)
    result["exit_codes"] = codes
    result["cpu"] = _cpu()
    plots = plot_findings(runs, dpo, report_dir)
    (report_dir / "findings.json").write_text(json.dumps(result, indent=2) + "\n")
    (report_dir / "findings.md").write_text(markdown(result, plots))
    return result


def _keys(overrides: list[str]) -> list[str]:
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    result = run_study(args, argv)
    report = args.out.resolve() / "report"
    print((report / "findings.md").read_text())
    print(f"wrote {report}/findings.md, findings.json, report.md and the plots")
    if any(code != 0 for code in result["exit_codes"].values()):
        sys.exit(1)
