"""What a memory-probe subprocess runs: one training step of one side of one comparison, on
``memory_batch_size`` pairs whose rows are all ``memory_seq_len`` tokens, after a warm-up step.

The loss stage (LM head, log-softmax, the loss and their backward) is isolated by subtraction:
the same process also measures a *decoder-only* step, the same forward through the decoder
(``model.base_model``) on the same rows, a backward from ``mean(hidden ** 2)`` and the AdamW step,
so it holds the decoder's activations and gradients (the tied embedding's gradient included) but
no logits. Loss-stage memory = step memory - decoder-only step memory, two high-water marks of
one process; the same decoder-only step is used for both sides.
"""

from __future__ import annotations

from . import peers as P
from .memory import measure, step_memory
from .runners import PrefoptRunner, clock, to_device
from .variants import with_reference
from .workload import Pair, Workload, collate

SIDES = ("trl", "prefopt")


def make_runner(key: str, side: str, model, batches: list[list[Pair]], max_length: int, device):
    """The runner of ``side`` (``trl`` or ``prefopt``) of comparison ``key`` on ``batches``."""
    if side == "trl":
        runner_cls, config, _ = P.trl_side(key)
        return runner_cls(model, batches, max_length, device, **config)
    objective, scoring, _ = P.prefopt_side(key)
    collated = [collate(rows, list(range(len(rows)))) for rows in batches]
    if objective.needs_reference:
        collated = with_reference(model, collated)
    return PrefoptRunner(model, objective, collated, scoring, device)


def decoder_step(runner, batch: dict, device: str) -> float:
    """The decoder-only step (module docstring) on ``runner``'s model and optimizer."""
    start = clock(device)
    hidden = runner.model.base_model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state  # (2B, T, H)
    hidden.float().square().mean().backward()
    runner.optimizer.step()
    runner.optimizer.zero_grad(set_to_none=True)
    return clock(device) - start


def memory_probe(
    probe: str, workload: Workload, device: str = "cpu", loss_stage: bool = False
) -> dict[str, float]:
    """Step memory of ``probe`` (``SIDE:KEY``, e.g. ``trl:orpo``), in MiB: ``step_mib``,
    ``peak_mib``, ``seconds``; with ``loss_stage``, also ``decoder_mib`` and ``loss_stage_mib``.
    Run it in a fresh process: the resident-set high-water mark is per process."""
    side, key = probe.split(":")
    if side not in SIDES or key not in P.PEERS:
        raise ValueError(
            f"unknown memory probe {probe!r}: SIDE:KEY, SIDE in {SIDES}, KEY in {P.PEERS}"
        )
    size = workload.memory_batch_size
    batches = [workload.pairs(size, seed_offset=1), workload.long_pairs()]
    max_length = max(workload.max_length, workload.memory_seq_len)
    runner = make_runner(key, side, workload.build_model(), batches, max_length, device)
    if not loss_stage:
        return step_memory(runner.step, device)
    runner.step(0)  # warm-up: allocates the AdamW state
    long = to_device(collate(batches[1], list(range(size))), device)
    decoder = measure(lambda: decoder_step(runner, long, device), device)
    out = measure(lambda: runner.step(1), device)
    out["decoder_mib"] = decoder["step_mib"]
    out["loss_stage_mib"] = out["step_mib"] - decoder["step_mib"]
    return out
