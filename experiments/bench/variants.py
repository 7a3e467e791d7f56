"""The interleaved throughput run: build every variant, check parity per comparison, time.

Every variant of every comparison (:mod:`experiments.bench.peers`) trains a copy of the same
initial model on the same pairs; each prefopt variant is checked against its TRL peer on the first
batch before anything is timed, then all are timed in one interleaved loop, so that machine drift
hits all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefopt.models.logps import Scoring
from prefopt.models.oracle import full_logits_scoring
from prefopt.models.reference import score_pairs
from prefopt.objectives.orpo import ORPO
from prefopt.objectives.sft import SFT

from . import packing
from . import peers as P
from .report import Result
from .runners import PrefoptRunner, cross_entropy_chunk, interleave
from .trl_runners import ORPORunner
from .workload import (
    Pair,
    Workload,
    collate,
    grouped_batches,
    padding_efficiency,
    random_batches,
    real_tokens,
    useful_flops,
)

PARITY_RTOL = 1e-5


@dataclass
class Variant:
    """A runner, the batches it trains on (``random``, ``grouped`` or ``packed``) and the loss it
    computes (a key of ``workload.NEEDS``, for its useful FLOPs)."""

    runner: object
    batching: str
    objective: str = "orpo"


@dataclass
class Built:
    """Everything :func:`build` makes: the model, pairs, batches (lists of pair indices per
    batching, batch 0 the warm-up), their padding or packing efficiency, the variants, notes."""

    model: object
    pairs: list[Pair]
    index: dict[str, list[list[int]]]
    efficiency: dict[str, float]
    variants: dict[str, Variant]
    notes: list[str] = field(default_factory=list)


def with_reference(model, batches: list[dict]) -> list[dict]:
    """The batches plus DPO's reference log-probs (summed), scored once by the initial model
    (what ``module.reference=precomputed`` does before training)."""
    out = []
    for batch in batches:
        chosen, rejected = score_pairs(model, [batch], Scoring(), "sum")
        out.append({**batch, "ref_chosen_logps": chosen, "ref_rejected_logps": rejected})
    return out


@dataclass
class _Factory:
    """Makes variants that share the model, the pairs and their batches."""

    workload: Workload
    built: Built
    device: str

    def ours(self, objective, batches, scoring, batching="grouped", kind="orpo") -> Variant:
        model = self.built.model
        return Variant(
            PrefoptRunner(model, objective, batches, scoring, self.device), batching, kind
        )

    def trl(self, runner_cls, kind="preference", **config) -> Variant:
        rows = [[self.built.pairs[i] for i in x] for x in self.built.index["random"]]
        model, max_length = self.built.model, self.workload.max_length
        return Variant(runner_cls(model, rows, max_length, self.device, **config), "random", kind)


def build(workload: Workload, device: str = "cpu", peers: tuple[str, ...] = P.PEERS) -> Built:
    """The initial model, the pairs and every variant of ``comparisons(peers)``, plus prefopt's
    SFT and DPO with the module's defaults (the objectives table).

    Batch 0 of every variant is the same warm-up batch (untimed; used for the parity check);
    batches 1..steps cover the same ``steps * batch_size`` pairs, shuffled (``random``, as TRL's
    default sampler does) or length-grouped (``grouped``, prefopt's default sampler), or the
    grouped batches packed (``packed``, once prefopt has packing).
    """
    b = workload.batch_size
    timed = workload.pairs(b * workload.steps)
    pairs = workload.pairs(b, seed_offset=1) + timed  # warm-up pairs first

    def shifted(batches: list[list[int]]) -> list[list[int]]:
        return [list(range(b))] + [[i + b for i in index] for index in batches]

    index = {
        "random": shifted(random_batches(len(timed), b, workload.seed)),
        "grouped": shifted(grouped_batches(timed, b, workload.seed)),
    }
    efficiency = {k: padding_efficiency(pairs, x[1:]) for k, x in index.items()}
    built = Built(workload.build_model(), pairs, index, efficiency, {})
    make = _Factory(workload, built, device)
    grouped_b = [collate(pairs, x) for x in index["grouped"]]
    _orpo_ablation(make, [collate(pairs, x) for x in index["random"]], grouped_b)
    reference_b = with_reference(built.model, grouped_b)

    def headline(key: str) -> Variant:  # prefopt computing the loss of key's peer
        objective, scoring, kind = P.prefopt_side(key)
        batches = reference_b if objective.needs_reference else grouped_b
        return make.ours(objective, batches, scoring, kind=kind)

    v = built.variants
    default = Scoring(prompt_sharing=P.DEFAULT_SHARING)
    v[P.SFT_NAME] = make.ours(SFT(P.LAM), grouped_b, default, kind="sft_full")
    v[P.DPO_NAME] = headline("dpo")  # in the objectives table, with or without TRL's DPO
    for comparison in P.comparisons(peers)[1:]:
        if comparison.headline not in v:
            v[comparison.headline] = headline(comparison.key)
        runner_cls, config, kind = P.trl_side(comparison.key)
        v[comparison.peer] = make.trl(runner_cls, kind, **config)
    return built


def _orpo_ablation(make: _Factory, random_b: list[dict], grouped_b: list[dict]) -> None:
    """TRL's ORPOTrainer and prefopt's ORPO with one change at a time (and packing, if any)."""
    v, lam = make.built.variants, P.LAM
    v[P.TRL] = make.trl(ORPORunner, "orpo", beta=lam)
    v[P.FULL_LOGITS] = make.ours(ORPO(lam), random_b, full_logits_scoring, "random")
    unfused = Scoring(score_chunk=cross_entropy_chunk)
    v[P.NEEDED] = make.ours(ORPO(lam), random_b, unfused, "random")
    v[P.FUSED] = make.ours(ORPO(lam), random_b, Scoring(), "random")
    v[P.GROUPED] = make.ours(ORPO(lam), grouped_b, Scoring())
    v[P.SHARED] = make.ours(ORPO(lam), grouped_b, Scoring(prompt_sharing=True))
    seam, note = packing.packing_seam()
    if not seam:
        make.built.notes.append(note)
        return
    built, w = make.built, make.workload
    collator, grouped = seam[0], built.index["grouped"]
    row_tokens = packing.capacity(w.batch_size, w.max_length)
    warm_up, _ = packing.packed_batches(collator, built.pairs, grouped[:1], row_tokens)
    timed, built.efficiency["packed"] = packing.packed_batches(
        collator, built.pairs, grouped[1:], row_tokens
    )
    built.index["packed"] = grouped
    v[P.PACKED] = make.ours(ORPO(lam), warm_up + timed, Scoring(), "packed")


def check_parity(
    variants: dict[str, Variant], comparisons: list[P.Comparison]
) -> dict[str, dict[str, dict[str, float]]]:
    """First-batch loss (and NLL, log-probs, where the peer reports them) of every variant of
    every comparison, before any step: raise unless each equals its peer's to ``PARITY_RTOL``.

    Returns:
        ``{comparison key: {variant name: {key: value}}}``, the peer first.
    """
    out = {}
    for comparison in comparisons:
        names = [comparison.peer] + [n for n in comparison.variants if n in variants]
        losses = {name: variants[name].runner.first_loss() for name in names}
        reference = losses[comparison.peer]
        for name, value in losses.items():
            for key, ref in reference.items():
                if abs(value[key] - ref) > PARITY_RTOL * max(1.0, abs(ref)):
                    raise RuntimeError(
                        f"parity check failed: {name} {key}={value[key]} vs "
                        f"{comparison.peer} {ref}; nothing was timed"
                    )
        out[comparison.key] = losses
    return out


def run_throughput(workload: Workload, device: str = "cpu", peers: tuple[str, ...] = P.PEERS):
    """Parity check, one untimed warm-up step each, then ``steps`` interleaved timed steps.

    Returns:
        ``(results, parity, notes)``.
    """
    built = build(workload, device, peers)
    parity = check_parity(built.variants, P.comparisons(peers))
    for variant in built.variants.values():
        variant.runner.step(0)
    steps = {name: _offset(v.runner.step) for name, v in built.variants.items()}
    times = interleave(steps, workload.steps)
    results = []
    for name, variant in built.variants.items():
        batches = built.index[variant.batching][1:]
        rows = [built.pairs[i] for x in batches for i in x]
        useful, dense = useful_flops(built.model, rows, variant.objective)
        results.append(
            Result(
                name=name,
                batching=variant.batching,
                seconds=times[name],
                real_tokens=sum(real_tokens(p) for p in rows),
                pairs=len(rows),
                padding_efficiency=built.efficiency[variant.batching],
                useful_flops=useful,
                dense_flops=dense,
            )
        )
    return results, parity, built.notes


def padding_at_scale(workload: Workload, megabatches: int = 4) -> dict[str, float]:
    """Padding efficiency of shuffled vs length-grouped batches over a larger pool of pairs
    (``megabatches`` of the sampler's 50 batches), as in a real epoch; and the packing
    efficiency of the pool's rows, once prefopt has packing."""
    pool = workload.pairs(50 * megabatches * workload.batch_size, seed_offset=3)
    b = workload.batch_size
    out = {
        "random": padding_efficiency(pool, random_batches(len(pool), b, workload.seed)),
        "grouped": padding_efficiency(pool, grouped_batches(pool, b, workload.seed)),
        "pairs": float(len(pool)),
    }
    seam, _ = packing.packing_seam()
    if seam:
        capacity = packing.capacity(b, workload.max_length)
        batches = grouped_batches(pool, b, workload.seed)
        out["packed"] = packing.epoch_efficiency(seam[1], pool, batches, capacity)
    return out


def _offset(step):
    return lambda i: step(i + 1)  # batch 0 is the warm-up batch
