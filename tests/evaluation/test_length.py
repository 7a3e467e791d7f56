"""length on known lengths: mean, p90, the share at the limit, and the margin-length correlation
from the run's own log-prob function."""

from __future__ import annotations

import pytest
import torch

from prefopt.data import PreferenceCollator
from prefopt.evaluation import EvalData
from prefopt.evaluation.length import Length, margins, pearson, quantile
from prefopt.models import build_tiny_model, score_pairs
from prefopt.models.logps import Scoring
from tests.evaluation.helpers import make_policy, make_row


def test_pearson_and_quantile_by_hand():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # dx = (-1, 0, 1), dy = (-1, 2, -1): sum dx dy = 0
    assert pearson([1, 2, 3], [1, 4, 1]) == pytest.approx(0.0)
    assert pearson([1, 2, 3], [5, 5, 5]) != pearson([1, 2, 3], [5, 5, 5])  # nan: no variance
    # 10 values: position 0.9 x 9 = 8.1 -> 9 + 0.1 x (10 - 9)
    assert quantile([float(v) for v in range(1, 11)], 0.9) == pytest.approx(9.1)


def test_length_statistics_on_known_lengths(tokenizer):
    # generations of 1..9 characters; the built-in tokenizer has one token per byte, + EOS
    rows = [make_row(tokenizer, "x" * n) for n in range(1, 9)]
    rows.append(make_row(tokenizer, "y" * 10, stopped=False))  # hit the limit: 10 tokens, no EOS
    rows.append(make_row(tokenizer, "z" * 9, stopped=False))  # 9 tokens, no EOS: below the limit
    evaluator = Length()
    evaluator.setup(EvalData(tokenizer, True, len(rows), max_new_tokens=10))
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1)
    values = evaluator.score(rows, make_policy(model, tokenizer, batch_size=4))
    tokens = [2, 3, 4, 5, 6, 7, 8, 9, 10, 9]
    assert values["tokens"] == tokens
    assert values["at_max"] == [0] * 8 + [1, 0]
    assert values["chosen_tokens"] == [12] * 10  # "437 is odd." + EOS
    assert values["length_diff"] == [-1] * 10  # "437 is even." is one byte longer
    summary = evaluator.summarize(values, policy=None)
    assert summary["mean_tokens"] == pytest.approx(6.3)
    # sorted: 2 3 4 5 6 7 8 9 9 10; position 0.9 x 9 = 8.1 -> 9 + 0.1 x (10 - 9)
    assert summary["p90_tokens"] == pytest.approx(9.1)
    assert summary["at_max_new_tokens"] == pytest.approx(0.1)
    assert summary["chosen_mean_tokens"] == 12
    # every length difference is -1: no variance, so the correlation is undefined (nan)
    assert summary["margin_length_corr"] != summary["margin_length_corr"]


def test_margins_are_the_runs_mean_logprob_margins_and_correlate_with_length(tokenizer):
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1).eval()
    pairs = [("437 is odd.", "437 is even."), ("12 is even.", "12 is odd."), ("a", "bbbbbbbbb")]
    pairs += [("99 is larger.", "9 is larger."), ("ccccccccc", "d")]
    rows = [make_row(tokenizer, "", chosen=c, rejected=r) for c, r in pairs]
    policy = make_policy(model, tokenizer, batch_size=2)  # 3 batches
    got = margins(rows, policy)
    batch = PreferenceCollator(tokenizer.pad_token_id)(
        [
            {"prompt_input_ids": r.prompt_ids, "chosen_input_ids": r.chosen_ids}
            | {"rejected_input_ids": r.rejected_ids}
            for r in rows
        ]
    )
    chosen, rejected = score_pairs(model, [batch], Scoring(), "mean")
    assert got == pytest.approx((chosen - rejected).tolist(), abs=1e-5)
    evaluator = Length()
    evaluator.setup(EvalData(tokenizer, True, len(rows), max_new_tokens=8))
    values = evaluator.score(rows, policy)
    corr = evaluator.summarize(values, policy)["margin_length_corr"]
    assert corr == pytest.approx(pearson(got, [len(c) - len(r) for c, r in pairs]), abs=1e-5)
    assert -1 <= corr <= 1
