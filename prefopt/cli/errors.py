"""One line for a user's mistake, a traceback for a bug.

Every entry point runs its work through :func:`run_main`: a :class:`~prefopt.errors.UserError`
anywhere in the exception's chain (e.g. inside Hydra's ``InstantiationException``) is printed as
``<prog>: error: <message>`` and the process exits with code 2; anything else propagates with its
traceback. ``PREFOPT_DEBUG=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) shows the traceback always.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from prefopt.errors import UserError

T = TypeVar("T")
USAGE_EXIT_CODE = 2


def debug() -> bool:
    """Whether the user asked for tracebacks."""
    return any(
        os.environ.get(k, "") not in ("", "0") for k in ("PREFOPT_DEBUG", "HYDRA_FULL_ERROR")
    )


def chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes and contexts, outermost first (no repeats)."""
    seen: list[BaseException] = []
    while err is not None and all(err is not s for s in seen):
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def user_error(err: BaseException) -> UserError | None:
    """The first :class:`UserError` in ``err``'s chain, if any."""
    return next((e for e in chain(err) if isinstance(e, UserError)), None)


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line (white space folded)."""
    return " ".join(str(err).split()) or type(err).__name__


def describe(err: BaseException) -> str:
    """What a run's ``status.json`` records: a user error's message, or the innermost
    exception's type and message (``ValueError: ...``)."""
    found = user_error(err)
    if found is not None:
        return one_line(found)
    root = chain(err)[-1]
    return " ".join(traceback.format_exception_only(type(root), root)[-1].split())


def exit_with_error(prog: str, err: UserError) -> None:
    """Print ``<prog>: error: <message>`` to stderr and exit with code 2."""
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def run_main(prog: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, with user errors as one line and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        found = user_error(err)
        if found is None or debug():
            raise
        exit_with_error(prog, found)
