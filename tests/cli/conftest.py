"""Fixtures of the command-line tests: ``prefopt-train`` run in this process, as typed."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from prefopt.cli import train as train_cli
from tests.conftest import FAST


@pytest.fixture
def prefopt_train(tmp_path, capsys):
    """``prefopt-train ARGS`` (with the fast test settings): ``(exit code, stdout, stderr)``."""
    saved = dict(os.environ)

    def run(*args: str, fast: bool = True) -> tuple[int, str, str]:
        argv = [*(FAST if fast else []), *args, f"hydra.run.dir={tmp_path / 'run'}"]
        old = sys.argv
        sys.argv = ["prefopt-train", *argv]
        try:
            train_cli.main()
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        finally:
            sys.argv = old
            os.environ.clear()
            os.environ.update(saved)
            logging.getLogger().handlers.clear()  # Hydra's, bound to this test's captured streams
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_line(code: int, err: str) -> str:
    """The error line; asserts the exit code and that nothing else went wrong."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("prefopt-train: error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0].removeprefix("prefopt-train: error: ")
