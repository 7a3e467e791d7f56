"""Tokenization of pairs: exact ids, the prompt/response boundary, and truncation per mode."""

from __future__ import annotations

import pytest
from datasets import Dataset

from prefopt.data import Truncation
from prefopt.data.formats import resolve_format
from prefopt.data.tokenize import tokenize_split, truncate_pair

BOS, EOS, USER, ASSISTANT, END = 257, 258, 260, 261, 262


def _bytes(text: str) -> list[int]:
    return list(text.encode())


def _tokenize(tokenizer, rows: dict, limits: Truncation | None = None, **format_kwargs):
    raw = Dataset.from_dict(rows)
    spec = resolve_format(raw, "src", **format_kwargs)
    return tokenize_split(raw, tokenizer, spec, limits or Truncation(), "src")


def test_standard_pair_gets_bos_and_one_eos(builtin_tokenizer):
    rows = {
        "prompt": ["Q: 7?", "Q: 8?"],
        "chosen": ["odd", "even</s>"],
        "rejected": ["even", "odd"],
    }
    dataset, skipped = _tokenize(builtin_tokenizer, rows)
    assert skipped == {}
    assert dataset.column_names == ["prompt_input_ids", "chosen_input_ids", "rejected_input_ids"]
    assert dataset[0] == {
        "prompt_input_ids": [BOS, *_bytes("Q: 7?")],
        "chosen_input_ids": [*_bytes("odd"), EOS],
        "rejected_input_ids": [*_bytes("even"), EOS],
    }
    # a response that already ends with EOS does not get a second one
    assert dataset[1]["chosen_input_ids"] == [*_bytes("even"), EOS]


def test_conversational_pair_goes_through_the_chat_template(builtin_tokenizer):
    rows = {
        "prompt": [[{"role": "user", "content": "7?"}]],
        "chosen": [[{"role": "assistant", "content": "odd"}]],
        "rejected": [[{"role": "assistant", "content": "even"}]],
    }
    dataset, _ = _tokenize(builtin_tokenizer, rows)
    assert dataset[0] == {
        "prompt_input_ids": [BOS, USER, *_bytes("7?"), END, ASSISTANT],
        "chosen_input_ids": [*_bytes("odd"), EOS],
        "rejected_input_ids": [*_bytes("even"), EOS],
    }


def test_implicit_conversation_response_is_the_whole_assistant_turn(builtin_tokenizer):
    rows = {
        "chosen": [
            [{"role": "user", "content": "7?"}, {"role": "assistant", "content": "It is odd"}]
        ],
        "rejected": [
            [{"role": "user", "content": "7?"}, {"role": "assistant", "content": "It is even"}]
        ],
    }
    dataset, _ = _tokenize(builtin_tokenizer, rows)
    assert dataset[0]["chosen_input_ids"] == [*_bytes("It is odd"), EOS]


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # fits: unchanged
        (Truncation(15, 6), (list(range(1, 11)), [11, 12, 13, 14, 15], [21, 22, 23])),
        # prompt + longer response (15) > 12: prompt cut to 6 (its end), responses fit in 12 - 6
        (Truncation(12, 6, "keep_end"), (list(range(5, 11)), [11, 12, 13, 14, 15], [21, 22, 23])),
        (Truncation(12, 6, "keep_start"), (list(range(1, 7)), [11, 12, 13, 14, 15], [21, 22, 23])),
        # then the responses are cut to max_length - prompt = 3
        (Truncation(9, 6, "keep_end"), (list(range(5, 11)), [11, 12, 13], [21, 22, 23])),
        # no prompt budget: only the responses are cut (TRL 1.16 ORPO)
        (Truncation(12, None), (list(range(1, 11)), [11, 12], [21, 22])),
    ],
)
def test_truncation_order_prompt_then_responses(limits, expected):
    assert truncate_pair(list(range(1, 11)), [11, 12, 13, 14, 15], [21, 22, 23], limits) == expected


def test_short_prompt_is_kept_whole_and_only_the_response_is_cut():
    assert truncate_pair([1, 2, 3], list(range(10, 30)), [40], Truncation(10, 6)) == (
        [1, 2, 3],
        list(range(10, 17)),
        [40],
    )


def test_drop_reasons_of_truncation():
    prompt = list(range(10))
    assert (
        truncate_pair(prompt, [1], [2], Truncation(drop_prompts_longer_than=9)) == "prompt_too_long"
    )
    assert truncate_pair(prompt, [1], [2], Truncation(drop_prompts_longer_than=10)) == (
        prompt,
        [1],
        [2],
    )
    assert truncate_pair(prompt, [1], [2], Truncation(10, None)) == "response_truncated_away"


def test_invalid_limits_fail_at_construction():
    with pytest.raises(
        ValueError,
        match=r"data.max_prompt_length \(64\) must be smaller than data.max_length \(64\)",
    ):
        Truncation(64, 64)
    with pytest.raises(
        ValueError, match="data.truncation_mode='keep_middle' must be keep_end or keep_start"
    ):
        Truncation(64, 32, "keep_middle")


def test_truncated_and_dropped_rows_through_the_map(builtin_tokenizer):
    rows = {
        "prompt": ["0123456789", "01", "0123456789abcdef"],
        "chosen": ["ABCDEFGH", "AB", "A"],
        "rejected": ["xy", "xyz", "x"],
    }
    limits = Truncation(max_length=12, max_prompt_length=5, drop_prompts_longer_than=12)
    dataset, skipped = _tokenize(builtin_tokenizer, rows, limits)
    assert skipped == {"prompt_too_long": 1}
    assert dataset[0] == {  # 11 prompt tokens + 9 > 12: keep the prompt's last 5, responses <= 7
        "prompt_input_ids": _bytes("56789"),
        "chosen_input_ids": _bytes("ABCDEFG"),
        "rejected_input_ids": [*_bytes("xy"), EOS],
    }
    assert dataset[1]["prompt_input_ids"] == [BOS, *_bytes("01")]
