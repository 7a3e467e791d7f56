"""Collate tokenized pairs into one [chosen; rejected] batch for a single forward pass."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

IGNORE_INDEX = -100


def checked_pad_id(pad_token_id: int | None) -> int:
    """The collators' padding id; ``ValueError`` when the tokenizer has none."""
    if pad_token_id is None:
        raise ValueError("pad_token_id is None: give the tokenizer a pad token")
    return pad_token_id


def pair_columns(rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """What every batch layout carries per pair: ``prompt_lengths`` LongTensor (B,), and
    ``ref_chosen_logps`` / ``ref_rejected_logps`` FloatTensor (B,) when every row has them."""
    columns = {"prompt_lengths": torch.tensor([len(r["prompt_input_ids"]) for r in rows])}
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        if all(r.get(key) is not None for r in rows):
            columns[key] = torch.tensor([float(r[key]) for r in rows], dtype=torch.float32)
    return columns


class PreferenceCollator:
    """Pad B pairs into 2B rows: rows 0..B-1 are prompt + chosen, rows B..2B-1 prompt + rejected.

    Both halves are padded (on the right) to one length T, so the module runs one forward over
    the concatenated batch. Labels are the input ids (not shifted) on response tokens and
    ``IGNORE_INDEX`` (-100) on prompt and padding tokens.

    Args:
        pad_token_id: Id written on padding positions of ``input_ids``.
        pad_to_multiple_of: Round T up to a multiple of this (None: the longest row).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = checked_pad_id(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate the rows of the tokenized dataset (``docs/_interfaces.md``).

        Args:
            rows: B dicts with ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``
                and optionally ``ref_chosen_logps``, ``ref_rejected_logps``.

        Returns:
            ``input_ids``, ``attention_mask``, ``labels``: LongTensor (2B, T); ``prompt_lengths``:
            LongTensor (B,); and ``ref_chosen_logps``, ``ref_rejected_logps``: FloatTensor (B,)
            when every row has them.
        """
        prompts = [list(r["prompt_input_ids"]) for r in rows]
        responses = [list(r["chosen_input_ids"]) for r in rows]
        responses += [list(r["rejected_input_ids"]) for r in rows]
        prompts = prompts + prompts  # (2B,) chosen first, then rejected
        lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(lengths), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(lengths), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            n, m = len(prompt), len(response)
            input_ids[i, : n + m] = torch.tensor(prompt + response, dtype=torch.long)
            labels[i, n : n + m] = torch.tensor(response, dtype=torch.long)
            attention_mask[i, : n + m] = 1
        batch = {
            "input_ids": input_ids,  # (2B, T)
            "attention_mask": attention_mask,  # (2B, T)
            "labels": labels,  # (2B, T)
        }
        return {**batch, **pair_columns(rows)}
