"""Generation evaluators, registered by name like the objectives, run by one callback.

:class:`Evaluation` (a Lightning callback) completes a fixed sample of eval prompts at validation
time and hands the completions to the evaluators (``@register("name")`` subclasses of
:class:`Evaluator`, one file each); Hydra builds them from ``configs/evaluation/<name>.yaml``, and
a test keeps the registry and the configs in step. See ``docs/evaluation.md``.
"""

from prefopt.evaluation.base import EvalData, EvalRow, Evaluator, Policy, Values
from prefopt.evaluation.callback import Evaluation
from prefopt.evaluation.registry import (
    UnknownEvaluatorError,
    available,
    evaluator_class,
    get_evaluator,
    register,
)

__all__ = [
    "EvalData",
    "EvalRow",
    "Evaluation",
    "Evaluator",
    "Policy",
    "UnknownEvaluatorError",
    "Values",
    "available",
    "evaluator_class",
    "get_evaluator",
    "register",
]
