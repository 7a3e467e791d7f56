"""Format detection, column mapping and the shared-prompt extraction."""

from __future__ import annotations

import pytest
from datasets import Dataset

from prefopt.data.formats import FormatSpec, normalize_row, resolve_format, role_problem


def _msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


STANDARD = {"prompt": ["Q?"], "chosen": ["yes"], "rejected": ["no"]}
CONVERSATIONAL = {
    "prompt": [_msgs(("user", "Q?"))],
    "chosen": [_msgs(("assistant", "yes"))],
    "rejected": [_msgs(("assistant", "no"))],
}


@pytest.mark.parametrize(
    ("columns", "conversational", "explicit"),
    [
        (STANDARD, False, True),
        ({"chosen": ["Q? yes"], "rejected": ["Q? no"]}, False, False),
        (CONVERSATIONAL, True, True),
        ({"chosen": CONVERSATIONAL["chosen"], "rejected": CONVERSATIONAL["rejected"]}, True, False),
        # HuggingFaceH4/ultrafeedback_binarized: a string prompt beside whole conversations
        (
            {
                "prompt": ["Q?"],
                "chosen": [_msgs(("user", "Q?"), ("assistant", "yes"))],
                "rejected": [_msgs(("user", "Q?"), ("assistant", "no"))],
            },
            True,
            False,
        ),
    ],
)
def test_detects_format_from_columns(columns, conversational, explicit):
    spec = resolve_format(Dataset.from_dict(columns), "src")
    assert (spec.conversational, spec.explicit_prompt) == (conversational, explicit)


def test_forced_conversational_wraps_strings_as_one_user_and_one_assistant_turn():
    spec = resolve_format(Dataset.from_dict(STANDARD), "src", format="conversational")
    assert spec.conversational and spec.wrap_strings
    assert normalize_row({"prompt": "Q?", "chosen": "yes", "rejected": "no"}, spec) == (
        _msgs(("user", "Q?")),
        _msgs(("assistant", "yes")),
        _msgs(("assistant", "no")),
    )


def test_forced_implicit_ignores_the_prompt_column():
    data = {"prompt": ["x"], "chosen": ["Q? yes"], "rejected": ["Q? no"]}
    spec = resolve_format(Dataset.from_dict(data), "src", prompt="implicit")
    assert not spec.explicit_prompt and "prompt" not in spec.columns
    assert normalize_row({"prompt": "x", "chosen": "Q? yes", "rejected": "Q? no"}, spec) == (
        "Q?",
        " yes",
        " no",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"format": "standard"},
            "data.format=standard, but the 'chosen' column holds chat messages",
        ),
        ({"format": "xml"}, "data.format='xml' must be auto, standard or conversational"),
        ({"prompt": "explicit"}, "data.prompt=explicit but there is no 'prompt' column"),
        ({"columns": {"answer": "chosen"}}, "unknown field 'answer'"),
        (
            {"columns": {"prompt": "question"}},
            "src: data.columns maps prompt -> 'question', which is not a column; "
            "available: chosen, rejected",
        ),
    ],
)
def test_impossible_settings_fail_with_one_line(kwargs, message):
    data = {"chosen": CONVERSATIONAL["chosen"], "rejected": CONVERSATIONAL["rejected"]}
    with pytest.raises(ValueError, match=message.replace("?", r"\?")) as err:
        resolve_format(Dataset.from_dict(data), "src", **kwargs)
    assert "\n" not in str(err.value)


def test_column_mapping_with_system_for_standard_and_conversational():
    data = Dataset.from_dict(
        {"system": ["Be brief."], "question": ["Q?"], "chosen": ["yes"], "rejected": ["no"]}
    )
    row = data[0]
    mapping = {"prompt": "question", "system": "system"}
    spec = resolve_format(data, "src", columns=mapping)
    assert normalize_row(row, spec) == ("Be brief.\n\nQ?", "yes", "no")
    spec = resolve_format(data, "src", format="conversational", columns=mapping)
    assert normalize_row(row, spec)[0] == _msgs(("system", "Be brief."), ("user", "Q?"))
    assert normalize_row({**row, "system": ""}, spec)[0] == _msgs(("user", "Q?"))


def test_implicit_string_prompt_follows_trl_and_the_marker_fixes_shared_answer_starts():
    hh = {
        "chosen": "\n\nHuman: Hi?\n\nAssistant: I think so.",
        "rejected": "\n\nHuman: Hi?\n\nAssistant: I don't.",
    }
    spec = resolve_format(Dataset.from_dict({k: [v] for k, v in hh.items()}), "src")
    # TRL's extract_prompt: shared characters, minus a trailing space -> "I" lands in the prompt
    assert normalize_row(hh, spec) == ("\n\nHuman: Hi?\n\nAssistant: I", " think so.", " don't.")
    marked = resolve_format(
        Dataset.from_dict({k: [v] for k, v in hh.items()}),
        "src",
        implicit_prompt_marker="\n\nAssistant:",
    )
    assert normalize_row(hh, marked) == (
        "\n\nHuman: Hi?\n\nAssistant:",
        " I think so.",
        " I don't.",
    )


def test_implicit_messages_prompt_is_the_shared_leading_turns():
    chosen = _msgs(
        ("system", "S"), ("user", "A"), ("assistant", "B"), ("user", "C"), ("assistant", "D")
    )
    rejected = chosen[:4] + _msgs(("assistant", "E"))
    spec = resolve_format(Dataset.from_dict({"chosen": [chosen], "rejected": [rejected]}), "src")
    assert normalize_row({"chosen": chosen, "rejected": rejected}, spec) == (
        chosen[:4],
        chosen[4:],
        rejected[4:],
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"prompt": "Q", "chosen": None, "rejected": "b"}, "missing_field"),
        ({"prompt": None, "chosen": "a", "rejected": "b"}, "missing_field"),
        ({"prompt": "Q", "chosen": 3, "rejected": "b"}, "bad_type"),
        ({"prompt": "Q", "chosen": ["a"], "rejected": "b"}, "bad_type"),
        ({"prompt": "Q", "chosen": "a", "rejected": " \n"}, "empty_response"),
        ({"prompt": "Q", "chosen": "a", "rejected": "a"}, "identical_responses"),
    ],
)
def test_bad_standard_rows_give_their_reason(row, reason):
    spec = resolve_format(Dataset.from_dict(STANDARD), "src")
    assert normalize_row(row, spec) == reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            {
                "chosen": _msgs(("user", "Q"), ("assistant", "a")),
                "rejected": _msgs(("user", "P"), ("assistant", "b")),
            },
            "no_shared_prompt",
        ),
        (
            {"chosen": _msgs(("user", "Q"), ("assistant", "a")), "rejected": _msgs(("user", "Q"))},
            "empty_response",
        ),
        (
            {"chosen": [{"role": "user", "content": None}], "rejected": _msgs(("user", "Q"))},
            "bad_type",
        ),
        ({"chosen": "Q a", "rejected": _msgs(("user", "Q"))}, "bad_type"),
    ],
)
def test_bad_conversational_rows_give_their_reason(row, reason):
    data = {"chosen": CONVERSATIONAL["chosen"], "rejected": CONVERSATIONAL["rejected"]}
    spec = resolve_format(Dataset.from_dict(data), "src")
    assert normalize_row(row, spec) == reason


def test_string_marker_absent_from_shared_part_means_no_shared_prompt():
    row = {"chosen": "Human: a", "rejected": "Human: b"}
    spec = resolve_format(
        Dataset.from_dict({k: [v] for k, v in row.items()}),
        "src",
        implicit_prompt_marker="Assistant:",
    )
    assert normalize_row(row, spec) == "no_shared_prompt"


def test_conversational_prompt_without_messages_is_an_empty_prompt():
    spec = resolve_format(Dataset.from_dict(CONVERSATIONAL), "src")
    row = {
        "prompt": [],
        "chosen": CONVERSATIONAL["chosen"][0],
        "rejected": CONVERSATIONAL["rejected"][0],
    }
    assert normalize_row(row, spec) == "empty_prompt"
    # a system column gives an empty prompt its system message
    spec = resolve_format(Dataset.from_dict({**CONVERSATIONAL, "system": ["S"]}), "src")
    assert normalize_row({**row, "system": "S"}, spec)[0] == _msgs(("system", "S"))


def _m(*roles: str) -> list[dict[str, str]]:
    return [{"role": role, "content": f"{role} text"} for role in roles]


@pytest.mark.parametrize(
    ("prompt", "chosen", "rejected", "reason"),
    [
        (_m("user"), _m("assistant"), _m("assistant"), None),
        (_m("system", "user", "assistant", "user"), _m("assistant"), _m("assistant"), None),
        (_m("user", "tool"), _m("assistant"), _m("assistant"), None),
        (_m("user"), _m("user"), _m("assistant"), "response_not_assistant"),
        (_m("user"), _m("assistant", "user"), _m("assistant"), "response_not_assistant"),
        (_m("user", "assistant"), _m("assistant"), _m("assistant"), "prompt_ends_with_assistant"),
        (_m("user", "system", "user"), _m("assistant"), _m("assistant"), "roles_out_of_order"),
        (_m("assistant", "user"), _m("assistant"), _m("assistant"), "roles_out_of_order"),
        (_m("human"), _m("assistant"), _m("assistant"), "unknown_role"),
    ],
)
def test_conversational_roles_that_cannot_be_trained_on(prompt, chosen, rejected, reason):
    """A response must be the assistant's own words, after a prompt that ends with a turn
    that is not the assistant's, in a chat's order."""
    rejected = [{**m, "content": m["content"] + " (worse)"} for m in rejected]
    assert role_problem(prompt, chosen, rejected) == reason
    spec = FormatSpec(
        conversational=True,
        explicit_prompt=True,
        columns={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    )
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    out = normalize_row(row, spec)
    assert (out if isinstance(out, str) else None) == reason
