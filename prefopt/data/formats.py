"""Preference formats: detect them, and turn each raw row into (prompt, chosen, rejected).

Four layouts are accepted (TRL's names): standard (strings) or conversational (lists of
``{role, content}`` messages), each with an explicit prompt (a ``prompt`` column) or an implicit one
(the shared leading part of ``chosen`` and ``rejected``). ``columns`` maps other column names onto
``prompt`` / ``system`` / ``chosen`` / ``rejected``, and onto ``reference``: an optional reference
answer (text, kept as it is for the generation evaluators), found by itself in a ``reference`` or
``answer`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from prefopt.errors import ConfigError

FIELDS = ("prompt", "system", "chosen", "rejected")
REFERENCE_FIELD = "reference"
# columns taken as the reference answer when ``columns`` maps none
REFERENCE_COLUMNS = ("reference", "answer")
Messages = list[dict[str, Any]]
Text = str | Messages


@dataclass(frozen=True)
class FormatSpec:
    """How to read the rows of one dataset.

    Attributes:
        conversational: Messages through the chat template (True) or plain strings (False).
        explicit_prompt: The prompt is its own column (True) or the shared start of the responses.
        columns: Source column of each field in :data:`FIELDS` that is used (``system`` optional).
        wrap_strings: String rows are turned into one user and one assistant message
            (``format: conversational`` forced on standard data).
        implicit_prompt_marker: For implicit string prompts, end the prompt right after the last
            occurrence of this text in the shared part (e.g. ``"\\n\\nAssistant:"``).
        reference_column: Source column of the reference answer (None: the data has none).
    """

    conversational: bool
    explicit_prompt: bool
    columns: Mapping[str, str]
    wrap_strings: bool = False
    implicit_prompt_marker: str | None = None
    reference_column: str | None = None


def check_options(format: str, prompt: str) -> None:
    """Fail with one line on an unknown ``format`` or ``prompt`` setting."""
    if format not in ("auto", "standard", "conversational"):
        raise ConfigError(f"data.format={format!r} must be auto, standard or conversational")
    if prompt not in ("auto", "explicit", "implicit"):
        raise ConfigError(f"data.prompt={prompt!r} must be auto, explicit or implicit")


def _kind(values: list[Any]) -> str | None:
    """``"messages"``, ``"string"`` or None (only missing values) for the first non-null value."""
    for value in values:
        if value is not None:
            return "messages" if isinstance(value, list) else "string"
    return None


def resolve_format(
    dataset: Dataset,
    source: str,
    format: str = "auto",
    prompt: str = "auto",
    columns: Mapping[str, str] | None = None,
    implicit_prompt_marker: str | None = None,
) -> FormatSpec:
    """Detect the format from the dataset's columns and first rows, honouring forced settings.

    Args:
        dataset: The raw dataset.
        source: Its name, for error messages.
        format: ``auto``, ``standard`` or ``conversational``.
        prompt: ``auto``, ``explicit`` or ``implicit``.
        columns: Field -> source column, for fields named differently (e.g. ``{prompt: question}``;
            ``reference`` for the reference answer).
        implicit_prompt_marker: See :class:`FormatSpec`.

    Returns:
        The resolved :class:`FormatSpec`.

    Raises:
        ConfigError: unknown field or source column, or a forced setting the data cannot satisfy.
    """
    check_options(format, prompt)
    available = dataset.column_names
    mapping = dict(columns or {})
    for field, column in mapping.items():
        if field not in (*FIELDS, REFERENCE_FIELD):
            raise ConfigError(
                f"data.columns: unknown field {field!r}; expected one of "
                f"{', '.join((*FIELDS, REFERENCE_FIELD))}"
            )
        if column not in available:
            raise ConfigError(
                f"{source}: data.columns maps {field} -> {column!r}, which is not a column; "
                f"available: {', '.join(available)}"
            )
    found = [c for c in REFERENCE_COLUMNS if c in available]
    reference = mapping.pop(REFERENCE_FIELD, found[0] if found else None)
    for field in FIELDS:
        if field not in mapping and field in available:
            mapping[field] = field
    for field in ("chosen", "rejected"):
        if field not in mapping:
            raise ConfigError(
                f"{source}: no {field!r} column (map one with data.columns.{field}=NAME); "
                f"available: {', '.join(available)}"
            )
    head = dataset.select(range(min(100, len(dataset))))
    response_kind = _kind(head[mapping["chosen"]]) or "string"
    prompt_kind = _kind(head[mapping["prompt"]]) if "prompt" in mapping else None
    # A prompt column of another kind than the responses (HuggingFaceH4/ultrafeedback_binarized:
    # prompt string, chosen = whole conversation) is not the prompt: extract it (as TRL does).
    explicit = prompt_kind is not None and prompt_kind == response_kind
    if prompt == "explicit" and "prompt" not in mapping:
        raise ConfigError(
            f"{source}: data.prompt=explicit but there is no 'prompt' column (map one with "
            f"data.columns.prompt=NAME); available: {', '.join(available)}"
        )
    if prompt != "auto":
        explicit = prompt == "explicit"
    if not explicit:
        mapping.pop("prompt", None)
    if format == "standard" and response_kind == "messages":
        raise ConfigError(
            f"{source}: data.format=standard, but the {mapping['chosen']!r} column holds chat "
            "messages: use data.format=auto or conversational"
        )
    wrap = format == "conversational" and response_kind == "string"
    if wrap and not explicit:
        raise ConfigError(
            f"{source}: data.format=conversational on string responses needs an explicit prompt "
            "column: use data.format=auto, or map one with data.columns.prompt=NAME"
        )
    return FormatSpec(
        conversational=response_kind == "messages" or wrap,
        explicit_prompt=explicit,
        columns=mapping,
        wrap_strings=wrap,
        implicit_prompt_marker=implicit_prompt_marker,
        reference_column=reference,
    )


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(m, dict) for m in value)
        and all(isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def _is_empty(value: Text) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return all(not m["content"].strip() for m in value)


ROLES = ("system", "user", "assistant", "tool")


def role_problem(prompt: Messages, chosen: Messages, rejected: Messages) -> str | None:
    """Why a conversational pair's roles cannot be trained on, or ``None``.

    The responses must be assistant turns only (else the model would learn a user's words as its
    answer), the prompt must end with a non-assistant turn (the generation prompt follows it), and
    the prompt's roles must be in a chat's order: an optional system message first, then a user
    turn before any assistant turn.

    Returns:
        ``unknown_role``, ``response_not_assistant``, ``prompt_ends_with_assistant``,
        ``roles_out_of_order``, or ``None``.
    """
    if any(m["role"] not in ROLES for m in (*prompt, *chosen, *rejected)):
        return "unknown_role"
    if any(m["role"] != "assistant" for m in (*chosen, *rejected)):
        return "response_not_assistant"
    if prompt and prompt[-1]["role"] == "assistant":
        return "prompt_ends_with_assistant"
    roles = [m["role"] for m in prompt]
    if "system" in roles[1:]:
        return "roles_out_of_order"
    turns = [r for r in roles if r != "system"]
    if turns and turns[0] != "user":
        return "roles_out_of_order"
    return None


def _split_implicit(chosen: Text, rejected: Text, marker: str | None) -> tuple[Text, Text, Text]:
    """Shared prompt of two responses: whole messages, or characters (TRL's ``extract_prompt``)."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if isinstance(chosen, str):
        if marker is not None:
            found = chosen.rfind(marker, 0, n)
            n = found + len(marker) if found >= 0 else 0
        elif 0 < n < min(len(chosen), len(rejected)) and chosen[n - 1] == " ":
            n -= 1  # the response keeps its leading space, as in TRL
    return chosen[:n], chosen[n:], rejected[n:]


def normalize_row(row: Mapping[str, Any], spec: FormatSpec) -> tuple[Text, Text, Text] | str:
    """Turn one raw row into ``(prompt, chosen, rejected)``, or the reason to drop it.

    Args:
        row: The raw row (source column -> value).
        spec: The resolved format.

    Returns:
        Strings (standard) or message lists (conversational), the prompt ending where the
        response starts; or one of ``missing_field``, ``bad_type``, ``identical_responses``,
        ``no_shared_prompt``, ``empty_response``, ``empty_prompt``, or one of
        :func:`role_problem`'s reasons.
    """
    cols = spec.columns
    values = {field: row[column] for field, column in cols.items()}
    if any(values[f] is None for f in cols if f != "system"):
        return "missing_field"
    system = values.get("system")
    check = _is_messages if spec.conversational and not spec.wrap_strings else _is_str
    if not all(check(values[f]) for f in cols if f != "system") or not _is_str(system or ""):
        return "bad_type"
    chosen, rejected = values["chosen"], values["rejected"]
    if chosen == rejected:
        return "identical_responses"
    if spec.explicit_prompt:
        prompt = values["prompt"]
    else:
        prompt, chosen, rejected = _split_implicit(chosen, rejected, spec.implicit_prompt_marker)
        if not prompt:
            return "no_shared_prompt"
    if _is_empty(chosen) or _is_empty(rejected):
        return "empty_response"
    if spec.wrap_strings:
        prompt = [{"role": "user", "content": prompt}]
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    if system:
        if spec.conversational:
            if not prompt or prompt[0]["role"] != "system":
                prompt = [{"role": "system", "content": system}, *prompt]
        else:
            prompt = f"{system}\n\n{prompt}"
    if spec.conversational and not prompt:
        return "empty_prompt"
    if spec.conversational:
        problem = role_problem(prompt, chosen, rejected)
        if problem is not None:
            return problem
    return prompt, chosen, rejected


def _is_str(value: Any) -> bool:
    return isinstance(value, str)
