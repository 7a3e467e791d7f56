"""``prefopt-report SWEEP_DIR``: tables and plots comparing the runs of a sweep (docs/sweeps.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefopt.cli.errors import run_main
from prefopt.report import METRICS, write_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prefopt-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (or a single run)")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report)")
    parser.add_argument("--best-by", default=METRICS[0], help="val/ tag that picks the best step")
    parser.add_argument(
        "--baseline",
        metavar="ARM",
        help="compare every arm with this one seed by seed (an arm's label, or an objective "
        "with one arm): paired differences, their 95%% CI and a paired t-test",
    )
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=30.0,
        help="'running' without a new event for this long: reported as unfinished (a killed job)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``prefopt-report``)."""
    args = parse_args(argv)
    out = args.out or args.sweep_dir / "report"
    written = run_main(
        "prefopt-report",
        write_report,
        args.sweep_dir,
        out,
        args.best_by,
        args.stale_minutes,
        args.baseline,
    )
    print("\n".join(str(p) for p in written))


if __name__ == "__main__":
    main()
