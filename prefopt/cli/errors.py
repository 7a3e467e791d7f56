"""One line for a user's mistake, a traceback for a bug.

Every entry point runs its work through :func:`run_main` (``prefopt-train`` through its own
wrapper, which also sees Hydra's errors): a :class:`~prefopt.errors.UserError` anywhere in the
exception's chain (e.g. inside Hydra's ``InstantiationException``), a config Hydra cannot compose
(an unknown group option, an override of a key that does not exist, an override that does not
parse) and a config key a ``_target_`` does not take are printed as ``<prog>: error: <message>``
and the process exits with code 2; anything else propagates with its traceback.
``PREFOPT_DEBUG=1`` (or Hydra's own ``HYDRA_FULL_ERROR=1``) shows the traceback always.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from prefopt.errors import UserError

T = TypeVar("T")
USAGE_EXIT_CODE = 2
# set by prefopt-train when it asks Hydra to re-raise (it then formats Hydra's errors itself)
OWN_FULL_ERROR = "_PREFOPT_SET_HYDRA_FULL_ERROR"
# what a _target_ raises when a config gives it a key it does not take, or misses one
_BAD_ARGUMENTS = re.compile(
    r"unexpected keyword argument|missing \d+ required|takes \d+ positional"
)


def _set(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def debug() -> bool:
    """Whether the user asked for tracebacks."""
    hydra_full_error = _set("HYDRA_FULL_ERROR") and not _set(OWN_FULL_ERROR)
    return _set("PREFOPT_DEBUG") or hydra_full_error


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


def one_line(err: BaseException | str) -> str:
    """The message of ``err`` as one line (white space folded)."""
    text = err if isinstance(err, str) else str(err)
    return " ".join(text.split()) or type(err).__name__


def _hydra_message(err: BaseException) -> str | None:
    """A config mistake Hydra or OmegaConf reports, as one line (``None``: not one)."""
    from hydra.errors import CompactHydraException, InstantiationException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    for e in chain(err):
        if isinstance(e, MissingConfigException):
            head = str(e).split("\n\n")[0].split("Config search path")[0]
            options = getattr(e, "options", None)
            if options:
                group = (e.missing_cfg_file or "").rsplit("/", 1)[0]
                head += f"; available options in '{group}': {', '.join(options)}"
            return one_line(head)
        if isinstance(e, InstantiationException):
            root = chain(e)[-1]
            if isinstance(root, TypeError) and _BAD_ARGUMENTS.search(str(root)):
                return one_line(str(e).split("\n")[0]) + f" ({one_line(root)})"
            return None  # a failure inside the target: a bug, or a UserError found above
        if isinstance(e, CompactHydraException):
            cause = e.__cause__
            detail = f": {str(cause).splitlines()[0]}" if cause is not None else ""
            return one_line(str(e) + detail)
        if isinstance(e, OmegaConfBaseException):
            full_key = getattr(e, "full_key", None)
            return one_line(str(e).splitlines()[0] + (f" (key: {full_key})" if full_key else ""))
    return None


def user_message(err: BaseException) -> str | None:
    """The one-line message of a user's mistake in ``err``'s chain, or ``None`` for a bug."""
    found = user_error(err)
    if found is not None:
        return one_line(found)
    return _hydra_message(err)


def describe(err: BaseException) -> str:
    """What a run's ``status.json`` records: a user error's message, or the innermost
    exception's type and message (``ValueError: ...``)."""
    message = user_message(err)
    if message is not None:
        return message
    root = chain(err)[-1]
    return " ".join(traceback.format_exception_only(type(root), root)[-1].split())


def exit_with_error(prog: str, message: str) -> None:
    """Print ``<prog>: error: <message>`` to stderr and exit with code 2."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def run_main(prog: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, with user errors as one line and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        message = user_message(err)
        if message is None or debug():
            raise
        exit_with_error(prog, message)
