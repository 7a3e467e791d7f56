"""The errors a user can fix: every room raises them, the command-line room prints them.

A :class:`UserError` is a mistake in what the user gave prefopt (a config value, a data file, a
tokenizer folder, a checkpoint): ``prefopt-train``, ``prefopt-export`` and ``prefopt-report``
print its message as one line (``prefopt-train: error: ...``) and exit with code 2, without a
traceback. Anything else is an internal error and keeps its traceback. The subclasses also derive
from the built-in exception a caller would expect (``ValueError``, ``FileNotFoundError``), so
library users can catch either.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the file, row or key, the value and the fix."""


class ConfigError(UserError, ValueError):
    """An impossible config value or combination of values."""


class DataError(UserError, ValueError):
    """Data that cannot be read or used: a malformed file, no usable rows, a bad split."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data, tokenizer, model or checkpoint path that does not exist."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be loaded (truncated, foreign, or not a prefopt run's)."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on for a reason the user can act on (e.g. the loss diverged)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package the requested feature needs is not installed (the fix: pip install)."""


def brief(err: BaseException, limit: int = 200) -> str:
    """A library exception's message as one short line: white space folded, cut after its first
    sentence or ``limit`` characters (for quoting inside a :class:`UserError`'s message)."""
    text = " ".join(str(err).split()) or type(err).__name__
    end = text.find(". ", 40)
    if 0 < end < limit:
        return text[: end + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"
