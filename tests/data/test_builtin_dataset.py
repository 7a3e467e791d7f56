"""The built-in preference dataset: deterministic, correct, short, and learnable by design."""

from __future__ import annotations

import re

import pytest

from prefopt.data import PreferenceDataModule, builtin_splits
from prefopt.data.builtin import generate_rows


def _is_correct(prompt: str, answer: str) -> bool:
    """Check an answer against the rule of its task, independently of the generator."""
    if m := re.fullmatch(r"Is (\d+) odd or even\?", prompt):
        n = int(m[1])
        return answer == f"{n} is {'odd' if n % 2 else 'even'}."
    if m := re.fullmatch(r"Which is larger, (\d+) or (\d+)\?", prompt):
        return answer == f"{max(int(m[1]), int(m[2]))} is larger."
    if m := re.fullmatch(r"What comes after (\d+)\?", prompt):
        return answer == f"{int(m[1]) + 1} comes after {m[1]}."
    if m := re.fullmatch(r"Last digit of (\d+)\?", prompt):
        return answer == f"{m[1]} ends in {m[1][-1]}."
    raise AssertionError(f"unknown task: {prompt}")


def test_same_seed_same_rows_other_seed_other_rows():
    assert generate_rows(50, seed=3) == generate_rows(50, seed=3)
    assert generate_rows(50, seed=3) != generate_rows(50, seed=4)


def test_default_sizes_no_prompt_shared_across_splits():
    train, eval_ = builtin_splits()
    assert (len(train), len(eval_)) == (2000, 200)
    train_prompts, eval_prompts = set(train["prompt"]), set(eval_["prompt"])
    assert len(train_prompts) == 2000 and len(eval_prompts) == 200
    assert not train_prompts & eval_prompts


def test_chosen_is_right_rejected_is_wrong_in_the_same_words():
    rows = generate_rows(400, seed=0)
    prefixes = ("Is ", "Which is larger", "What comes after", "Last digit of ")
    counts = [sum(p.startswith(x) for p, _, _ in rows) for x in prefixes]
    assert sum(counts) == 400 and min(counts) > 60  # four tasks, drawn uniformly
    for prompt, chosen, rejected in rows:
        assert _is_correct(prompt, chosen), (prompt, chosen)
        assert not _is_correct(prompt, rejected), (prompt, rejected)
        # same template: the two answers have the same words apart from the answer itself
        assert len(chosen.split()) == len(rejected.split())
        assert sum(a != b for a, b in zip(chosen.split(), rejected.split())) == 1


def test_answers_are_balanced_no_surface_shortcut():
    rows = generate_rows(2000, seed=0)
    parity = [c for p, c, _ in rows if p.startswith("Is ")]
    odd = sum(c.endswith("odd.") for c in parity) / len(parity)
    assert 0.4 < odd < 0.6
    larger = [(p, c) for p, c, _ in rows if p.startswith("Which")]
    first = sum(p.split()[3].rstrip(",") == c.split()[0] for p, c in larger) / len(larger)
    assert 0.4 < first < 0.6


def test_too_many_rows_fails_with_the_limit():
    with pytest.raises(ValueError, match="19909 distinct prompts"):
        builtin_splits(train_size=11000, eval_size=0)


def test_default_config_path_tokenizes_short_conversational_pairs(builtin_tokenizer):
    dm = PreferenceDataModule(
        builtin_tokenizer,
        path="builtin",
        format="conversational",
        max_length=64,
        max_prompt_length=48,
        builtin={"train_size": 200, "eval_size": 20, "seed": 1},
    )
    dm.setup()
    assert (len(dm.train_dataset), len(dm.eval_dataset)) == (200, 20)
    assert dm.skipped == {"train": {}, "eval": {}}
    assert max(dm.lengths(dm.train_dataset)) <= 46
    row = dm.train_dataset[0]
    decoded = builtin_tokenizer.decode(row["prompt_input_ids"])
    assert decoded.startswith("<s><|user|>") and decoded.endswith("<|end|><|assistant|>")
    assert row["chosen_input_ids"][-1] == builtin_tokenizer.eos_token_id
