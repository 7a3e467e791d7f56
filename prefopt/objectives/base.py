"""What every objective receives, returns and declares.

The module computes per-sequence log-probs once (one forward over [chosen; rejected]) and hands
them to the objective as an :class:`ObjectiveInputs`; the objective returns the scalar loss and a
dict of metrics (TRL's names, see ``docs/metrics.md``). Objectives never call a model, never
log, and never look at tokens.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal

import torch
from torch import Tensor

from prefopt.errors import ConfigError
from prefopt.objectives.functional import log_odds as odds_ratio
from prefopt.objectives.functional import upcast

Reduction = Literal["mean", "sum"]

# Every objective returns these (see preference_metrics and docs/metrics.md).
METRIC_NAMES = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
    "nll_loss",
    "log_odds_ratio",
    "log_odds_chosen",
    "margins/avg_logps",
    "accuracies/avg_logps",
    "avg_logps/chosen",
    "avg_logps/rejected",
)


@dataclass
class ObjectiveInputs:
    """Per-sequence statistics of one batch of B preference pairs.

    Attributes:
        chosen_logps: (B,) summed log-probs of the chosen response tokens.
        rejected_logps: (B,) summed log-probs of the rejected response tokens.
        chosen_avg_logps: (B,) mean per-token log-probs of the chosen response (ORPO's log P).
        rejected_avg_logps: (B,) mean per-token log-probs of the rejected response.
        nll_loss: () the NLL term of the chosen sequences, reduced as the run's ``nll_scope``
            says (see ``docs/objectives.md``).
        ref_chosen_logps: (B,) reference log-probs of the chosen response, reduced as the
            objective's ``reduction`` declares; ``None`` unless ``needs_reference``.
        ref_rejected_logps: (B,) same for the rejected response.
        chosen_logits: () mean logit over the chosen response positions and the vocabulary
            (metrics only; optional).
        rejected_logits: () same for the rejected responses.
        chosen_lengths: (B,) number of chosen response tokens (optional).
        rejected_lengths: (B,) same for the rejected responses.
    """

    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_avg_logps: Tensor
    rejected_avg_logps: Tensor
    nll_loss: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_logits: Tensor | None = None
    rejected_logits: Tensor | None = None
    chosen_lengths: Tensor | None = None
    rejected_lengths: Tensor | None = None

    def logps(self, reduction: Reduction) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) log-probs, each (B,), in the given reduction."""
        if reduction == "mean":
            return self.chosen_avg_logps, self.rejected_avg_logps
        return self.chosen_logps, self.rejected_logps


@dataclass
class ObjectiveOutput:
    """What an objective returns for one batch.

    Attributes:
        loss: () the loss to minimise.
        metrics: the metrics to log, detached; each (B,) per pair or () per batch.
        terms: for an objective made of several terms (ORPO: ``nll`` and ``odds_ratio``; CPO:
            ``nll`` and ``preference``; ``weighted``: one per term label), each weighted term as
            a () tensor with its gradient; they sum to ``loss``. Empty for a one-term loss.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    terms: dict[str, Tensor] = field(default_factory=dict)


class Objective(ABC):
    """Base class: hyperparameters + declarations; subclasses implement :meth:`compute`.

    Declarations read by the module (it never branches on an objective's name):
        needs_reference: the module must provide ``ref_chosen_logps``/``ref_rejected_logps``.
        reduction: how the objective's own log-probs (and the reference's) are reduced over
            response tokens: ``"mean"`` (per-token average) or ``"sum"``.
        rejected_grad: whether the loss back-propagates through the rejected responses; when
            ``False`` the module detaches them (they are still scored for the metrics).
        extra_metrics: names of metrics the objective returns beyond ``METRIC_NAMES``.
        metrics_only: hyperparameters that only scale metrics, never the loss (SFT's ``lam``):
            the report treats runs that differ only in them as one arm.

    Metadata for ``docs/objectives.md`` (a test compares the table with them):
        formula: the per-pair loss in the notation of the docs.
        paper: authors, year and arXiv id (with the equation number).
        trl_name: how TRL 1.16 selects the same loss, or ``""`` if it has none.
    """

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    reduction: ClassVar[Reduction] = "mean"
    rejected_grad: ClassVar[bool] = True
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    formula: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    trl_name: ClassVar[str] = ""
    metrics_only: ClassVar[tuple[str, ...]] = ()

    def __call__(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        check_finite(inputs, self.name)
        inputs = _upcast(inputs)
        out = self.compute(inputs)
        out.metrics = {k: v.detach() for k, v in out.metrics.items()}
        return out

    @abstractmethod
    def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        """The loss and metrics of one batch, from upcast, finite inputs."""

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({hp})"


# |hyperparameter| above this makes rewards/* overflow float32 for log-probs of -1e4 and more
MAX_HPARAM = 1e6


def check_range(
    name: str,
    key: str,
    value: float,
    low: float,
    high: float = MAX_HPARAM,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``float(value)`` if it lies in the interval, else one line naming the key and the range.

    Raises:
        ConfigError: e.g. ``ipo: beta must be in [1e-06, 1e+06], got -0.1``.
    """
    value = float(value)
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (above and below):  # also catches NaN
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ConfigError(f"{name}: {key} must be in {interval}, got {value:g}")
    return value


def check_beta(name: str, beta: float) -> float:
    """The shared range of every ``beta``: [1e-6, 1e6] (``1/beta`` targets stay finite too)."""
    return check_range(name, "beta", beta, 1e-6)


def require_reference(inputs: ObjectiveInputs, name: str) -> tuple[Tensor, Tensor]:
    """``(ref_chosen_logps, ref_rejected_logps)``, each (B,), or one line if they are missing."""
    if inputs.ref_chosen_logps is None or inputs.ref_rejected_logps is None:
        raise ValueError(f"{name}: needs reference log-probs, but none were given")
    return inputs.ref_chosen_logps, inputs.ref_rejected_logps


def require_lengths(inputs: ObjectiveInputs, name: str) -> tuple[Tensor, Tensor]:
    """``(chosen_lengths, rejected_lengths)``, each (B,), or one line if they are missing."""
    if inputs.chosen_lengths is None or inputs.rejected_lengths is None:
        raise ValueError(f"{name}: needs the response lengths, but none were given")
    return inputs.chosen_lengths, inputs.rejected_lengths


def check_finite(inputs: ObjectiveInputs, name: str = "objective") -> None:
    """Raise one clear line if any given input is non-finite (e.g. an empty response's 0/0).

    Raises:
        ValueError: naming the field and how many entries are bad.
    """
    for f in fields(inputs):
        value = getattr(inputs, f.name)
        if value is None:
            continue
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise ValueError(
                f"{name}: {int(bad.sum())} of {value.numel()} entries of {f.name} are not finite "
                "(an empty or fully-masked response? the data layer should have dropped it)"
            )


def _upcast(inputs: ObjectiveInputs) -> ObjectiveInputs:
    """Upcast bf16/fp16 tensors to float32; float32/float64 stay as they are."""
    changes = {}
    for f in fields(inputs):
        value = getattr(inputs, f.name)
        if value is not None and value.dtype in (torch.float16, torch.bfloat16):
            changes[f.name] = upcast(value)
    return dataclasses.replace(inputs, **changes) if changes else inputs


def preference_metrics(
    inputs: ObjectiveInputs,
    rewards_chosen: Tensor,
    rewards_rejected: Tensor,
    reduction: Reduction,
    log_odds: Tensor | None = None,
) -> dict[str, Tensor]:
    """The metric set every objective logs, with TRL's names and meanings.

    Args:
        inputs: the batch statistics.
        rewards_chosen: (B,) the objective's implicit reward of the chosen response.
        rewards_rejected: (B,) same for the rejected response.
        reduction: which log-probs ``logps/*`` report (TRL: mean for ORPO, sum for DPO).
        log_odds: (B,) ORPO's log odds ratio of chosen over rejected (paper Eq. 6-7), if the
            objective computed it already; otherwise computed here from the mean log-probs.

    Returns:
        ``{name: tensor}`` with (B,) per-pair values or () scalars; see ``docs/metrics.md``.
    """
    chosen, rejected = inputs.logps(reduction)
    if log_odds is None:
        log_odds = odds_ratio(inputs.chosen_avg_logps, inputs.rejected_avg_logps)
    avg_margin = inputs.chosen_avg_logps - inputs.rejected_avg_logps
    metrics = {
        "rewards/chosen": rewards_chosen,
        "rewards/rejected": rewards_rejected,
        "rewards/accuracies": (rewards_chosen > rewards_rejected).float(),
        "rewards/margins": rewards_chosen - rewards_rejected,
        "logps/chosen": chosen,
        "logps/rejected": rejected,
        "nll_loss": inputs.nll_loss,
        "log_odds_ratio": torch.nn.functional.logsigmoid(log_odds),
        "log_odds_chosen": log_odds,
        "margins/avg_logps": avg_margin,
        "accuracies/avg_logps": (avg_margin > 0).float(),
        # per-token means whatever the objective's reduction: every arm on the same axis
        "avg_logps/chosen": inputs.chosen_avg_logps,
        "avg_logps/rejected": inputs.rejected_avg_logps,
    }
    if inputs.chosen_logits is not None and inputs.rejected_logits is not None:
        metrics["logits/chosen"] = inputs.chosen_logits
        metrics["logits/rejected"] = inputs.rejected_logits
    return metrics
