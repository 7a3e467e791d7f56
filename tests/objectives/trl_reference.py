"""TRL 1.16's own loss code, fed the per-sequence inputs prefopt's objectives see (tests only).

Each ``trl_*`` function builds a trainer without running its ``__init__`` (``object.__new__``),
sets the attributes its loss code reads from TRL's own config class (``DPOConfig``,
``CPOConfig``: their defaults and syntactic sugar, e.g. ``loss_type="alphapo"``), replaces the
forward pass by a stand-in that returns exactly the given per-sequence log-probs, and calls the
trainer's real loss method:

* ``DPOTrainer._compute_loss`` (every ``loss_type``, ``loss_weights``): the stand-in model returns
  per-token log-probs whose sums are the given summed log-probs (all mass on the first response
  token) and a completion mask with the given response lengths; references are "precomputed".
* ``CPOTrainer.get_batch_loss_metrics`` and ``ORPOTrainer.get_batch_loss_metrics``: the stand-in
  ``concatenated_forward`` returns the log-probs in the reduction TRL would compute them in
  (mean per-token for ``ipo``/``simpo`` and ORPO, summed otherwise) and the NLL.

They return TRL's loss and the batch means it logs (``rewards/*``, ``logps/*``), as floats.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from prefopt.objectives import ObjectiveInputs, ObjectiveOutput

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl")
from trl import DPOConfig  # noqa: E402
from trl.experimental.cpo import CPOConfig  # noqa: E402
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402

TRL_KEYS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)
_ARGS = {"output_dir": "unused", "report_to": [], "bf16": False, "use_cpu": True}
# log-probs at the extremes the objectives must handle (log P near 0 and near -1e4)
GRID = (-1e4, -1e3, -20.0, -1.0, -1e-3, -1e-9)


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def _bare(cls, **attrs):
    """An instance of a TRL trainer class with only the given attributes (no ``__init__``)."""
    trainer = object.__new__(cls)
    trainer.__dict__.update(accelerator=_Accelerator(), aux_loss_enabled=False, **attrs)
    return trainer


def random_inputs(seed: int, batch_size: int = 64, float32_values: bool = False) -> ObjectiveInputs:
    """Float64 inputs with summed log-probs log-uniform in [-1e4, -1e-9], lengths in [1, 64],
    and the NLL TRL's ``sft`` term computes (token mean of the chosen responses)."""
    g = torch.Generator().manual_seed(seed)

    def logps():
        exponent = torch.empty(batch_size, dtype=torch.float64).uniform_(-9, 4, generator=g)
        value = -(10.0**exponent)
        return value.float().double() if float32_values else value

    c, r, ref_c, ref_r = logps(), logps(), logps(), logps()
    lengths = torch.randint(1, 65, (2, batch_size), generator=g).double()
    return make_inputs(c, r, ref_c, ref_r, lengths[0], lengths[1])


def grid_inputs(values: tuple[float, ...] = GRID) -> ObjectiveInputs:
    """Every (chosen, rejected) pair of ``values`` with four reference pairs each (144 pairs for
    ``GRID``); lengths 1, so mean and summed log-probs are both the grid's values."""
    rows = []
    refs = ((-5.0, -5.0), (-1e-9, -1e4), (-1e4, -1e-9), (-1.0, -20.0))
    for c in values:
        for r in values:
            rows += [(c, r, ref_c, ref_r) for ref_c, ref_r in refs]
    c, r, ref_c, ref_r = torch.tensor(rows, dtype=torch.float64).T
    ones = torch.ones_like(c)
    return make_inputs(c, r, ref_c, ref_r, ones, ones)


def make_inputs(c, r, ref_c, ref_r, chosen_lengths, rejected_lengths) -> ObjectiveInputs:
    """``ObjectiveInputs`` from summed log-probs and lengths, as ``batch_loss`` builds them."""
    return ObjectiveInputs(
        chosen_logps=c,
        rejected_logps=r,
        chosen_avg_logps=c / chosen_lengths,
        rejected_avg_logps=r / rejected_lengths,
        nll_loss=-(c.sum() / chosen_lengths.sum()),
        ref_chosen_logps=ref_c,
        ref_rejected_logps=ref_r,
        chosen_logits=torch.tensor(0.25, dtype=torch.float64),
        rejected_logits=torch.tensor(-0.5, dtype=torch.float64),
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )


def pair(inputs: ObjectiveInputs, i: int) -> ObjectiveInputs:
    """The i-th pair alone, as a batch of one (its NLL is that pair's token mean)."""
    sl = slice(i, i + 1)
    return make_inputs(
        inputs.chosen_logps[sl],
        inputs.rejected_logps[sl],
        inputs.ref_chosen_logps[sl],
        inputs.ref_rejected_logps[sl],
        inputs.chosen_lengths[sl],
        inputs.rejected_lengths[sl],
    )


def trl_dpo(inputs: ObjectiveInputs, **config) -> dict[str, float]:
    """``DPOTrainer._compute_loss`` on ``inputs``; ``config``: ``DPOConfig`` fields
    (``loss_type``, ``loss_weights``, ``beta``, ``label_smoothing``, ``discopop_tau``)."""
    with warnings.catch_warnings():  # transformers' own FutureWarnings about its arguments
        warnings.simplefilter("ignore", FutureWarning)
        args = DPOConfig(**_ARGS, precompute_ref_log_probs=True, **config)
    trainer = _bare(  # the attributes DPOTrainer.__init__ sets from args
        DPOTrainer,
        args=args,
        model=SimpleNamespace(training=True),
        beta=args.beta,
        precompute_ref_logps=True,
        loss_types=args.loss_type,
        loss_weights=args.loss_weights or [1.0] * len(args.loss_type),
        ld_alpha=args.ld_alpha,
        f_divergence_type=args.f_divergence_type,
        f_alpha_divergence_coef=args.f_alpha_divergence_coef,
        label_smoothing=args.label_smoothing,
        use_weighting=args.use_weighting,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    logps = torch.cat([inputs.chosen_logps, inputs.rejected_logps])  # (2B,)
    lengths = torch.cat([inputs.chosen_lengths, inputs.rejected_lengths]).long()  # (2B,)
    width = int(lengths.max())
    per_token = torch.zeros(len(logps), width, dtype=logps.dtype)
    per_token[:, 0] = logps  # sums exactly to the summed log-probs
    positions = torch.arange(width + 1)
    completion_mask = ((positions >= 1) & (positions <= lengths[:, None])).long()  # (2B, T+1)
    zeros = torch.zeros_like(per_token)
    outputs = SimpleNamespace(
        log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
    )
    batch = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": inputs.ref_chosen_logps,
        "ref_rejected_logps": inputs.ref_rejected_logps,
    }
    loss = DPOTrainer._compute_loss(trainer, lambda **_: outputs, batch, return_outputs=False)
    logged = trainer._metrics["train"]
    return {"loss": float(loss), **{k: logged[k][-1] for k in TRL_KEYS}}


def trl_cpo(inputs: ObjectiveInputs, **config) -> dict[str, float]:
    """``CPOTrainer.get_batch_loss_metrics`` on ``inputs``; ``config``: ``CPOConfig`` fields
    (``loss_type``, ``beta``, ``cpo_alpha``, ``simpo_gamma``, ``alpha``, ``label_smoothing``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = CPOConfig(**_ARGS, **config)
    mean = args.loss_type in ("ipo", "simpo")  # TRL's average_log_prob
    chosen, rejected = inputs.logps("mean" if mean else "sum")
    nll = inputs.nll_loss if args.cpo_alpha != 0 else torch.tensor(0.0)
    forward = (chosen, rejected, inputs.chosen_logits, inputs.rejected_logits, nll)
    trainer = _bare(
        CPOTrainer,
        beta=args.beta,
        label_smoothing=args.label_smoothing,
        loss_type=args.loss_type,
        cpo_alpha=args.cpo_alpha,
        simpo_gamma=args.simpo_gamma,
        alpha=args.alpha,
        concatenated_forward=lambda model, batch: forward,
    )
    loss, metrics = CPOTrainer.get_batch_loss_metrics(trainer, None, None)
    return {"loss": float(loss), **{k: metrics[k] for k in TRL_KEYS}}


def trl_orpo(inputs: ObjectiveInputs, beta: float) -> dict[str, float]:
    """``ORPOTrainer.get_batch_loss_metrics`` on ``inputs`` (its ``beta`` is ORPO's lambda)."""
    forward = (
        inputs.chosen_avg_logps,
        inputs.rejected_avg_logps,
        inputs.chosen_logits,
        inputs.rejected_logits,
        inputs.nll_loss,
    )
    trainer = _bare(ORPOTrainer, beta=beta, concatenated_forward=lambda model, batch: forward)
    loss, metrics = ORPOTrainer.get_batch_loss_metrics(trainer, None, None)
    keys = (*TRL_KEYS, "log_odds_ratio", "log_odds_chosen", "nll_loss")
    return {"loss": float(loss), **{k: metrics[k] for k in keys}}


def assert_matches(out: ObjectiveOutput, trl: dict[str, float], tol: float = 1e-6) -> None:
    """prefopt's loss and the batch means of its metrics equal TRL's to ``tol`` (rel. and abs.)."""
    ours = {
        "loss": float(out.loss),
        **{k: float(out.metrics[k].mean()) for k in trl if k != "loss"},
    }
    for key, value in trl.items():
        assert math.isfinite(value), (key, value)
        assert_close(ours[key], value, rtol=tol, atol=tol, msg=lambda m, k=key: f"{k}: {m}")


def assert_matches_per_pair(objective, inputs: ObjectiveInputs, trl_fn, **config) -> int:
    """Every pair alone: prefopt equals TRL wherever TRL is finite, and prefopt is finite
    everywhere. Returns how many pairs TRL left non-finite (the caller says how many it expects)."""
    non_finite = 0
    for i in range(len(inputs.chosen_logps)):
        one = pair(inputs, i)
        out = objective(one)
        assert torch.isfinite(out.loss), (i, one)
        trl = trl_fn(one, **config)
        if not all(math.isfinite(v) for v in trl.values()):
            non_finite += 1
            continue
        assert_matches(out, trl)
    return non_finite
