"""Our token ids equal TRL 1.16's on the same rows (only the test imports trl; prefopt never does).

* TRL's DPO trainer (``DPOTrainer._prepare_dataset``): identical prompt / chosen / rejected ids.
* TRL's ORPO trainer (``ORPOTrainer.tokenize_row``): identical sequences and labels, except that it
  always prepends ``bos_token_id`` to the prompt, where we keep BOS only if the tokenizer or chat
  template writes one (as its DPO trainer does). The built-in template writes BOS, so there the
  two agree exactly, including the response truncation to ``max_length - len(prompt)``.
"""

from __future__ import annotations

import os
import types

import pytest
from datasets import Dataset

from prefopt.data import Truncation
from prefopt.data.formats import resolve_format
from prefopt.data.tokenize import tokenize_split

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl = pytest.importorskip("trl")
from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402


def _msgs(role: str, *contents: str) -> list[list[dict[str, str]]]:
    return [[{"role": role, "content": c}] for c in contents]


STANDARD = {
    # the trailing space merges into the response's first token with SentencePiece tokenizers
    "prompt": ["Question: is 7 odd?\nAnswer: ", "Is 3 odd?", "Translate to German: cat"],
    "chosen": ["yes", " 3 is odd.", "Katze"],
    "rejected": ["no", " 3 is even.", "Hund"],
}
CONVERSATIONAL = {
    "prompt": [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is 3 odd?"}],
        [{"role": "user", "content": "Hi"}],
    ],
    "chosen": _msgs("assistant", "3 is odd.", "Hello! How can I help?"),
    "rejected": _msgs("assistant", "3 is even.", "Go away."),
}
IMPLICIT = {  # the llamafactory / ultrafeedback layout
    "chosen": [p + c for p, c in zip(CONVERSATIONAL["prompt"], CONVERSATIONAL["chosen"])],
    "rejected": [p + r for p, r in zip(CONVERSATIONAL["prompt"], CONVERSATIONAL["rejected"])],
}


def _ours(rows: dict, tokenizer, limits: Truncation | None = None) -> Dataset:
    raw = Dataset.from_dict(rows)
    dataset, skipped = tokenize_split(
        raw, tokenizer, resolve_format(raw, "t"), limits or Truncation(), "t"
    )
    assert skipped == {}
    return dataset


def _trl_dpo(rows: dict, tokenizer) -> Dataset:
    owner = types.SimpleNamespace(_tokenizer=tokenizer)
    args = types.SimpleNamespace(
        dataset_num_proc=None, max_length=None, truncation_mode="keep_start"
    )
    return DPOTrainer._prepare_dataset(owner, Dataset.from_dict(rows), tokenizer, args, "train")


def _trl_orpo(rows: dict, tokenizer, max_length: int = 10**6) -> list[dict]:
    owner = types.SimpleNamespace(
        processing_class=tokenizer, max_length=max_length, is_encoder_decoder=False
    )
    owner.build_tokenized_answer = lambda p, a: ORPOTrainer.build_tokenized_answer(owner, p, a)
    out = []
    for row in Dataset.from_dict(rows):  # what ORPOTrainer maps over its dataset, row by row
        row = maybe_apply_chat_template(maybe_extract_prompt(row), tokenizer)
        out.append(ORPOTrainer.tokenize_row(owner, row))
    return out


@pytest.mark.parametrize(
    "rows", [STANDARD, CONVERSATIONAL, IMPLICIT], ids=["std", "conv", "implicit"]
)
@pytest.mark.parametrize("tokenizer_name", ["builtin_tokenizer", "phi3"])
def test_same_ids_as_trl_dpo(rows, tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    ours, theirs = _ours(rows, tokenizer), _trl_dpo(rows, tokenizer)
    assert ours["prompt_input_ids"] == theirs["prompt_ids"]
    assert ours["chosen_input_ids"] == theirs["chosen_ids"]
    assert ours["rejected_input_ids"] == theirs["rejected_ids"]


@pytest.mark.parametrize(
    "rows", [STANDARD, CONVERSATIONAL, IMPLICIT], ids=["std", "conv", "implicit"]
)
@pytest.mark.parametrize("tokenizer_name", ["builtin_tokenizer", "phi3"])
def test_same_sequences_and_labels_as_trl_orpo(rows, tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    ours, theirs = _ours(rows, tokenizer), _trl_orpo(rows, tokenizer)
    for row, trl_row in zip(ours, theirs):
        bos = (
            []
            if row["prompt_input_ids"][:1] == [tokenizer.bos_token_id]
            else [tokenizer.bos_token_id]
        )
        prompt = bos + row["prompt_input_ids"]
        assert trl_row["prompt_input_ids"] == prompt
        for side in ("chosen", "rejected"):
            assert trl_row[f"{side}_input_ids"] == prompt + row[f"{side}_input_ids"]
            assert trl_row[f"{side}_labels"] == [-100] * len(prompt) + row[f"{side}_input_ids"]


def test_response_truncation_matches_trl_orpo(builtin_tokenizer):
    rows = {
        "prompt": ["Is 37 odd or even?"],
        "chosen": ["37 is odd, because 7 is odd."],
        "rejected": ["37 is even."],
    }
    ours = _ours(rows, builtin_tokenizer, Truncation(max_length=30, max_prompt_length=20))[0]
    theirs = _trl_orpo(rows, builtin_tokenizer, max_length=30)[0]
    assert len(ours["prompt_input_ids"]) + len(ours["chosen_input_ids"]) == 30
    assert theirs["chosen_input_ids"] == ours["prompt_input_ids"] + ours["chosen_input_ids"]
    assert theirs["rejected_input_ids"] == ours["prompt_input_ids"] + ours["rejected_input_ids"]
