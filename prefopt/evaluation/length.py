"""``length``: how long the generations are, and whether the policy's preference follows length.

* ``mean_tokens``, ``p90_tokens``: generated tokens per prompt (the stop token included, as the
  data's response lengths include their EOS); the 90th percentile by linear interpolation
  (``torch.quantile``, numpy's default).
* ``at_max_new_tokens``: the share of generations that hit ``max_new_tokens`` without a stop token.
* ``chosen_mean_tokens``: the chosen responses' mean length, for comparison.
* ``margin_length_corr``: Pearson's correlation, over the sample's pairs, of the policy's
  preference margin (chosen - rejected mean per-token log-prob, scored by the run's one log-prob
  function) with the length difference (chosen - rejected tokens). Far from 0 means the policy's
  preference follows length: the length bias reference-free objectives are suspected of. Not
  logged when it is undefined (all length differences, or all margins, equal).
"""

from __future__ import annotations

import torch

from prefopt.data.collate import PreferenceCollator
from prefopt.evaluation.base import EvalData, EvalRow, Evaluator, Policy, Values, mean
from prefopt.evaluation.registry import register
from prefopt.models.reference import split_logps


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson's correlation of ``x`` and ``y`` (nan with fewer than 2 points or no variance)."""
    if len(x) < 2:
        return float("nan")
    xs, ys = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    denominator = (dx.square().sum() * dy.square().sum()).sqrt()
    return float((dx * dy).sum() / denominator) if denominator > 0 else float("nan")


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``, linearly interpolated (nan for none)."""
    if not values:
        return float("nan")
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))


def margins(rows: list[EvalRow], policy: Policy) -> list[float]:
    """Chosen - rejected mean per-token log-prob of each row's pair under the policy: one
    forward over [chosen; rejected] per ``policy.batch_size`` pairs (``policy.scoring``)."""
    collate = PreferenceCollator(policy.tokenizer.pad_token_id)
    out: list[float] = []
    for start in range(0, len(rows), policy.batch_size):
        pairs = [
            {
                "prompt_input_ids": row.prompt_ids,
                "chosen_input_ids": row.chosen_ids,
                "rejected_input_ids": row.rejected_ids,
            }
            for row in rows[start : start + policy.batch_size]
        ]
        batch = {k: v.to(policy.device) for k, v in collate(pairs).items()}
        with torch.no_grad():
            chosen, rejected = split_logps(policy.scoring(policy.model, batch), "mean")  # (B,)
        out += (chosen - rejected).float().cpu().tolist()
    return out


@register("length")
class Length(Evaluator):
    """Generation length statistics and the correlation of the preference margin with length."""

    metrics = (
        "mean_tokens",
        "p90_tokens",
        "at_max_new_tokens",
        "chosen_mean_tokens",
        "margin_length_corr",
    )

    def __init__(self) -> None:
        self.max_new_tokens = 0

    def setup(self, data: EvalData) -> None:
        self.max_new_tokens = data.max_new_tokens

    def score(self, rows: list[EvalRow], policy: Policy) -> Values:
        """Per row: ``tokens``, ``at_max`` (0 / 1), ``chosen_tokens``, ``margin``,
        ``length_diff``."""
        return {
            "tokens": [float(len(row.generation_ids)) for row in rows],
            "at_max": [
                float(not row.stopped and len(row.generation_ids) >= self.max_new_tokens)
                for row in rows
            ],
            "chosen_tokens": [float(len(row.chosen_ids)) for row in rows],
            "margin": margins(rows, policy) if rows else [],
            "length_diff": [float(len(row.chosen_ids) - len(row.rejected_ids)) for row in rows],
        }

    def summarize(self, values: Values, policy: Policy) -> dict[str, float]:
        tokens = values.get("tokens", [])
        return {
            "mean_tokens": mean(tokens),
            "p90_tokens": quantile(tokens, 0.9),
            "at_max_new_tokens": mean(values.get("at_max", [])),
            "chosen_mean_tokens": mean(values.get("chosen_tokens", [])),
            "margin_length_corr": pearson(values.get("margin", []), values.get("length_diff", [])),
        }
