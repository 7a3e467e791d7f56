"""PreferenceModule: one forward over [chosen; rejected], one log-prob function, any objective."""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from prefopt.metrics import MeanMetrics
from prefopt.models.load import enable_activation_checkpointing
from prefopt.models.logps import SequenceStats, sequence_stats
from prefopt.models.shared_prompt import SUPPORTED_MODEL_TYPES, supports_prompt_sharing
from prefopt.objectives import Objective, ObjectiveInputs
from prefopt.objectives.base import METRIC_NAMES

log = logging.getLogger(__name__)

REFERENCE_SOURCES = ("precomputed", "model")
PROGRESS_BAR_KEYS = ("loss", "rewards/accuracies", "margins/avg_logps")
PROMPT_SHARING = ("auto", True, False)


class PreferenceModule(L.LightningModule):
    """Trains a causal LM on preference pairs with a registered objective.

    The module reads the objective's declarations (``needs_reference``, ``reduction``,
    ``rejected_grad``) and never its name.

    Args:
        model: a Hugging Face causal LM.
        objective: a registered :class:`~prefopt.objectives.Objective`.
        optimizer: ``partial`` building the optimizer from parameter groups.
        scheduler: ``partial`` building a step-wise LR scheduler from the optimizer (it gets
            ``num_training_steps`` if its signature has it), or ``None``.
        nll_scope: which tokens the NLL covers and how it is pooled (see ``sequence_stats``).
        reference: ``precomputed`` (reference log-probs scored once before training by the
            initial policy and stored with the dataset) or ``model`` (a frozen copy in memory);
            used only when the objective needs a reference.
        logits_chunk_size: positions per LM-head chunk (``None``: no chunking).
        disable_dropout: zero every dropout probability (as TRL does by default).
        gradient_checkpointing: recompute decoder activations in backward.
        compile: ``torch.compile`` the model.
        router_aux_loss_coef: weight of an MoE model's router load-balancing loss (0: off).
        prompt_sharing: run each pair's prompt through the decoder once for both responses
            (``prefopt.models.shared_prompt``): ``auto`` where the model supports it, ``True``
            (an error where it does not) or ``False`` (the default: no measured gain on the
            benchmark's model, see docs/performance.md). Same losses and gradients either way.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        nll_scope: str = "full",
        reference: str = "precomputed",
        logits_chunk_size: int | None = 4096,
        disable_dropout: bool = True,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        router_aux_loss_coef: float = 0.0,
        prompt_sharing: bool | str = False,
    ) -> None:
        super().__init__()
        if reference not in REFERENCE_SOURCES:
            raise ValueError(
                f"unknown reference source {reference!r}; available: {', '.join(REFERENCE_SOURCES)}"
            )
        self.save_hyperparameters(ignore=["model", "objective", "optimizer", "scheduler"])
        self.model = model
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if disable_dropout:
            _disable_dropout(model)
        if gradient_checkpointing:
            enable_activation_checkpointing(model)
        if prompt_sharing not in PROMPT_SHARING:
            raise ValueError(f"prompt_sharing must be auto, true or false, got {prompt_sharing!r}")
        if prompt_sharing is True and not supports_prompt_sharing(model):
            raise ValueError(
                f"prompt_sharing=true, but {type(model).__name__} does not support it (supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}, without gradient checkpointing); use auto"
            )
        self.reference_model: nn.Module | None = None
        # LoRA (peft): the reference is the policy with its adapters disabled, not a copy
        in_memory = objective.needs_reference and reference == "model"
        self.reference_is_base = in_memory and hasattr(model, "disable_adapter")
        if in_memory and not self.reference_is_base:
            self.reference_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.reference_logps: dict[str, tuple[Tensor, Tensor]] | None = None
        names = ("loss", *METRIC_NAMES, *objective.extra_metrics)
        self.train_metrics = MeanMetrics(names, dist_sync_on_step=True)
        self.val_metrics = MeanMetrics(names)

    # ---- model setup -------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Let a sharding strategy (e.g. FSDP2) shard the policy and the reference."""
        shard = getattr(self.trainer.strategy, "shard_module", None)
        if shard is not None:
            shard(self.model)
            if self.reference_model is not None:
                shard(self.reference_model)
        if self.hparams.compile:
            self.model.compile()

    def configure_optimizers(self):
        decay, no_decay = [], []
        for param in self.model.parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        groups = [
            {"params": decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]
        optimizer = self.optimizer_factory([g for g in groups if g["params"]])
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "num_training_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["num_training_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- the step ----------------------------------------------------------------------------
    def _stats(self, model: nn.Module, batch: dict[str, Tensor], **kwargs) -> SequenceStats:
        mode = self.hparams.prompt_sharing
        share = mode is True or (mode == "auto" and not kwargs.get("output_router_logits"))
        seq_len = batch["input_ids"].shape[1]
        if share and "prompt_lengths" in batch and supports_prompt_sharing(model, seq_len):
            kwargs["prompt_lengths"] = batch["prompt_lengths"]
        return sequence_stats(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            nll_scope=self.hparams.nll_scope,
            chunk_size=self.hparams.logits_chunk_size,
            **kwargs,
        )

    def _reference(self, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor | None]:
        if not self.objective.needs_reference:
            return None, None
        if "ref_chosen_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        if self.reference_model is None and not self.reference_is_base:
            raise RuntimeError(
                f"objective {self.objective.name!r} needs reference log-probs, but the batch has "
                "none and there is no reference model (reference=precomputed needs on_fit_start)"
            )
        reference = self.model if self.reference_is_base else self.reference_model
        adapters_off = self.model.disable_adapter() if self.reference_is_base else nullcontext()
        with torch.no_grad(), adapters_off:
            stats = self._stats(reference, batch)
        logps = stats.avg_logps if self.objective.reduction == "mean" else stats.logps
        num_pairs = logps.shape[0] // 2
        return logps[:num_pairs], logps[num_pairs:]

    def _shared_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict, dict]:
        coef = self.hparams.router_aux_loss_coef
        stats = self._stats(
            self.model,
            batch,
            rejected_grad=self.objective.rejected_grad,
            output_router_logits=coef > 0,
        )
        b = stats.logps.shape[0] // 2
        ref_chosen, ref_rejected = self._reference(batch)
        # Token-pooled NLL over all devices: normalise by the mean count across ranks, so that
        # DDP's gradient average equals the gradient of the global token-pooled NLL.
        nll_denominator = self.trainer.strategy.reduce(stats.nll_count.float(), reduce_op="mean")
        counts = stats.counts.float()
        inputs = ObjectiveInputs(
            chosen_logps=stats.logps[:b],
            rejected_logps=stats.logps[b:],
            chosen_avg_logps=stats.avg_logps[:b],
            rejected_avg_logps=stats.avg_logps[b:],
            nll_loss=stats.nll_sum / nll_denominator,
            ref_chosen_logps=ref_chosen,
            ref_rejected_logps=ref_rejected,
            chosen_logits=stats.logits_sum[:b].sum() / counts[:b].sum(),
            rejected_logits=stats.logits_sum[b:].sum() / counts[b:].sum(),
        )
        out = self.objective(inputs)
        loss = out.loss
        if coef > 0 and stats.aux_loss is not None:
            loss = loss + coef * stats.aux_loss
        values = {**out.metrics, "loss": loss.detach()}
        # scalars pooled over tokens are weighted by their token counts across batches/devices
        values["nll_loss"] = stats.nll_sum.detach() / stats.nll_count
        weights = {
            "nll_loss": stats.nll_count.float(),
            "logits/chosen": counts[:b].sum(),
            "logits/rejected": counts[b:].sum(),
            "loss": torch.tensor(float(b), device=loss.device),
        }
        return loss, values, weights

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, values, weights = self._shared_step(batch)
        step = self.train_metrics(values, weights)  # this batch, synced over devices
        self._log("train", step)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, values, weights = self._shared_step(batch)
        self.val_metrics.update(values, weights)

    def on_validation_epoch_end(self) -> None:
        self._log("val", self.val_metrics.compute())
        self.val_metrics.reset()

    def on_train_epoch_end(self) -> None:
        self.train_metrics.reset()

    def _log(self, stage: str, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=key in PROGRESS_BAR_KEYS, sync_dist=False)

    # ---- reference log-probs, precomputed once -----------------------------------------------
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        skipped = getattr(datamodule, "skipped", None) or {}
        counts = {
            f"data/skipped/{split}/{reason}": float(n)
            for split, reasons in skipped.items()
            for reason, n in reasons.items()
        }
        for logger in self.loggers if counts else ():
            logger.log_metrics(counts, step=0)
        in_memory = self.reference_model is not None or self.reference_is_base
        if not self.objective.needs_reference or in_memory:
            return
        if self.reference_logps is None:  # not restored from a checkpoint
            splits = [s for s in ("train", "eval") if getattr(datamodule, f"{s}_dataset", None)]
            self.reference_logps = {
                s: self._score(datamodule.predict_dataloader(s)) for s in splits
            }
        for split, (chosen, rejected) in self.reference_logps.items():
            datamodule.set_reference_logps(split, chosen.tolist(), rejected.tolist())

    @torch.no_grad()
    def _score(self, loader) -> tuple[Tensor, Tensor]:
        """Reference log-probs of every pair in ``loader`` (dataset order) by the current model."""
        was_training = self.model.training
        self.model.eval()
        chosen, rejected = [], []
        for batch in loader:
            batch = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, Tensor)}
            stats = self._stats(self.model, batch)
            logps = stats.avg_logps if self.objective.reduction == "mean" else stats.logps
            b = logps.shape[0] // 2
            chosen.append(logps[:b].float().cpu())
            rejected.append(logps[b:].float().cpu())
        self.model.train(was_training)
        log.info("precomputed reference log-probs for %d pairs", sum(len(c) for c in chosen))
        return torch.cat(chosen), torch.cat(rejected)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reference_logps is not None:
            checkpoint["reference_logps"] = self.reference_logps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.reference_logps = checkpoint.get("reference_logps")


def _disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (modules and attention-dropout attributes)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
