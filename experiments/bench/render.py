"""The benchmark's Markdown report: run details, parity, one throughput table per peer, the
objectives, memory, growth, targets, notes."""

from __future__ import annotations

from . import peers as P
from .growth import growth_table
from .real_data import describe
from .report import BenchRun, memory_table, results_table, table
from .targets import machine_line, targets

PARITY_COLUMNS = ("loss", "nll_loss", "logps/chosen", "logps/rejected")


def data_line(run: BenchRun) -> str:
    """Where the lengths come from and what they are, before and after truncation."""
    w, lengths = run.workload, run.lengths
    head = f"{w.steps} timed steps x {w.batch_size} pairs (+1 untimed warm-up step) of random ids; "
    if w.workload == "real":
        head += f"real lengths: {lengths.get('source', '')}; pool {describe(lengths['pool'])}"
    else:
        head += (
            f"synthetic log-normal lengths (median prompt {w.prompt_median:.0f}, responses "
            f"{w.response_median:.0f}, sigma {w.length_sigma})"
        )
    head += f"; truncated to max_length {w.max_length} (prompt first, to {w.max_prompt_length})"
    if "timed" in lengths:
        head += f"; the timed pairs: {describe(lengths['timed'])}"
    return head


def run_table(run: BenchRun) -> str:
    w = run.workload
    model = (
        f"{w.architecture}, hidden {w.hidden_size}, {w.num_layers} layers, {w.num_heads} heads, "
        f"MLP {w.intermediate_size}, vocabulary {w.vocab_size}, tied embeddings, float32, sdpa"
    )
    rows = [["command", f"`{run.command}`"], ["workload", w.workload]]
    rows += [["model", model], ["data", data_line(run)]]
    rows += [[k, v] for k, v in run.info.items()]
    rows.append(["measured GEMM peak (float32, best matmul)", f"{run.peak / 1e9:.1f} GFLOP/s"])
    rows.append(["prefopt defaults", f"prompt_sharing={P.DEFAULT_SHARING}, chunk 4096"])
    return table(["", ""], rows)


def parity_table(run: BenchRun) -> str:
    rows = []
    for key, losses in run.parity.items():
        for name, values in losses.items():
            cells = [f"{values[c]:.6f}" if c in values else "-" for c in PARITY_COLUMNS]
            rows.append([key, name, *cells])
    return table(["comparison", "variant", "loss", "NLL", "logps/chosen", "logps/rejected"], rows)


def growth_section(run: BenchRun) -> list[str]:
    seq = next((p for p in run.growth if p.axis == "vocabulary"), None)
    parts = [
        "### How cost grows: prefopt ORPO vs TRL ORPOTrainer, one step of "
        f"{run.workload.memory_batch_size} pairs whose rows are all T tokens",
        "A fresh process per point and side. Loss stage = step memory - the memory of a "
        "decoder-only step (same rows, same process: `experiments/bench/probes.py`).",
        f"Along the row length (vocabulary {run.workload.vocab_size}):",
        growth_table(run.growth, "sequence"),
    ]
    if seq:
        parts += [f"Along the vocabulary ({seq.seq} tokens per row):"]
        parts += [growth_table(run.growth, "vocabulary")]
    if run.plot:
        parts.append(f"![step memory and time as T and V grow]({run.plot})")
    return parts


def render(run: BenchRun) -> str:
    """The whole report (Markdown)."""
    r, w = run.by_name, run.workload
    parts = [
        "### Run",
        run_table(run),
        "### Parity: first batch, same initial weights, before training (TRL peer first)",
        "A run stops before timing unless every value the peer reports equals its own to 1e-5 "
        "(relative, or absolute below 1); a dash: not compared (the peer does not report it).",
        parity_table(run),
    ]
    for c in P.comparisons(run.peers):
        names = [c.peer] + [n for n in c.variants if n in r]
        parts += [f"### {c.title}", results_table([r[n] for n in names], run.peak, r[c.peer])]
        if c.key == "sft":
            parts.append(
                "TRL's SFTTrainer trains on prompt + chosen only; prefopt's SFT arm also scores "
                "the rejected row (no gradients) for its metrics. Tokens/s count both rows of "
                "each pair on both sides (the same pairs), so the ratio is that of step times."
            )
    objectives = [r[n] for n in (P.ORPO_DEFAULT, P.SFT_NAME, P.DPO_NAME)]
    parts += [
        f"### prefopt objectives (module defaults; ORPO = `{P.ORPO_DEFAULT}`; same batches)",
        results_table(objectives, run.peak, r[P.ORPO_DEFAULT], paired=True),
        f"Padding efficiency over an epoch of {run.padding['pairs']:.0f} pairs: shuffled batches "
        f"{run.padding['random']:.0%}, length-grouped batches {run.padding['grouped']:.0%}"
        + (f", packed {run.padding['packed']:.0%}." if "packed" in run.padding else "."),
    ]
    if run.memory:
        titles = {c.key: f"{c.headline} vs {c.peer}" for c in P.COMPARISONS}
        titles["orpo"] = f"prefopt ORPO (`{P.ORPO_DEFAULT}`) vs {P.TRL}"
        parts += [
            f"### Step memory: {w.memory_batch_size} pairs, every row {w.memory_seq_len} tokens, "
            f"vocabulary {w.vocab_size} (a fresh process per side)",
            memory_table(run.memory, titles),
        ]
    if run.growth:
        parts += growth_section(run)
    rows = [list(row) for row in targets(run)]
    parts += [
        "### Targets",
        machine_line(run),
        table(["target", "threshold", "measured", "verdict"], rows),
        "The ORPO-vs-SFT step ratio is a measurement (objectives table), not a target.",
    ]
    if run.notes:
        parts += ["### Notes", "\n".join(f"- {note}" for note in run.notes)]
    return "\n\n".join(parts) + "\n"
