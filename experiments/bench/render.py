"""The benchmark's Markdown report: run details, parity, throughput, memory, targets."""

from __future__ import annotations

from .report import Result, memory_table, paired_ratio, results_table, table
from .variants import (
    DEFAULT_SHARING,
    DPO_NAME,
    FULL_LOGITS,
    FUSED,
    GROUPED,
    NEEDED,
    ORPO_DEFAULT,
    SFT_NAME,
    SHARED,
    TRL,
)
from .workload import Workload

# (name, threshold, higher is better)
TARGETS = {
    "tokens": ("prefopt ORPO real tokens/s vs TRL", 2.5, True),
    "memory": ("step memory vs TRL", 0.5, False),
    "mfu": ("prefopt ORPO useful MFU", 0.45, True),
    "sft": ("ORPO step time vs SFT (median of per-batch ratios)", 1.1, False),
    "dpo": ("DPO (precomputed ref) step time vs ORPO (same)", 1.05, False),
}


def targets(
    by_name: dict[str, Result], peak: float, memory: dict[str, dict[str, float]]
) -> list[tuple[str, str, str, bool]]:
    """Each target with its threshold, the measured value and whether it is met."""
    orpo = by_name[ORPO_DEFAULT]
    values = {
        "tokens": orpo.tokens_per_s / by_name[TRL].tokens_per_s,
        "mfu": orpo.mfu(peak),
        "sft": paired_ratio(orpo, by_name[SFT_NAME]),
        "dpo": paired_ratio(by_name[DPO_NAME], orpo),
    }
    if memory:
        values["memory"] = memory["prefopt"]["step_mib"] / memory["trl"]["step_mib"]
    rows = []
    for key, (name, threshold, higher) in TARGETS.items():
        if key not in values:
            continue
        value = values[key]
        ok = value >= threshold if higher else value <= threshold
        if key == "mfu":
            rows.append((name, f">= {threshold:.0%} of GEMM peak", f"{value:.1%}", ok))
        else:
            rows.append((name, f"{'>=' if higher else '<='} {threshold}x", f"{value:.2f}x", ok))
    return rows


def render(
    command: str,
    info: dict[str, str],
    workload: Workload,
    peak: float,
    results: list[Result],
    parity: dict[str, dict[str, float]],
    memory: dict[str, dict[str, float]],
    padding: dict[str, float],
) -> str:
    """The whole report (Markdown)."""
    by_name = {r.name: r for r in results}
    w = workload
    model = (
        f"{w.architecture}, hidden {w.hidden_size}, {w.num_layers} layers, {w.num_heads} heads, "
        f"MLP {w.intermediate_size}, vocabulary {w.vocab_size}, tied embeddings, float32, sdpa"
    )
    data = (
        f"{w.steps} timed steps x {w.batch_size} pairs (+1 untimed warm-up step) of random ids; "
        f"log-normal lengths (median prompt {w.prompt_median:.0f}, responses "
        f"{w.response_median:.0f}, sigma {w.length_sigma}), truncated to max_length {w.max_length}"
        f" (prompt first, to {w.max_prompt_length})"
    )
    run_rows = [["command", f"`{command}`"], ["model", model], ["data", data]]
    run_rows += [[k, v] for k, v in info.items()]
    run_rows.append(["measured GEMM peak (float32, best matmul)", f"{peak / 1e9:.1f} GFLOP/s"])
    run_rows.append(["prefopt defaults", f"prompt_sharing={DEFAULT_SHARING}, chunk 4096"])
    parity_rows = [[n, f"{v['loss']:.6f}", f"{v['nll_loss']:.6f}"] for n, v in parity.items()]
    ablation = [by_name[n] for n in (TRL, FULL_LOGITS, NEEDED, FUSED, GROUPED, SHARED)]
    objectives = [by_name[n] for n in (ORPO_DEFAULT, SFT_NAME, DPO_NAME)]
    parts = [
        "### Run",
        table(["", ""], run_rows),
        "### Parity: loss on the first batch, same initial weights, before training",
        table(["variant", "loss", "NLL"], parity_rows),
        "### ORPO: TRL vs prefopt, one change at a time (each row adds to the one above)",
        results_table(ablation, peak, by_name[TRL]),
        f"### prefopt objectives (defaults; ORPO = `{ORPO_DEFAULT}` row; same batches)",
        results_table(objectives, peak, by_name[ORPO_DEFAULT], paired=True),
        f"Padding efficiency over an epoch of {padding['pairs']:.0f} pairs: shuffled batches "
        f"{padding['random']:.0%}, length-grouped batches {padding['grouped']:.0%}.",
    ]
    if memory:
        parts += [
            f"### Peak memory of one ORPO step: {w.memory_batch_size} pairs, every row "
            f"{w.memory_seq_len} tokens, vocabulary {w.vocab_size}",
            memory_table(memory),
        ]
    parts += [
        "### Targets",
        table(
            ["target", "threshold", "measured", ""],
            [
                [t, th, m, "met" if ok else "**missed**"]
                for t, th, m, ok in targets(by_name, peak, memory)
            ],
        ),
    ]
    return "\n\n".join(parts) + "\n"
