"""``python experiments/paper_effects``: the study's one entry point."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a folder: make `experiments.paper_effects` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.paper_effects.study import main  # noqa: E402

main()
