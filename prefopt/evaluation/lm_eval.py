"""``lm_eval``: lm-evaluation-harness tasks run in-process on the current weights.

Any task the harness knows (e.g. ``ifeval``, ``arc_easy``) or defines from a YAML file in
``include_path`` (local data through ``dataset_path: json``, so it runs offline), on the first
``limit`` documents of each task. Metrics are logged as ``val/gen/lm_eval/<task>/<metric>``
(``.../<metric>/<filter>`` for a filter other than ``none``; standard errors are not computed).
It does not use the callback's generations: the harness builds its own requests. It runs on
every rank with the same inputs (the same numbers on each, and a sharded model is called in
step); the work is repeated, not split. Needs ``pip install 'prefopt[eval]'``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from typing import Any

from prefopt.errors import ConfigError, MissingDependencyError
from prefopt.evaluation.base import EvalData, Evaluator, Policy, Values
from prefopt.evaluation.registry import register


def flat_results(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"<task>/<metric>[/<filter>]": value}`` from ``simple_evaluate(...)["results"]``
    (keys like ``"acc,none"``; standard errors and non-numbers dropped)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or isinstance(value, (str, bool)):
                continue
            if not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
                continue
            name = metric if filter_name == "none" else f"{metric}/{filter_name}"
            if math.isfinite(float(value)):
                out[f"{task}/{name}"] = float(value)
    return out


@register("lm_eval")
class LMEval(Evaluator):
    """lm-evaluation-harness tasks on the policy being trained.

    Args:
        tasks: Task (or group) names, e.g. ``[ifeval]`` or the names in ``include_path``'s YAMLs.
        limit: Documents per task (the first ones).
        include_path: A folder (or list) of task YAML files of your own (None: none).
        include_defaults: Also index the harness's own tasks (false: faster, only yours).
        batch_size: Requests per forward.
        num_fewshot: Few-shot examples (None: each task's default).
        apply_chat_template: Render requests through the tokenizer's chat template.
        max_length: Longest request in tokens (None: the model's ``max_position_embeddings``).

    Raises:
        MissingDependencyError: lm-eval is not installed. ConfigError: no tasks.
    """

    def __init__(
        self,
        tasks: Sequence[str] = ("ifeval",),
        limit: int = 32,
        include_path: str | Sequence[str] | None = None,
        include_defaults: bool = True,
        batch_size: int = 16,
        num_fewshot: int | None = None,
        apply_chat_template: bool = False,
        max_length: int | None = None,
    ) -> None:
        if importlib.util.find_spec("lm_eval") is None:
            raise MissingDependencyError(
                "evaluation=[lm_eval] needs lm-evaluation-harness: pip install 'prefopt[eval]'"
            )
        if not tasks:
            raise ConfigError("evaluation.lm_eval.tasks is empty: name tasks, e.g. [ifeval]")
        self.tasks = [str(t) for t in tasks]
        self.limit, self.batch_size, self.num_fewshot = limit, batch_size, num_fewshot
        paths = [include_path] if isinstance(include_path, str) else include_path
        self.include_path = [str(p) for p in paths] if paths else None
        self.include_defaults = include_defaults
        self.apply_chat_template, self.max_length = apply_chat_template, max_length
        self.task_manager = None

    def setup(self, data: EvalData) -> None:
        from lm_eval.tasks import TaskManager

        self.task_manager = TaskManager(
            include_path=self.include_path, include_defaults=self.include_defaults
        )
        known = set(self.task_manager.all_tasks)
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            where = f" or in include_path={self.include_path}" if self.include_path else ""
            raise ConfigError(
                f"evaluation.lm_eval.tasks: {', '.join(map(repr, unknown))} is not a task of the "
                f"harness{where}; see `lm-eval ls tasks`, or add its YAML to "
                "evaluation.lm_eval.include_path"
            )

    def summarize(self, values: Values, policy: Policy) -> dict[str, float]:
        """Run the tasks on ``policy.model`` (this is where the harness's work happens)."""
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        options = {"max_length": self.max_length} if self.max_length else {}
        lm = HFLM(
            pretrained=policy.model,
            tokenizer=policy.tokenizer,
            batch_size=self.batch_size,
            **options,
        )
        out = simple_evaluate(
            model=lm,
            tasks=self.tasks,
            num_fewshot=self.num_fewshot,
            limit=self.limit,
            task_manager=self.task_manager,
            apply_chat_template=self.apply_chat_template,
            log_samples=False,
            bootstrap_iters=0,
        )
        return flat_results(out["results"]) if out else {}
