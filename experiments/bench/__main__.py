"""``python experiments/bench``: the benchmark's one entry point."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a folder: make `experiments.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.bench.cli import main  # noqa: E402

main()
