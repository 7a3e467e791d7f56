"""One training step (forward, loss, backward, AdamW step) per implementation under test.

Every runner owns a copy of the same initial model and an AdamW optimizer with the same
hyperparameters, and exposes ``step(i)`` (train on its i-th batch, return seconds) and
``first_loss()`` (the loss of its first batch, without training, for the parity check).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prefopt.data.collate import IGNORE_INDEX
from prefopt.models.logps import Scoring
from prefopt.models.reference import PrecomputedReference
from prefopt.objectives import Objective
from prefopt.objectives.base import METRIC_NAMES
from prefopt.training import BatchLoss, batch_loss
from prefopt.training.metrics import MeanMetrics
from prefopt.training.module import parameter_groups

LR = 1e-4


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
        return {"loss": float(out.loss), "nll_loss": float(out.values["nll_loss"])}

    def step(self, i: int) -> float:
        start = clock(self.device)
        out = self._loss(self.batches[i])
        self.metrics(out.values, out.weights)
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return clock(self.device) - start


def trl_row(pair: dict[str, list[int]]) -> dict[str, list[int]]:
    """A pair in the format ``ORPOTrainer.tokenize_row`` produces (same ids as prefopt's)."""
    prompt = pair["prompt_input_ids"]
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        response = pair[f"{side}_input_ids"]
        row[f"{side}_input_ids"] = prompt + response
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(response))
        row[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + response
    return row


class TRLRunner:
    """TRL's step: ``ORPOTrainer.training_step`` (loss, metrics, backward) then AdamW.

    Args:
        model: the initial model (copied).
        lam: ORPO's lambda (TRL's ``beta``).
        max_length: ``ORPOConfig.max_length`` (the pairs are already truncated to it).
        pad_token_id: padding id of the batches.
        batch_rows: the pairs of each batch, as lists of prefopt pairs.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        model: nn.Module,
        lam: float,
        max_length: int,
        pad_token_id: int,
        batch_rows: list[list[dict[str, list[int]]]],
        device: str = "cpu",
    ) -> None:
        self.device = device
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from datasets import Dataset
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        from prefopt.data import load_tokenizer

        self._tmp = tempfile.TemporaryDirectory()
        args = ORPOConfig(
            output_dir=self._tmp.name,
            beta=lam,
            max_length=max_length,
            per_device_train_batch_size=len(batch_rows[0]),
            learning_rate=LR,
            weight_decay=0.0,
            padding_value=pad_token_id,
            use_cpu=device == "cpu",
            bf16=False,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
        )
        text = Dataset.from_dict({"prompt": ["Hi"], "chosen": [" there"], "rejected": [" you"]})
        self.trainer = ORPOTrainer(
            model=copy.deepcopy(model),
            args=args,
            processing_class=load_tokenizer("builtin"),
            train_dataset=text,  # only to satisfy __init__; batches are passed to training_step
        )
        self.trainer.current_gradient_accumulation_steps = 1
        self.optimizer = adamw(self.trainer.model.parameters())
        self.batches = [
            to_device(self.trainer.data_collator([trl_row(p) for p in rows]), device)
            for rows in batch_rows
        ]

    def first_loss(self) -> dict[str, float]:
        with torch.no_grad():
            loss, metrics = self.trainer.get_batch_loss_metrics(self.trainer.model, self.batches[0])
        return {"loss": float(loss), "nll_loss": float(metrics["nll_loss"])}

    def step(self, i: int) -> float:
        start = clock(self.device)
        self.trainer.training_step(self.trainer.model, self.batches[i])
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
