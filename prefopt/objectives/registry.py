"""The registry: which objectives exist, under which name.

``@register("name")`` on an :class:`~prefopt.objectives.base.Objective` subclass makes it
available; the name is its one identity, used by ``configs/objective/<name>.yaml``, TensorBoard's
HParams, ``status.json`` and ``prefopt-report``. The built-in objectives are the modules of this
package: they are imported (and so registered) the first time the registry is asked for names, so
adding one is adding a file, never editing a list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prefopt.objectives.base import Objective

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type[Objective]] = {}
# modules of this package that are not objectives
_NOT_OBJECTIVES = {"base", "dpo_family", "functional", "registry"}


class UnknownObjectiveError(KeyError):
    """Raised by :func:`get_objective` for a name nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an :class:`Objective` subclass available under ``name``."""

    def wrap(cls: T) -> T:
        known = _REGISTRY.get(name)
        if known is not None and _path(known) != _path(cls):
            raise ValueError(f"objective {name!r} is already registered by {_path(known)}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_builtin() -> None:
    package = importlib.import_module("prefopt.objectives")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_OBJECTIVES and not module.name.startswith("_"):
            importlib.import_module(f"prefopt.objectives.{module.name}")


def available() -> list[str]:
    """Sorted names of all registered objectives (the built-in ones and any imported since)."""
    _load_builtin()
    return sorted(_REGISTRY)


def objective_class(name: str) -> type[Objective]:
    """The class registered as ``name``.

    Raises:
        UnknownObjectiveError: (a KeyError) one line naming the unknown objective and the
            available ones.
    """
    if name not in _REGISTRY:
        _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownObjectiveError(
            f"unknown objective {name!r}; available: {', '.join(available())}"
        ) from None


def get_objective(name: str, **hparams: Any) -> Objective:
    """Build the objective registered as ``name`` with the given hyperparameters."""
    return objective_class(name)(**hparams)


def name_of_target(target: str) -> str | None:
    """The registered name of the class a config's ``_target_`` points at (``None`` if that
    class is not a registered objective or cannot be imported)."""
    _load_builtin()
    for name, cls in _REGISTRY.items():
        if _path(cls) == target:
            return name
    module, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    name = getattr(cls, "name", None)
    return name if name in _REGISTRY and _REGISTRY[name] is cls else None
