"""PreferenceModule: a LightningModule that trains a causal LM with any registered objective.

It only trains: the model arrives built (``prefopt.models.load_model``: surgery and adapters done),
the loss of a batch is :func:`prefopt.training.step.batch_loss`, reference log-probs come from a
provider (``prefopt.models.reference``), and the reference precompute and data statistics are
callbacks (``prefopt.training.callbacks``), the generation evaluators too (``prefopt.evaluation``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from prefopt.errors import TrainingError
from prefopt.models.logps import Scoring
from prefopt.models.reference import ReferenceProvider, make_reference
from prefopt.objectives import Objective
from prefopt.objectives.base import METRIC_NAMES
from prefopt.training.metrics import MeanMetrics
from prefopt.training.step import BatchLoss, NonFiniteLogps, batch_loss
from prefopt.training.term_gradients import term_gradient_stats

PROGRESS_BAR_KEYS = ("loss", "rewards/accuracies", "margins/avg_logps")


class PreferenceModule(L.LightningModule):
    """Trains a causal LM on preference pairs with a registered objective.

    The module reads the objective's declarations (``needs_reference``, ``reduction``,
    ``rejected_grad``) and never its name.

    Args:
        model: a Hugging Face causal LM (built by ``prefopt.models.load_model``).
        objective: a registered :class:`~prefopt.objectives.Objective`.
        optimizer: ``partial`` building the optimizer from parameter groups.
        scheduler: ``partial`` building a step-wise LR scheduler, called as
            ``scheduler(optimizer=..., num_training_steps=...)``
            (``transformers.get_scheduler``), or ``None``.
        reference: where reference log-probs come from when the objective needs them: a
            provider, or its name (``precomputed``, ``model``; see
            :func:`prefopt.models.reference.make_reference`).
        reference_cache_dir: on-disk cache of precomputed reference log-probs, keyed by the
            weights, data and scoring settings (``None``: off; ``prefopt.models.reference_cache``).
        nll_scope: which tokens the NLL covers and how it is pooled (see ``Scoring``).
        logits_chunk_size: positions per LM-head chunk (``None``: no chunking).
        vocab_chunk_size: a vocabulary larger than this is tiled in the LM head, so the loss
            stage holds at most ``logits_chunk_size x vocab_chunk_size`` logits (``None``: never).
        prompt_sharing: run each prompt once for both responses (``auto``, ``True``, ``False``).
        router_aux_loss_coef: weight of an MoE model's router load-balancing loss (0: off).
        compile: ``torch.compile`` the model (after sharding).
        log_term_grad_norms_every: every N optimizer steps, log the gradient norm of each term
            of a multi-term objective and the cosine between terms (``train/grad_norm/<term>``,
            ``train/grad_cosine/<a>~<b>``; see :mod:`prefopt.training.term_gradients`); 0: off.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        reference: ReferenceProvider | str = "precomputed",
        reference_cache_dir: str | None = None,
        nll_scope: str = "full",
        logits_chunk_size: int | None = 4096,
        vocab_chunk_size: int | None = 32768,
        prompt_sharing: bool | str = False,
        router_aux_loss_coef: float = 0.0,
        compile: bool = False,
        log_term_grad_norms_every: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scoring = Scoring(
            nll_scope, logits_chunk_size, prompt_sharing, vocab_chunk_size=vocab_chunk_size
        )
        self.scoring.check(model)
        if isinstance(reference, str):
            needed = objective.needs_reference
            reference = make_reference(reference, model, reference_cache_dir) if needed else None
        self.reference = reference
        self.router_aux_loss_coef = router_aux_loss_coef
        self.compile_model = compile
        self.term_grad_every = log_term_grad_norms_every
        names = ("loss", *METRIC_NAMES, *objective.extra_metrics)
        self.train_metrics = MeanMetrics(names, dist_sync_on_step=True)
        self.val_metrics = MeanMetrics(names)

    def configure_model(self) -> None:
        """Let a sharding strategy (e.g. FSDP2) shard the policy and a reference model."""
        shard = getattr(self.trainer.strategy, "shard_module", None)
        if shard is not None:
            for module in (self.model, *getattr(self.reference, "models", ())):
                shard(module)
        if self.compile_model:
            self.model.compile()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(parameter_groups(self.model))
        if self.scheduler_factory is None:
            return optimizer
        steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, num_training_steps=steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def loss(self, batch: dict[str, Tensor]) -> BatchLoss:
        """:func:`batch_loss` of ``batch`` with this module's model, objective and settings."""
        return batch_loss(
            self.model,
            self.objective,
            batch,
            self.scoring,
            self.reference,
            reduce=self._mean_over_ranks,
            router_aux_loss_coef=self.router_aux_loss_coef,
        )

    def _mean_over_ranks(self, value: Tensor) -> Tensor:
        trainer = self._trainer  # None outside a Trainer: one process
        return value if trainer is None else trainer.strategy.reduce(value, reduce_op="mean")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self._checked_loss(batch, f"at step {self.global_step + 1}")
        self._log("train", self.train_metrics(out.values, out.weights))  # this batch, synced
        if self.term_grad_every and self.global_step % self.term_grad_every == 0 and out.terms:
            self._log_term_gradients(batch)
        return out.loss

    def _log_term_gradients(self, batch: dict[str, Tensor]) -> None:
        stats = term_gradient_stats(
            self.model, self.objective, batch, self.scoring, self.reference, self._mean_over_ranks
        )
        values = {
            f"train/{k}": float(self._mean_over_ranks(v.to(self.device))) for k, v in stats.items()
        }
        for logger in self.loggers:  # at this step only (self.log would repeat the last value)
            logger.log_metrics(values, step=self.global_step)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self._checked_loss(batch, f"in the validation after step {self.global_step}")
        self.val_metrics.update(out.values, out.weights)

    def _checked_loss(self, batch: dict[str, Tensor], where: str) -> BatchLoss:
        try:
            return self.loss(batch)
        except NonFiniteLogps as err:
            clip = getattr(self._trainer, "gradient_clip_val", None)
            raise TrainingError(
                f"{err} {where}: training diverged; lower optimizer.lr or clip gradients harder "
                f"(trainer.gradient_clip_val is {clip})"
            ) from err

    def on_validation_epoch_end(self) -> None:
        self._log("val", self.val_metrics.compute())
        self.val_metrics.reset()
        # x of the val/ scalars: the optimizer steps done (Lightning's default lags one behind)
        self.log("step", float(self.global_step), sync_dist=False)

    def on_train_epoch_end(self) -> None:
        self.train_metrics.reset()

    def _log(self, stage: str, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=key in PROGRESS_BAR_KEYS, sync_dist=False)


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: weight decay on matrices, none on biases and norms."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]
