"""The registry: which generation evaluators exist, under which name.

``@register("name")`` on an :class:`~prefopt.evaluation.base.Evaluator` subclass makes it
available; the name is its identity, used by ``configs/evaluation/<name>.yaml`` and, through the
config key, by the logged tags (``val/gen/<name>/<metric>``). The built-in evaluators are the
modules of this package: they are imported (and so registered) the first time the registry is
asked for names, so adding one is adding a file and a config, never editing a list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prefopt.evaluation.base import Evaluator

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type[Evaluator]] = {}
# modules of this package that are not evaluators
_NOT_EVALUATORS = {"base", "callback", "generation", "registry", "runtime"}


class UnknownEvaluatorError(KeyError):
    """Raised by :func:`get_evaluator` for a name nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an :class:`Evaluator` subclass available under ``name``."""

    def wrap(cls: T) -> T:
        known = _REGISTRY.get(name)
        if known is not None and _path(known) != _path(cls):
            raise ValueError(f"evaluator {name!r} is already registered by {_path(known)}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_builtin() -> None:
    package = importlib.import_module("prefopt.evaluation")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_EVALUATORS and not module.name.startswith("_"):
            importlib.import_module(f"prefopt.evaluation.{module.name}")


def available() -> list[str]:
    """Sorted names of all registered evaluators (the built-in ones and any imported since)."""
    _load_builtin()
    return sorted(_REGISTRY)


def evaluator_class(name: str) -> type[Evaluator]:
    """The class registered as ``name``.

    Raises:
        UnknownEvaluatorError: (a KeyError) one line naming the unknown evaluator and the
            available ones.
    """
    if name not in _REGISTRY:
        _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEvaluatorError(
            f"unknown evaluator {name!r}; available: {', '.join(available())}"
        ) from None


def get_evaluator(name: str, **options: Any) -> Evaluator:
    """Build the evaluator registered as ``name`` with the given options."""
    return evaluator_class(name)(**options)
