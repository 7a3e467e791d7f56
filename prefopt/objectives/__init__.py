"""Registry of preference objectives.

An objective is a small class (hyperparameters + declarations, see :class:`Objective`) around a
pure loss function over per-sequence tensors. Register one with ``@register("name")``; look it up
with :func:`get_objective`. Hydra builds objectives from ``configs/objective/<name>.yaml`` via
``_target_``; a test keeps the registry and the configs in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefopt.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput

T = TypeVar("T", bound=type[Objective])

_REGISTRY: dict[str, type[Objective]] = {}


class UnknownObjectiveError(KeyError):
    """Raised by :func:`get_objective` for a name nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an :class:`Objective` subclass available under ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"objective {name!r} is already registered by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    """Sorted names of all registered objectives."""
    return sorted(_REGISTRY)


def get_objective(name: str, **hparams: Any) -> Objective:
    """Build the objective registered as ``name``.

    Raises:
        UnknownObjectiveError: (a KeyError) one line naming the unknown objective and the
            available ones.
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise UnknownObjectiveError(
            f"unknown objective {name!r}; available: {', '.join(available())}"
        ) from None
    return cls(**hparams)


# Import the built-in objectives so that they register themselves.
from prefopt.objectives import dpo, orpo, sft  # noqa: E402,F401

__all__ = [
    "Objective",
    "ObjectiveInputs",
    "ObjectiveOutput",
    "UnknownObjectiveError",
    "available",
    "get_objective",
    "register",
]
