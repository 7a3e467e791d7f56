"""The evaluators' registry (a :class:`prefopt.registry.Registry`): which exist, under which name.

``@register("name")`` on an :class:`~prefopt.evaluation.base.Evaluator` subclass makes it
available; the name is its identity, used by ``configs/evaluation/<name>.yaml`` and, through the
config key, by the logged tags (``val/gen/<name>/<metric>``). Every module of this package is an
evaluator (imported on the first lookup) except the ones named below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefopt.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from prefopt.evaluation.base import Evaluator


class UnknownEvaluatorError(UnknownNameError):
    """Raised by :func:`get_evaluator` for a name nobody registered."""


EVALUATORS: Registry = Registry(
    "evaluator",
    "prefopt.evaluation",
    not_members={"base", "callback", "generation", "registry", "runtime"},
    error=UnknownEvaluatorError,
)
_REGISTRY = EVALUATORS.entries  # name -> class
register = EVALUATORS.register
available = EVALUATORS.available


def evaluator_class(name: str) -> type[Evaluator]:
    """The class registered as ``name`` (:class:`UnknownEvaluatorError` if none)."""
    return EVALUATORS.get(name)


def get_evaluator(name: str, **options: Any) -> Evaluator:
    """Build the evaluator registered as ``name`` with the given options."""
    return EVALUATORS.build(name, **options)
