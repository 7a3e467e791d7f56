"""Reference log-probs for objectives that need them (DPO and its family), from small providers.

A provider answers one question: the reference log-probs of a batch's chosen and rejected
responses, reduced as the objective declares (``sum`` or ``mean``). Three exist, chosen by
``module.reference`` (:func:`make_reference`):

* :class:`PrecomputedReference` (``precomputed``, the default): the values were scored once before
  training by the initial policy and travel with the data (``ref_chosen_logps`` /
  ``ref_rejected_logps`` batch columns; :func:`score_pairs` computes them, the
  ``PrecomputeReference`` callback stores them). No second model in memory.
* :class:`FrozenCopyReference` (``model``): a frozen copy of the initial policy, scored every step.
* :class:`AdaptersOffReference` (``model`` on a peft model): the policy with its adapters
  disabled, so LoRA runs hold no second copy.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from prefopt.models.logps import Scoring, SequenceStats
from prefopt.models.reference_cache import ReferenceCache

log = logging.getLogger(__name__)

REFERENCE_SOURCES = ("precomputed", "model")
REF_KEYS = ("ref_chosen_logps", "ref_rejected_logps")


def split_logps(stats: SequenceStats, reduction: str) -> tuple[Tensor, Tensor]:
    """``(chosen, rejected)``, each (B,), of the 2B rows of ``stats``, summed or averaged."""
    logps = stats.avg_logps if reduction == "mean" else stats.logps  # (2B,)
    num_pairs = logps.shape[0] // 2
    return logps[:num_pairs], logps[num_pairs:]


class ReferenceProvider(ABC):
    """Base of the providers: :meth:`logps` for a batch; :attr:`models` it owns (for sharding)."""

    models: tuple[nn.Module, ...] = ()

    @abstractmethod
    def logps(
        self, policy: nn.Module, batch: dict[str, Tensor], scoring: Scoring, reduction: str
    ) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs of the batch's pairs, each (B,)."""


class PrecomputedReference(ReferenceProvider):
    """Reads the reference log-probs the data carries (scored once before training).

    Args:
        cache_dir: where the ``PrecomputeReference`` callback caches the scored values across
            runs (:mod:`prefopt.models.reference_cache`); ``None``: no cache.
    """

    def __init__(self, cache_dir: str | None = None) -> None:
        self.cache = ReferenceCache(cache_dir) if cache_dir else None

    def logps(self, policy, batch, scoring, reduction):
        if not all(key in batch for key in REF_KEYS):
            raise RuntimeError(
                "module.reference=precomputed, but the batch has no ref_chosen_logps: the "
                "reference pass (prefopt.training.callbacks.PrecomputeReference) did not run"
            )
        return batch[REF_KEYS[0]], batch[REF_KEYS[1]]


class FrozenCopyReference(nn.Module, ReferenceProvider):
    """A frozen copy of the policy as it was when the provider was made; always in eval mode.

    It is a submodule of the training module, so it moves to the device with it, is sharded with
    it (``models``) and is saved in checkpoints under ``reference.model.``.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(policy).requires_grad_(False)
        self.train(False)

    @property
    def models(self) -> tuple[nn.Module, ...]:
        return (self.model,)

    def train(self, mode: bool = True) -> FrozenCopyReference:
        return super().train(False)  # the reference never trains, nor drops out

    def logps(self, policy, batch, scoring, reduction):
        with torch.no_grad():
            return split_logps(scoring(self.model, batch), reduction)


class AdaptersOffReference(ReferenceProvider):
    """The policy itself with its (peft) adapters disabled: the base model is the reference."""

    def logps(self, policy, batch, scoring, reduction):
        with torch.no_grad(), policy.disable_adapter():
            return split_logps(scoring(policy, batch), reduction)


def make_reference(
    source: str, policy: nn.Module, cache_dir: str | None = None
) -> ReferenceProvider:
    """The provider ``module.reference`` names, for ``policy`` (frozen copy or adapters off);
    ``cache_dir`` is the precomputed values' on-disk cache (``None``: none).

    Raises:
        ValueError: for an unknown source.
    """
    if source == "precomputed":
        return PrecomputedReference(cache_dir)
    if source == "model":
        if hasattr(policy, "disable_adapter"):
            return AdaptersOffReference()
        return FrozenCopyReference(policy)
    raise ValueError(
        f"unknown reference source {source!r}; available: {', '.join(REFERENCE_SOURCES)}"
    )


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    scoring: Scoring,
    reduction: str,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Log-probs of every pair in ``batches`` (in order) under ``model``, in eval mode.

    Returns:
        ``(chosen, rejected)``: float32 CPU tensors of one value per pair.
    """
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
            c, r = split_logps(scoring(model, batch), reduction)
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
    finally:
        model.train(was_training)
    log.info("scored reference log-probs of %d pairs", sum(len(c) for c in chosen))
    empty = torch.zeros(0)
    return (torch.cat(chosen), torch.cat(rejected)) if chosen else (empty, empty)
