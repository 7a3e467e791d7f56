"""exact_match on fixed strings: the normalisations, the reference it compares with, the
chosen-vs-rejected similarity, and the one-line errors."""

from __future__ import annotations

import pytest

from prefopt.errors import ConfigError
from prefopt.evaluation import EvalData
from prefopt.evaluation.exact_match import NORMALIZERS, ExactMatch, similarity
from tests.evaluation.helpers import make_row


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("none", " 437 is  Odd. ", " 437 is  Odd. "),
        ("strip", " 437 is \n Odd. ", "437 is Odd."),
        ("lower", " 437 is  Odd. ", "437 is odd."),
        ("lower_strip_punct", " 437, is  Odd! ", "437 is odd"),
        ("lower_strip_punct", "It's 4.5", "its 45"),
    ],
)
def test_normalisations(name, text, expected):
    assert NORMALIZERS[name](text) == expected


def test_similarity_is_difflibs_ratio_over_characters():
    assert similarity("437 is odd", "437 is odd") == 1.0
    assert similarity("ab", "abcd") == pytest.approx(2 * 2 / 6)  # 2 x matches / total length
    assert similarity("xyz", "abc") == 0.0


def _summary(evaluator, rows, tokenizer):
    evaluator.setup(EvalData(tokenizer, has_reference=True, num_rows=len(rows), max_new_tokens=8))
    values = evaluator.score(rows, policy=None)
    return values, evaluator.summarize(values, policy=None)


def test_accuracy_and_closer_to_chosen_on_a_fake_generation(tokenizer):
    rows = [
        make_row(tokenizer, "437 is odd."),  # the answer: a match, closer to chosen
        make_row(tokenizer, "437 is ODD"),  # a match once normalised
        make_row(tokenizer, "437 is odd, I think"),  # no match, still closer to chosen
        make_row(tokenizer, "437 is even."),  # the rejected answer
        make_row(tokenizer, "xyz"),  # no character in common with either: a tie, not closer
    ]
    values, summary = _summary(ExactMatch(), rows, tokenizer)
    assert values == {"match": [1, 1, 0, 0, 0], "closer_to_chosen": [1, 1, 1, 0, 0]}
    assert summary == {"accuracy": 2 / 5, "closer_to_chosen": 3 / 5}
    values, _ = _summary(ExactMatch(normalize="strip"), rows, tokenizer)
    assert values["match"] == [1, 0, 0, 0, 0]  # case matters without lower-casing


def test_the_reference_column_wins_over_the_chosen_response(tokenizer):
    rows = [
        make_row(tokenizer, "odd", reference="Odd"),  # the column holds a short answer
        make_row(tokenizer, "437 is odd.", reference="odd"),
        make_row(tokenizer, "437 is odd."),  # this row has none: the chosen response
    ]
    assert _summary(ExactMatch(), rows, tokenizer)[0]["match"] == [1, 0, 1]
    chosen = ExactMatch(reference="chosen")
    assert _summary(chosen, rows, tokenizer)[0]["match"] == [0, 1, 1]


def test_unknown_normalisation_names_the_key_and_the_choices():
    with pytest.raises(ConfigError) as err:
        ExactMatch(normalize="casefold")
    assert str(err.value) == (
        "evaluation.exact_match.normalize='casefold' is unknown; use one of: none, strip, "
        "lower, lower_strip_punct"
    )


def test_a_required_reference_column_on_data_without_one_fails_in_one_line(tokenizer):
    with pytest.raises(ConfigError, match=r"reference=column, but the eval data has no reference"):
        ExactMatch(reference="column").setup(EvalData(tokenizer, False, 4, 8))
    ExactMatch(reference="auto").setup(EvalData(tokenizer, False, 4, 8))  # falls back to chosen
    with pytest.raises(ConfigError, match=r"reference='answer' is unknown; use one of: auto"):
        ExactMatch(reference="answer")
