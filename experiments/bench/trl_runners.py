"""TRL 1.16's training steps on pre-collated batches: ORPOTrainer, CPOTrainer, DPOTrainer and
SFTTrainer, each built as a user would build it.

Each trainer gets its config class, a copy of the initial model, a tokenizer and a one-row text
dataset (only to satisfy ``__init__``); the benchmark's pairs (the token ids prefopt sees) are put
in the format the trainer's own dataset preparation produces and collated by the trainer's own
collator. A step is ``trainer.training_step`` (loss, metrics, backward) then the same AdamW as
prefopt's. Neither side checkpoints activations: TRL's configs default to
``gradient_checkpointing=True``, which only ``Trainer.train`` (not called here) would switch on;
the benchmark sets ``activation_checkpointing=False`` to say so.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from prefopt.data.collate import IGNORE_INDEX

from .runners import LR, adamw, clock, to_device
from .workload import PAD_ID, Pair

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@contextmanager
def _quiet():
    """No progress bars of the one-row dataset maps and the reference pass, no advice about
    TrainingArguments, no FutureWarnings of their arguments; the previous settings afterwards."""
    import datasets

    bars, log = datasets.is_progress_bar_enabled(), logging.getLogger("trl")
    level, tqdm = log.level, os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()
    log.setLevel(logging.ERROR)
    os.environ["TQDM_DISABLE"] = "1"  # the bar of DPOTrainer's reference pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
        if tqdm is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = tqdm
        if bars:
            datasets.enable_progress_bars()


def tokenizer():
    """prefopt's built-in tokenizer with padding on id 0 (``PAD_ID``, the model's), so that every
    trainer pads with the ids prefopt pads with (the random ids never use 0)."""
    from prefopt.data import load_tokenizer

    tok = load_tokenizer("builtin")
    tok.pad_token = tok.convert_ids_to_tokens(PAD_ID)
    return tok


def trl_row(pair: Pair) -> dict[str, list[int]]:
    """A pair in the format ``ORPOTrainer`` / ``CPOTrainer.tokenize_row`` produce."""
    prompt = pair["prompt_input_ids"]
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        response = pair[f"{side}_input_ids"]
        row[f"{side}_input_ids"] = prompt + response
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(response))
        row[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + response
    return row


def dpo_row(pair: Pair) -> dict[str, list[int]]:
    """A pair in the format ``DPOTrainer``'s dataset preparation produces."""
    return {
        "prompt_ids": pair["prompt_input_ids"],
        "chosen_ids": pair["chosen_input_ids"],
        "rejected_ids": pair["rejected_input_ids"],
    }


def sft_row(pair: Pair) -> dict[str, list[int]]:
    """Prompt + chosen in the format ``SFTTrainer`` prepares with ``completion_only_loss``: the
    labels are the ids on the completion and -100 on the prompt."""
    prompt, chosen = pair["prompt_input_ids"], pair["chosen_input_ids"]
    return {"input_ids": prompt + chosen, "labels": [IGNORE_INDEX] * len(prompt) + chosen}


class TRLRunner:
    """One TRL trainer, its batches and the optimizer (see the module docstring).

    Args:
        model: the initial model (copied).
        batch_rows: the pairs of each batch, as lists of prefopt pairs.
        max_length: the config's ``max_length`` (the pairs are already truncated to it).
        device: ``cpu`` or ``cuda``.
        **config: the loss's fields of the trainer's config (``beta``, ``loss_type``, ...).
    """

    kind = ""

    def __init__(
        self,
        model: nn.Module,
        batch_rows: list[list[Pair]],
        max_length: int,
        device: str = "cpu",
        **config,
    ) -> None:
        from datasets import Dataset

        self.device = device
        self._tmp = tempfile.TemporaryDirectory()
        common = dict(
            output_dir=self._tmp.name,
            max_length=max_length,
            per_device_train_batch_size=len(batch_rows[0]),
            learning_rate=LR,
            weight_decay=0.0,
            use_cpu=device == "cpu",
            bf16=False,
            activation_checkpointing=False,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
        )
        with _quiet():
            trainer_cls, args = self._config(common | config)
            text = {"prompt": ["Hi"], "chosen": [" there"], "rejected": [" you"]}
            if self.kind == "sft":
                text = {"prompt": ["Hi"], "completion": [" there"]}
            self.trainer = trainer_cls(
                model=copy.deepcopy(model),
                args=args,
                processing_class=tokenizer(),
                train_dataset=Dataset.from_dict(text),  # batches go to training_step instead
            )
        self.trainer.current_gradient_accumulation_steps = 1
        self.model = self.trainer.model
        self.optimizer = adamw(self.model.parameters())
        self.batches = [self._batch(rows) for rows in batch_rows]

    def _config(self, fields: dict):
        raise NotImplementedError

    def _batch(self, rows: list[Pair]) -> dict:
        return to_device(self.trainer.data_collator([trl_row(p) for p in rows]), self.device)

    def first_loss(self) -> dict[str, float]:
        """Loss and logged metrics of batch 0, before training (``get_batch_loss_metrics``)."""
        with torch.no_grad():
            loss, metrics = self.trainer.get_batch_loss_metrics(self.model, self.batches[0])
        keys = ("nll_loss", "logps/chosen", "logps/rejected")
        return {"loss": float(loss)} | {k: float(metrics[k]) for k in keys}

    def step(self, i: int) -> float:
        start = clock(self.device)
        self.trainer.training_step(self.model, dict(self.batches[i]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return clock(self.device) - start


class ORPORunner(TRLRunner):
    """``trl.experimental.orpo.ORPOTrainer``; ``beta`` is ORPO's lambda."""

    kind = "orpo"

    def _config(self, fields: dict):
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig(padding_value=PAD_ID, **fields)


class CPORunner(TRLRunner):
    """``trl.experimental.cpo.CPOTrainer`` (``loss_type="simpo"``, ``"sigmoid"``, ...)."""

    kind = "cpo"

    def _config(self, fields: dict):
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        self.cpo_alpha = fields.get("cpo_alpha", 1.0)
        return CPOTrainer, CPOConfig(**fields)

    def first_loss(self) -> dict[str, float]:
        out = super().first_loss()
        if self.cpo_alpha == 0:  # TRL then reports an NLL of 0 that it never computed
            del out["nll_loss"]
        return out


class DPORunner(TRLRunner):
    """``trl.DPOTrainer`` with ``precompute_ref_log_probs=True``: before training, the reference
    log-probs of every batch are computed by TRL's own ``compute_ref_log_probs`` (what its
    precompute pass runs on each batch of the dataset) from the initial model, and travel in the
    batch as ``ref_chosen_logps`` / ``ref_rejected_logps``, as its collator puts them there."""

    kind = "dpo"

    def _config(self, fields: dict):
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig(precompute_ref_log_probs=True, **fields)

    def _batch(self, rows: list[Pair]) -> dict:
        batch = to_device(self.trainer.data_collator([dpo_row(p) for p in rows]), self.device)
        chosen, rejected = self.trainer.compute_ref_log_probs(self.model, batch)
        return batch | {"ref_chosen_logps": chosen, "ref_rejected_logps": rejected}

    def first_loss(self) -> dict[str, float]:
        logged = self.trainer._metrics["train" if self.model.training else "eval"]
        with torch.no_grad():
            loss = self.trainer.compute_loss(self.model, dict(self.batches[0]))
        out = {"loss": float(loss)} | {k: logged[k][-1] for k in ("logps/chosen", "logps/rejected")}
        logged.clear()
        return out


class SFTRunner(TRLRunner):
    """``trl.SFTTrainer`` with ``completion_only_loss=True`` on prompt + chosen (B rows)."""

    kind = "sft"

    def _config(self, fields: dict):
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer, SFTConfig(completion_only_loss=True, **fields)

    def _batch(self, rows: list[Pair]) -> dict:
        return to_device(self.trainer.data_collator([sft_row(p) for p in rows]), self.device)

    def first_loss(self) -> dict[str, float]:
        with torch.no_grad():
            loss = self.trainer.compute_loss(self.model, dict(self.batches[0]))
        self.trainer._metrics["train" if self.model.training else "eval"].clear()
        return {"loss": float(loss)}
