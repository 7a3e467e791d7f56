"""Preference objectives: pure loss functions over per-sequence tensors, registered by name.

An objective is a small class (hyperparameters + declarations, see :class:`Objective`) around a
pure loss function. Register one with ``@register("name")``; look it up with
:func:`get_objective`; list them with :func:`available`. Hydra builds objectives from
``configs/objective/<name>.yaml`` via ``_target_``; a test keeps the registry and the configs in
step.
"""

from prefopt.objectives.base import Objective, ObjectiveInputs, ObjectiveOutput, preference_metrics
from prefopt.objectives.registry import (
    UnknownObjectiveError,
    available,
    get_objective,
    name_of_target,
    objective_class,
    register,
)

__all__ = [
    "Objective",
    "ObjectiveInputs",
    "ObjectiveOutput",
    "UnknownObjectiveError",
    "available",
    "get_objective",
    "name_of_target",
    "objective_class",
    "preference_metrics",
    "register",
]
