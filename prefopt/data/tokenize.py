"""Tokenize preference pairs once (``datasets.map``), truncate them, and drop the unusable ones.

Conventions (TRL 1.16's DPO tokenization, shared by every objective here):

* conversational: the prompt is rendered by the chat template with the generation prompt, the
  pair as the whole conversation (prompt + response); nothing else adds BOS or EOS;
* standard: the tokenizer's own special tokens (BOS if it adds one), and the EOS token appended
  to each response unless it already ends with it;
* the prompt is tokenized on its own and the pair together; the response tokens are the pair's
  tokens after the prompt tokens they share. When a tokenizer merges tokens across the boundary
  (``enc(p + r) != enc(p) + enc(r)``), the prompt is cut to the part shared by the prompt alone,
  prompt + chosen and prompt + rejected, so chosen and rejected always share the same prompt
  tokens and prompt + response is exactly the pair's tokenization.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from datasets import Dataset
from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from prefopt.data.formats import FormatSpec, Text, normalize_row
from prefopt.errors import ConfigError, DataError

COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
REFERENCE = "reference"  # the optional reference answer, kept as text (None where a row has none)


@dataclass(frozen=True)
class Truncation:
    """Length limits, applied in TRL's order (prompt first, then responses).

    Attributes:
        max_length: Longest prompt + response, in tokens (None: no limit).
        max_prompt_length: If prompt + the longer response exceeds ``max_length``, the prompt is cut
            to this many tokens first (None: never cut the prompt).
        truncation_mode: Which end of the prompt to keep: ``keep_end`` or ``keep_start``.
        drop_prompts_longer_than: Drop pairs whose prompt has more tokens than this (the ORPO
            paper's filtering) instead of truncating them.
    """

    max_length: int | None = None
    max_prompt_length: int | None = None
    truncation_mode: str = "keep_end"
    drop_prompts_longer_than: int | None = None

    def __post_init__(self) -> None:
        if self.truncation_mode not in ("keep_end", "keep_start"):
            raise ConfigError(
                f"data.truncation_mode={self.truncation_mode!r} must be keep_end or keep_start"
            )
        for key in ("max_length", "max_prompt_length", "drop_prompts_longer_than"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{key}={value!r} must be a positive number of tokens")
        if (
            self.max_length is not None
            and self.max_prompt_length is not None
            and self.max_prompt_length >= self.max_length
        ):
            raise ConfigError(
                f"data.max_prompt_length ({self.max_prompt_length}) must be smaller than "
                f"data.max_length ({self.max_length})"
            )


def truncate_pair(
    prompt: list[int], chosen: list[int], rejected: list[int], limits: Truncation
) -> tuple[list[int], list[int], list[int]] | str:
    """Apply the limits to one tokenized pair.

    Args:
        prompt: Prompt token ids.
        chosen: Chosen response token ids.
        rejected: Rejected response token ids.
        limits: The limits.

    Returns:
        The truncated ``(prompt, chosen, rejected)``, or ``prompt_too_long`` /
        ``response_truncated_away`` when the pair must be dropped.
    """
    if (
        limits.drop_prompts_longer_than is not None
        and len(prompt) > limits.drop_prompts_longer_than
    ):
        return "prompt_too_long"
    if limits.max_length is None:
        return prompt, chosen, rejected
    mpl = limits.max_prompt_length
    if mpl is not None and len(prompt) + max(len(chosen), len(rejected)) > limits.max_length:
        prompt = prompt[-mpl:] if limits.truncation_mode == "keep_end" else prompt[:mpl]
    budget = max(0, limits.max_length - len(prompt))
    chosen, rejected = chosen[:budget], rejected[:budget]
    if not chosen or not rejected:
        return "response_truncated_away"
    return prompt, chosen, rejected


def _render(
    prompt: Text, chosen: Text, rejected: Text, tokenizer: PreTrainedTokenizerBase
) -> list[str]:
    """The texts to tokenize: prompt alone, prompt + chosen, prompt + rejected."""
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        return [prompt] + [
            prompt + r + ("" if r.endswith(eos) else eos) for r in (chosen, rejected)
        ]
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = [tokenizer.apply_chat_template(prompt + r, tokenize=False) for r in (chosen, rejected)]
    return [prompt_text, *full]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def tokenize_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    tokenizer: PreTrainedTokenizerBase,
    spec: FormatSpec,
    limits: Truncation,
    source: str,
) -> dict[str, list[Any]]:
    """``datasets.map`` function (batched, with indices): rows -> token ids + ``skip_reason``
    (+ ``reference`` text when ``spec.reference_column`` is set)."""
    out: dict[str, list[Any]] = {c: [] for c in (*COLUMNS, "skip_reason")}
    if spec.reference_column is not None:
        out[REFERENCE] = [None if v is None else str(v) for v in batch[spec.reference_column]]
    texts: list[str] = []
    kept: list[int] = []
    for i, idx in enumerate(indices):
        row = normalize_row({k: v[i] for k, v in batch.items()}, spec)
        if isinstance(row, str):
            out["skip_reason"].append(row)
            continue
        try:
            texts += _render(*row, tokenizer)
        except TemplateError as err:
            raise DataError(f"{source}: row {idx}: the chat template failed: {err}") from err
        out["skip_reason"].append("")
        kept.append(i)
    ids = tokenizer(texts, add_special_tokens=not spec.conversational)["input_ids"] if texts else []
    by_row = {i: ids[3 * j : 3 * j + 3] for j, i in enumerate(kept)}
    for i in range(len(indices)):
        pair: tuple[list[int], list[int], list[int]] | str = ([], [], [])
        if i in by_row:
            prompt_ids, full_chosen, full_rejected = by_row[i]
            n = min(
                _common_prefix(prompt_ids, full_chosen), _common_prefix(prompt_ids, full_rejected)
            )
            pair = truncate_pair(prompt_ids[:n], full_chosen[n:], full_rejected[n:], limits)
            if isinstance(pair, str):
                out["skip_reason"][i] = pair
                pair = ([], [], [])
        for column, value in zip(COLUMNS, pair):
            out[column].append(value)
    return out


def tokenize_split(
    raw: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    spec: FormatSpec,
    limits: Truncation,
    source: str,
    num_proc: int | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Tokenize a raw split once (cached by ``datasets``) and drop the unusable pairs.

    Args:
        raw: The raw split.
        tokenizer: The tokenizer (and its chat template for conversational data).
        spec: The resolved format.
        limits: Truncation limits.
        source: Name of the source and split, for messages.
        num_proc: Processes for ``datasets.map``.

    Returns:
        The dataset with only :data:`COLUMNS` (and :data:`REFERENCE` when the data has a
        reference answer), and the number of dropped pairs per reason.
    """
    tokenized = raw.map(
        tokenize_batch,
        batched=True,
        with_indices=True,
        remove_columns=raw.column_names,
        fn_kwargs={"tokenizer": tokenizer, "spec": spec, "limits": limits, "source": source},
        num_proc=num_proc,
        desc=f"Tokenizing {source}",
    )
    skipped = Counter(r for r in tokenized["skip_reason"] if r)
    kept = tokenized.filter(
        lambda reasons: [not r for r in reasons], input_columns="skip_reason", batched=True
    )
    return kept.remove_columns("skip_reason"), dict(sorted(skipped.items()))
