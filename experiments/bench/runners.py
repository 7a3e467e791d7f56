"""One training step (forward, loss, backward, AdamW step) of prefopt, and the interleaving.

Every runner (this one, and TRL's in :mod:`experiments.bench.trl_runners`) owns a copy of the
same initial model (``model``) and an AdamW optimizer with the same hyperparameters
(``optimizer``), and exposes ``step(i)`` (train on its i-th batch, return seconds) and
``first_loss()`` (the loss of its first batch and the parity keys it reports, without training).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prefopt.models.logps import Scoring
from prefopt.models.reference import PrecomputedReference
from prefopt.objectives import Objective
from prefopt.objectives.base import METRIC_NAMES
from prefopt.training import BatchLoss, batch_loss
from prefopt.training.metrics import MeanMetrics
from prefopt.training.module import parameter_groups

LR = 1e-4
# what the parity check compares besides the loss (batch means), where the peer reports them
PARITY_KEYS = ("nll_loss", "logps/chosen", "logps/rejected")


def to_device(batch: dict, device: str) -> dict:
    """The batch with its tensors on ``device``."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def clock(device: str) -> float:
    """``time.perf_counter`` after the device's queued work is done."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def adamw(params) -> torch.optim.Optimizer:
    """The optimizer of every runner (TRL's defaults: no weight decay)."""
    return torch.optim.AdamW(params, lr=LR, weight_decay=0.0)


def cross_entropy_chunk(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor):
    """prefopt's chunk scorer before the fused head (``prefopt.models.fused_head``):
    ``F.cross_entropy`` on the chunk's logits, and their vocabulary mean."""
    logits = F.linear(hidden, weight, bias).float()  # (N, V)
    return -F.cross_entropy(logits, targets, reduction="none"), logits.detach().mean(-1)


class PrefoptRunner:
    """prefopt's step: ``batch_loss`` (forward + objective + metrics), the metric update the
    training module does, backward, AdamW on the module's parameter groups.

    Args:
        model: the initial model (copied).
        objective: the registered objective.
        batches: collated batches (``PreferenceCollator``), with reference log-probs for DPO.
        scoring: a :class:`~prefopt.models.logps.Scoring`, or the full-logits oracle
            (``prefopt.models.oracle.full_logits_scoring``) for the straightforward baseline.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        batches: list[dict[str, Tensor]],
        scoring: Scoring | Callable | None = None,
        device: str = "cpu",
    ) -> None:
        self.device = device
        self.model = copy.deepcopy(model).to(device).train()
        self.objective, self.scoring = objective, scoring or Scoring()
        self.reference = PrecomputedReference() if objective.needs_reference else None
        names = ("loss", *METRIC_NAMES, *objective.extra_metrics)
        self.metrics = MeanMetrics(names).to(device)
        self.optimizer = adamw(parameter_groups(self.model))
        self.batches = [to_device(b, device) for b in batches]

    def _loss(self, batch: dict[str, Tensor]) -> BatchLoss:
        return batch_loss(self.model, self.objective, batch, self.scoring, self.reference)

    def first_loss(self) -> dict[str, float]:
        with torch.no_grad():
            out = self._loss(self.batches[0])
        return {"loss": float(out.loss)} | {k: float(out.values[k].mean()) for k in PARITY_KEYS}

    def step(self, i: int) -> float:
        start = clock(self.device)
        out = self._loss(self.batches[i])
        self.metrics(out.values, out.weights)
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return clock(self.device) - start


def interleave(runners: dict[str, Callable[[int], float]], steps: int) -> dict[str, list[float]]:
    """Run step ``i`` of every runner, round after round (A/B/C, C/B/A, ...), so that machine
    drift hits all of them alike; the order flips every round. Returns seconds per step."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(steps):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(runners[name](i))
    return times
