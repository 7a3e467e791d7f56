"""The interleaved throughput run: build every variant, check parity, time the steps."""

from __future__ import annotations

import functools
from importlib.resources import files

import torch
from omegaconf import OmegaConf

from prefopt.models.logps import Scoring
from prefopt.models.oracle import full_logits_scoring
from prefopt.models.reference import score_pairs
from prefopt.objectives.dpo import DPO
from prefopt.objectives.orpo import ORPO
from prefopt.objectives.sft import SFT

from .report import Result
from .runners import PrefoptRunner, TRLRunner, cross_entropy_chunk, interleave
from .workload import (
    PAD_ID,
    Workload,
    collate,
    grouped_batches,
    padding_efficiency,
    random_batches,
    real_tokens,
    useful_flops,
)

LAM = 0.1
# what prefopt-train runs by default (configs/train.yaml)
DEFAULT_SHARING = OmegaConf.load(files("prefopt.configs") / "train.yaml").module.prompt_sharing
TRL = "TRL ORPOTrainer"
FULL_LOGITS = "prefopt, full logits"
NEEDED = "+ needed positions, chunked"
FUSED = "+ fused head log-softmax"
GROUPED = "+ length grouping"
SHARED = "+ prompt sharing"
SFT_NAME, DPO_NAME = "prefopt SFT", "prefopt DPO (precomputed ref)"
# the row that is prefopt's ORPO with its default settings
ORPO_DEFAULT = SHARED if DEFAULT_SHARING in (True, "auto") else GROUPED
PARITY_RTOL = 1e-5


def with_reference(model: torch.nn.Module, batches: list[dict]) -> list[dict]:
    """The batches plus DPO's reference log-probs (summed), scored once by the initial model
    (what ``module.reference=precomputed`` does before training)."""
    out = []
    for batch in batches:
        chosen, rejected = score_pairs(model, [batch], Scoring(), DPO.reduction)
        out.append({**batch, "ref_chosen_logps": chosen, "ref_rejected_logps": rejected})
    return out


def build(workload: Workload, device: str = "cpu"):
    """The initial model, the pairs, and every variant: ``{name: (runner, batching)}``.

    Batch 0 of every variant is the same warm-up batch (untimed; used for the parity check);
    batches 1..steps cover the same ``steps * batch_size`` pairs, shuffled (``random``, as TRL's
    default sampler does) or length-grouped (``grouped``, prefopt's default sampler).
    """
    model = workload.build_model()
    b = workload.batch_size
    timed = workload.pairs(b * workload.steps)
    pairs = workload.pairs(b, seed_offset=1) + timed  # warm-up pairs first

    def shifted(batches: list[list[int]]) -> list[list[int]]:
        return [list(range(b))] + [[i + b for i in index] for index in batches]

    index = {
        "random": shifted(random_batches(len(timed), b, workload.seed)),
        "grouped": shifted(grouped_batches(timed, b, workload.seed)),
    }
    random_b = [collate(pairs, x) for x in index["random"]]
    grouped_b = [collate(pairs, x) for x in index["grouped"]]
    trl_rows = [[pairs[i] for i in x] for x in index["random"]]
    ours = functools.partial(PrefoptRunner, model, device=device)
    default = Scoring(prompt_sharing=DEFAULT_SHARING)  # the module's defaults
    runners = {
        TRL: (TRLRunner(model, LAM, workload.max_length, PAD_ID, trl_rows, device), "random"),
        FULL_LOGITS: (ours(ORPO(LAM), random_b, full_logits_scoring), "random"),
        NEEDED: (ours(ORPO(LAM), random_b, Scoring(score_chunk=cross_entropy_chunk)), "random"),
        FUSED: (ours(ORPO(LAM), random_b, Scoring()), "random"),
        GROUPED: (ours(ORPO(LAM), grouped_b, Scoring()), "grouped"),
        SHARED: (ours(ORPO(LAM), grouped_b, Scoring(prompt_sharing=True)), "grouped"),
        SFT_NAME: (ours(SFT(LAM), grouped_b, default), "grouped"),
        DPO_NAME: (ours(DPO(), with_reference(model, grouped_b), default), "grouped"),
    }
    return model, pairs, index, runners


def check_parity(runners: dict) -> dict[str, dict[str, float]]:
    """First-batch loss and NLL of every ORPO variant, before any step; raise unless all equal
    TRL's to ``PARITY_RTOL``."""
    losses = {
        name: runner.first_loss()
        for name, (runner, _) in runners.items()
        if name not in (SFT_NAME, DPO_NAME)
    }
    for name, value in losses.items():
        for key, ref in losses[TRL].items():
            if abs(value[key] - ref) > PARITY_RTOL * max(1.0, abs(ref)):
                raise RuntimeError(f"parity check failed: {name} {key}={value[key]} vs TRL {ref}")
    return losses


def run_throughput(
    workload: Workload, device: str = "cpu"
) -> tuple[list[Result], dict[str, dict[str, float]]]:
    """Parity check, one untimed warm-up step each, then ``steps`` interleaved timed steps."""
    model, pairs, index, runners = build(workload, device)
    parity = check_parity(runners)
    for runner, _ in runners.values():
        runner.step(0)
    steps = {name: _offset(runner.step) for name, (runner, _) in runners.items()}
    times = interleave(steps, workload.steps)
    results = []
    for name, (_, batching) in runners.items():
        batches = index[batching][1:]
        rows = [pairs[i] for x in batches for i in x]
        useful, dense = useful_flops(model, rows)
        results.append(
            Result(
                name=name,
                batching=batching,
                seconds=times[name],
                real_tokens=sum(real_tokens(p) for p in rows),
                pairs=len(rows),
                padding_efficiency=padding_efficiency(pairs, batches),
                useful_flops=useful,
                dense_flops=dense,
            )
        )
    return results, parity


def padding_at_scale(workload: Workload, megabatches: int = 4) -> dict[str, float]:
    """Padding efficiency of shuffled vs length-grouped batches over a larger pool of pairs
    (``megabatches`` of the sampler's 50 batches), as in a real epoch."""
    pool = workload.pairs(50 * megabatches * workload.batch_size, seed_offset=3)
    b = workload.batch_size
    return {
        "random": padding_efficiency(pool, random_batches(len(pool), b, workload.seed)),
        "grouped": padding_efficiency(pool, grouped_batches(pool, b, workload.seed)),
        "pairs": float(len(pool)),
    }


def _offset(step):
    return lambda i: step(i + 1)  # batch 0 is the warm-up batch
