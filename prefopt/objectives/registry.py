"""The objectives' registry (a :class:`prefopt.registry.Registry`): which exist, under which name.

``@register("name")`` on an :class:`~prefopt.objectives.base.Objective` subclass makes it
available; the name is its one identity, used by ``configs/objective/<name>.yaml``, TensorBoard's
HParams, ``status.json`` and ``prefopt-report``. Every module of this package is an objective
(imported on the first lookup) except the ones named below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefopt.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from prefopt.objectives.base import Objective


class UnknownObjectiveError(UnknownNameError):
    """Raised by :func:`get_objective` for a name nobody registered."""


OBJECTIVES: Registry = Registry(
    "objective",
    "prefopt.objectives",
    not_members={"base", "dpo_family", "functional", "registry"},
    error=UnknownObjectiveError,
)
_REGISTRY = OBJECTIVES.entries  # name -> class
register = OBJECTIVES.register
available = OBJECTIVES.available
name_of_target = OBJECTIVES.name_of_target


def objective_class(name: str) -> type[Objective]:
    """The class registered as ``name`` (:class:`UnknownObjectiveError` if none)."""
    return OBJECTIVES.get(name)


def get_objective(name: str, **hparams: Any) -> Objective:
    """Build the objective registered as ``name`` with the given hyperparameters."""
    return OBJECTIVES.build(name, **hparams)
