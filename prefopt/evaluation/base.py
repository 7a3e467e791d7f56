"""What every evaluator receives, returns and declares.

The :class:`~prefopt.evaluation.callback.Evaluation` callback generates one completion per prompt
of a fixed sample of eval pairs (each rank its shard), then asks every evaluator twice:

1. :meth:`Evaluator.score` on this rank's rows: one value per row and name (a match, a reward, a
   length). Evaluators may run models here (the policy's forward, a reward model), on every rank.
2. :meth:`Evaluator.summarize` on every rank, with the values of the whole sample gathered from
   all ranks in sample order: the metrics (``accuracy``, ``win_rate``...). The default is the
   mean of each value; it must give the same result on every rank.

The callback logs the metrics as ``val/gen/<key>/<metric>`` (``<key>`` is the evaluator's config
key, its registered name in the shipped configs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from prefopt.models.logps import Scoring

Values = dict[str, list[float]]  # value name -> one float per row, in row order


@dataclass
class EvalRow:
    """One eval pair of the sample with the policy's completion of its prompt.

    Attributes:
        position: Position in the sample (0 .. num_prompts - 1): rows are shown and summarised
            in this order.
        prompt_ids: The prompt tokens (chat template applied, ending with the generation prompt).
        chosen_ids: The chosen response tokens (with the EOS / end-of-turn token).
        rejected_ids: The rejected response tokens.
        generation_ids: The generated tokens, the stop token included when generation stopped.
        stopped: Whether generation ended with a stop token (else it hit ``max_new_tokens``).
        prompt: The prompt as text (special tokens skipped).
        generation: The generation as text (special tokens skipped).
        chosen: The chosen response as text.
        rejected: The rejected response as text.
        reference: The data's reference answer (``reference`` / ``answer`` column), or None.
    """

    position: int
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    generation_ids: list[int]
    stopped: bool
    prompt: str
    generation: str
    chosen: str
    rejected: str
    reference: str | None = None


@dataclass(frozen=True)
class EvalData:
    """What an evaluator may check once, before the first evaluation (:meth:`Evaluator.setup`).

    Attributes:
        tokenizer: The policy's tokenizer.
        has_reference: The eval split has a reference answer column.
        num_rows: Rows in the sample.
        max_new_tokens: The generation limit.
    """

    tokenizer: PreTrainedTokenizerBase
    has_reference: bool
    num_rows: int
    max_new_tokens: int


@dataclass
class Policy:
    """The model being trained, as the evaluators see it (eval mode, no gradients).

    Attributes:
        model: The causal LM (``pl_module.model``; sharded under FSDP: call it on every rank).
        tokenizer: Its tokenizer.
        device: Where its inputs go.
        scoring: The run's log-prob settings (:class:`prefopt.models.logps.Scoring`).
        batch_size: Pairs per forward for evaluators that score pairs.
    """

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    scoring: Scoring
    batch_size: int = 32


class Evaluator:
    """Base of the evaluators: a thin class holding options; registered with ``@register``.

    Class attributes:
        name: The registered name (set by ``@register``).
        metrics: The names :meth:`summarize` returns (for TensorBoard's HParams columns and the
            printed summary); an evaluator whose names depend on its options declares none.
    """

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()

    def setup(self, data: EvalData) -> None:
        """Check the data and load what the evaluator needs, once; raise user errors here."""

    def score(self, rows: list[EvalRow], policy: Policy) -> Values:
        """One value per row and name, for this rank's rows (the first name is shown in the
        sample table)."""
        return {}

    def summarize(self, values: Values, policy: Policy) -> dict[str, float]:
        """The metrics of the whole sample from the gathered ``values`` (default: the means)."""
        return {name: mean(column) for name, column in values.items()}


def mean(values: list[float]) -> float:
    """The mean of ``values`` (nan for none)."""
    return sum(values) / len(values) if values else float("nan")
