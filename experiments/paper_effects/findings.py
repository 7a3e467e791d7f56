"""The ORPO paper's three findings as checks computed from the runs on disk.

1. SFT on the chosen responses also raises the log-probabilities of the rejected ones (Fig. 3):
   the SFT arm's rejected per-token log-prob, final minus the step-0 validation, per seed.
2. A larger λ pushes the rejected log-probabilities down harder, and at λ = 1 the chosen ones fall
   as well (the appendix ablation over λ ∈ {0.1, 0.5, 1.0}): the final rejected log-prob against
   λ and the paired sign of each λ step; the chosen log-prob at λ = 1 against λ = 0.1.
3. ORPO's model generates the preferred answer more often than SFT's at a similar NLL: the paired
   difference of greedy exact-match accuracy, ORPO (λ = 0.1) − SFT, next to the NLL difference.

A check is *reproduced* when the 95 % interval over seeds lies on the claimed side of zero, *not
reproduced* when it lies on the other side, *inconclusive* otherwise.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefopt.report import Run
from prefopt.report.stats import paired, summarize

SFT_LAMBDA = 0.0  # ORPO with lam=0 is SFT exactly
CHOSEN, REJECTED = "val/avg_logps/chosen", "val/avg_logps/rejected"
MARGIN, NLL = "val/margins/avg_logps", "val/nll_loss"
ACCURACY = "val/gen/exact_match/accuracy"
SHOWN = (CHOSEN, REJECTED, MARGIN, "val/accuracies/avg_logps", NLL, ACCURACY)


def _done(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status == "completed" and r.seed is not None]


def by_lambda(runs: list[Run]) -> dict[float, dict[int, Run]]:
    """``{λ: {seed: run}}`` of the completed runs of the grid."""
    out: dict[float, dict[int, Run]] = {}
    for run in _done(runs):
        lam = run.config.get("objective.lam")
        if isinstance(lam, (int, float)):
            out.setdefault(float(lam), {})[run.seed] = run
    return dict(sorted(out.items()))


def _values(arm: dict[int, Run], fn) -> dict[int, float]:
    values = {seed: fn(run) for seed, run in arm.items()}
    return {seed: v for seed, v in values.items() if v is not None}


def _summary(values: dict[int, float]) -> dict | None:
    s = summarize(list(values.values()))
    return None if s is None else asdict(s)


def _paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    result = paired(a, b)
    return None if result is None else {**asdict(result.diff), "p": result.p}


def verdict(summary: dict | None, sign: int) -> str:
    """``reproduced`` / ``not reproduced`` / ``inconclusive`` for a claimed sign (+1 or −1)."""
    if summary is None:
        return "inconclusive (no data)"
    if summary["low"] is None:
        return "inconclusive (one seed)"
    low, high = summary["low"] * sign, summary["high"] * sign
    if min(low, high) > 0:
        return "reproduced"
    if max(low, high) < 0:
        return "not reproduced"
    return "inconclusive"


def _rise(run: Run, tag: str) -> float | None:
    start, end = run.at(tag, 0), run.final(tag)
    return None if start is None or end is None else end - start


def finding_sft_raises_rejected(grid: dict[float, dict[int, Run]]) -> dict:
    sft = grid.get(SFT_LAMBDA, {})
    rises = _values(sft, lambda r: _rise(r, REJECTED))
    rise = _summary(rises)
    return {
        "claim": "SFT raises the rejected responses' log-probs from initialisation",
        "rejected_at_step_0": _summary(_values(sft, lambda r: r.at(REJECTED, 0))),
        "rejected_final": _summary(_values(sft, lambda r: r.final(REJECTED))),
        "chosen_rise": _summary(_values(sft, lambda r: _rise(r, CHOSEN))),
        "per_seed": rises,
        "rise": rise,
        "verdict": verdict(rise, +1),
    }


def finding_lambda(grid: dict[float, dict[int, Run]]) -> dict:
    lams = [lam for lam in grid if lam != SFT_LAMBDA]
    final = {
        t: {lam: _values(grid[lam], lambda r, t=t: r.final(t)) for lam in grid}
        for t in (CHOSEN, REJECTED)
    }
    steps = [
        {"from": a, "to": b, "rejected_diff": _paired(final[REJECTED][b], final[REJECTED][a])}
        for a, b in zip(lams, lams[1:])
    ]
    for step in steps:
        step["verdict"] = verdict(step["rejected_diff"], -1)
    lowest, highest = (lams[0], lams[-1]) if lams else (None, None)
    chosen = _paired(final[CHOSEN][highest], final[CHOSEN][lowest]) if lams else None
    drop = _values(grid.get(highest, {}), _drop_from_peak)
    rejected_verdicts = [s["verdict"] for s in steps]
    return {
        "claim": "a larger λ pushes the rejected log-probs down harder; at the largest λ the "
        "chosen ones fall as well",
        "rejected_by_lambda": {lam: _summary(v) for lam, v in final[REJECTED].items()},
        "chosen_by_lambda": {lam: _summary(v) for lam, v in final[CHOSEN].items()},
        "steps": steps,
        "verdict_rejected": _combine(rejected_verdicts),
        "chosen_highest_vs_lowest": chosen,
        "chosen_drop_from_peak_at_highest": _summary(drop),
        "verdict_chosen": verdict(chosen, -1),
        "lambdas": [lowest, highest],
    }


def _drop_from_peak(run: Run) -> float | None:
    """The chosen log-prob's final value minus its highest validation value (≤ 0)."""
    curve = run.curves.get(CHOSEN)
    return None if not curve else curve[-1][1] - max(v for _, v in curve)


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return "inconclusive (no data)"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if any(v == "not reproduced" for v in verdicts):
        return "not reproduced"
    return "inconclusive"


def finding_generation(grid: dict[float, dict[int, Run]], lam: float = 0.1) -> dict:
    sft, orpo = grid.get(SFT_LAMBDA, {}), grid.get(lam, {})
    accuracy = {
        name: _values(arm, lambda r: r.final(ACCURACY))
        for name, arm in (("sft", sft), ("orpo", orpo))
    }
    nll = {
        name: _values(arm, lambda r: r.final(NLL)) for name, arm in (("sft", sft), ("orpo", orpo))
    }
    diff = _paired(accuracy["orpo"], accuracy["sft"])
    return {
        "claim": f"ORPO (λ = {lam:g}) generates the correct answer more often than SFT at a "
        "similar NLL",
        "orpo_accuracy": _summary(accuracy["orpo"]),
        "sft_accuracy": _summary(accuracy["sft"]),
        "accuracy_diff": diff,
        "nll_diff": _paired(nll["orpo"], nll["sft"]),
        "verdict": verdict(diff, +1),
    }


def arm_table(grid: dict[float, dict[int, Run]], dpo: list[Run]) -> dict[str, dict]:
    arms = {("sft" if lam == SFT_LAMBDA else f"orpo λ={lam:g}"): arm for lam, arm in grid.items()}
    if _done(dpo):
        arms["dpo (from the SFT model)"] = {r.seed: r for r in _done(dpo)}
    return {
        name: {tag: _summary(_values(arm, lambda r, t=tag: r.final(t))) for tag in SHOWN}
        for name, arm in arms.items()
    }


def findings(runs: list[Run], dpo: list[Run] | None = None) -> dict:
    """Every check, with the numbers it rests on (JSON-ready)."""
    grid = by_lambda(runs)
    return {
        "seeds": sorted({s for arm in grid.values() for s in arm}),
        "arms": arm_table(grid, dpo or []),
        "finding_1": finding_sft_raises_rejected(grid),
        "finding_2": finding_lambda(grid),
        "finding_3": finding_generation(grid),
    }


def _fmt(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return "—"
    if s.get("low") is None:
        return f"{s['mean']:.{digits}f} (n=1)"
    p = f", p={s['p']:.2g}" if s.get("p") is not None else ""
    return f"{s['mean']:+.{digits}f} [{s['low']:+.{digits}f}, {s['high']:+.{digits}f}]{p}"


def markdown(result: dict, plots: list[Path]) -> str:
    """``findings.md``: the arms, each finding with its numbers and verdict, the plots."""
    names = {
        CHOSEN: "chosen",
        REJECTED: "rejected",
        MARGIN: "margin",
        "val/accuracies/avg_logps": "pair acc.",
        NLL: "NLL",
        ACCURACY: "exact match",
    }
    head = "| arm | " + " | ".join(names[t] for t in SHOWN) + " |\n|" + "---|" * (len(SHOWN) + 1)
    rows = [
        f"| {arm} | " + " | ".join(_fmt(v[t]) for t in SHOWN) + " |"
        for arm, v in result["arms"].items()
    ]
    f1, f2, f3 = result["finding_1"], result["finding_2"], result["finding_3"]
    steps = "; ".join(
        f"{s['from']:g}→{s['to']:g}: {_fmt(s['rejected_diff'])} ({s['verdict']})"
        for s in f2["steps"]
    )
    parts = [
        "# The ORPO paper's findings, in miniature",
        f"Seeds {result['seeds']}; final values of the validation set, mean [95 % CI over seeds]"
        f" (per-token mean log-probs). Wall time {result.get('wall_seconds', 0) / 60:.1f} min on "
        f"{result.get('cpu', '?')}. Command: `{result.get('command', '')}`.",
        head + "\n" + "\n".join(rows),
        f"## 1. {f1['claim']}: **{f1['verdict']}**",
        f"Rejected log-prob at step 0 {_fmt(f1['rejected_at_step_0'])}, at the end "
        f"{_fmt(f1['rejected_final'])}; rise {_fmt(f1['rise'])} (the chosen ones rose "
        f"{_fmt(f1['chosen_rise'])}).",
        f"## 2. {f2['claim']}: rejected **{f2['verdict_rejected']}**, chosen "
        f"**{f2['verdict_chosen']}**",
        f"Paired change of the final rejected log-prob per λ step: {steps}. Chosen log-prob at "
        f"λ = {f2['lambdas'][1]} minus at λ = {f2['lambdas'][0]}: "
        f"{_fmt(f2['chosen_highest_vs_lowest'])}; at λ = {f2['lambdas'][1]} its final value "
        f"minus its peak: {_fmt(f2['chosen_drop_from_peak_at_highest'])}.",
        f"## 3. {f3['claim']}: **{f3['verdict']}**",
        f"Exact match ORPO {_fmt(f3['orpo_accuracy'])}, SFT {_fmt(f3['sft_accuracy'])}; paired "
        f"difference {_fmt(f3['accuracy_diff'])}; NLL difference {_fmt(f3['nll_diff'])}.",
        "## Plots",
        *(f"![{p.stem}]({p.name})" for p in plots),
    ]
    return "\n\n".join(parts) + "\n"
