"""Padding-free packed pairs (``data.packing``): the 2B sequences of a batch in as few rows as fit.

A batch is still ``data.batch_size`` pairs per rank, drawn by the same
:class:`~prefopt.data.sampler.PreferenceSampler` (seeded, rank-sharded, same global batches):
packing changes how those pairs are laid out, never which pairs make a step. So the loss
normalisation, the metrics and the learning-rate schedule mean what they mean unpacked.

Layout of one packed batch (:class:`PackedPreferenceCollator`): the sequences ``prompt_i +
chosen_i`` (sequence ``i``) and ``prompt_i + rejected_i`` (sequence ``B + i``) are placed end to
end in R rows of at most ``pack_length`` tokens (:func:`pack_rows`), each with its own position
ids (0, 1, ...) and its sequence number in ``sequence_ids``; the model sees a block-diagonal
causal mask built from those (``prefopt.models.packed``), so no token attends across sequences,
and :func:`prefopt.models.logps.sequence_stats` maps every scored position back to its sequence:
the per-sequence results come out in the usual (2B,) order, chosen first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from prefopt.data.collate import IGNORE_INDEX, checked_pad_id, pair_columns
from prefopt.errors import ConfigError

# a balanced packing may use up to this many rows more than first-fit decreasing needs
EXTRA_ROWS = 2
# moves or swaps tried per candidate packing to shorten its longest row
MAX_IMPROVEMENTS = 64
# data.pack_length: null packs rows of this many times data.max_length (>= 98 % real tokens on
# the shared real data at 4+ pairs per batch; tests/data/test_packing.py)
PACK_LENGTH_FACTOR = 4


def _first_fit_decreasing(lengths: Sequence[int], order: list[int], capacity: int):
    rows: list[list[int]] = []
    loads: list[int] = []
    for i in order:
        for r, load in enumerate(loads):
            if load + lengths[i] <= capacity:
                rows[r].append(i)
                loads[r] += lengths[i]
                break
        else:
            rows.append([i])
            loads.append(lengths[i])
    return rows, loads


def _longest_first_balanced(lengths: Sequence[int], order: list[int], num_rows: int):
    rows: list[list[int]] = [[] for _ in range(num_rows)]
    loads = [0] * num_rows
    for i in order:  # each item to the least loaded row (LPT scheduling)
        r = min(range(num_rows), key=loads.__getitem__)
        rows[r].append(i)
        loads[r] += lengths[i]
    return rows, loads


def _shorten_longest_row(lengths: Sequence[int], rows: list[list[int]]) -> list[list[int]]:
    """Local search: move one item out of the longest row, or swap it for a shorter one of
    another row, as long as that shortens the longest row (never past any row's old length)."""
    loads = [sum(lengths[i] for i in row) for row in rows]
    for _ in range(MAX_IMPROVEMENTS):
        m = max(range(len(rows)), key=loads.__getitem__)
        best = None  # (new longer of the two rows, other row, item out, item in or None)
        for r, row in enumerate(rows):
            for a in rows[m] if r != m else ():
                for b in [*row, None]:
                    moved = lengths[a] - (0 if b is None else lengths[b])
                    longer = max(loads[m] - moved, loads[r] + moved)
                    if moved > 0 and longer < loads[m] and (best is None or longer < best[0]):
                        best = (longer, r, a, b)
        if best is None:
            break
        _, r, a, b = best
        rows[m].remove(a), rows[r].append(a)
        if b is not None:
            rows[r].remove(b), rows[m].append(b)
        moved = lengths[a] - (0 if b is None else lengths[b])
        loads[m], loads[r] = loads[m] - moved, loads[r] + moved
    return rows


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin items into rows of at most ``capacity`` tokens, with a rectangle that wastes little.

    First-fit decreasing gives the fewest rows it finds; the items are then also spread over
    that many rows (and up to ``EXTRA_ROWS`` more) longest first, each to the least loaded row.
    Each candidate's longest row is shortened by moving or swapping single items; the one whose
    rectangle (rows x longest row) is smallest wins, ties keeping fewer rows. Deterministic.

    Args:
        lengths: tokens of each item.
        capacity: the most tokens a row may hold (raised to the longest item if shorter).

    Returns:
        The item indices of each row, ascending (rows in the order of their first item).
    """
    if not lengths:
        return []
    capacity = max(capacity, max(lengths))
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    first_fit = _first_fit_decreasing(lengths, order, capacity)[0]
    candidates = [first_fit]
    for num_rows in range(len(first_fit), min(len(first_fit) + EXTRA_ROWS, len(lengths)) + 1):
        rows, loads = _longest_first_balanced(lengths, order, num_rows)
        if max(loads) <= capacity:
            candidates.append(rows)
    best, best_area = [], math.inf
    for rows in candidates:
        rows = _shorten_longest_row(lengths, [row for row in rows if row])
        area = len(rows) * max(sum(lengths[i] for i in row) for row in rows)
        if area < best_area:
            best, best_area = rows, area
    return sorted(sorted(row) for row in best)


def resolve_pack_length(pack_length: int | None, max_length: int | None) -> int | None:
    """Row capacity of packed batches: ``pack_length``, by default ``PACK_LENGTH_FACTOR`` x
    ``max_length`` (``None``, one row per batch, when neither is set).

    Raises:
        ConfigError: ``pack_length`` is not a whole number, or shorter than ``max_length``.
    """
    if pack_length is None:
        return None if max_length is None else PACK_LENGTH_FACTOR * max_length
    if isinstance(pack_length, bool) or not isinstance(pack_length, int) or pack_length < 1:
        raise ConfigError(f"data.pack_length={pack_length!r} must be a whole number of tokens")
    if max_length is not None and pack_length < max_length:
        raise ConfigError(
            f"data.pack_length ({pack_length}) must be at least data.max_length ({max_length}): "
            "a packed row holds at least the longest sequence"
        )
    return pack_length


def pair_sequence_lengths(rows: Sequence[dict[str, Any]]) -> list[int]:
    """(2B,) tokens of the sequences of B tokenized pairs: prompt + chosen, then + rejected."""
    prompts = [len(r["prompt_input_ids"]) for r in rows]
    chosen = [p + len(r["chosen_input_ids"]) for p, r in zip(prompts, rows)]
    return chosen + [p + len(r["rejected_input_ids"]) for p, r in zip(prompts, rows)]


def packing_efficiency(batches: Iterable[Sequence[int]], pack_length: int | None) -> float:
    """Real tokens / the tokens of the packed rows (rows x row width), over several batches.

    Args:
        batches: for each batch, the lengths of its sequences (:func:`pair_sequence_lengths`).
        pack_length: the row capacity (``None``: one row per batch, efficiency 1).

    Returns:
        A fraction in (0, 1]: what :class:`PackedPreferenceCollator` achieves on those batches.
    """
    real = capacity = 0
    for lengths in batches:
        if not lengths:
            continue
        rows = pack_rows(lengths, pack_length or sum(lengths))
        real += sum(lengths)
        capacity += len(rows) * max(sum(lengths[i] for i in row) for row in rows)
    return real / capacity if capacity else 1.0


class PackedPreferenceCollator:
    """Pack the 2B sequences of B pairs end to end into R rows of at most ``pack_length`` tokens.

    Args:
        pad_token_id: Id written on the padding at the end of the shorter rows.
        pack_length: Tokens per row at most (``None``: all sequences in one row). A sequence
            longer than it gets a row of its own length.
    """

    def __init__(self, pad_token_id: int, pack_length: int | None = None) -> None:
        if pack_length is not None and pack_length < 1:
            raise ValueError(f"pack_length must be >= 1 tokens, got {pack_length}")
        self.pad_token_id = checked_pad_id(pad_token_id)
        self.pack_length = pack_length

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate the rows of the tokenized dataset (``docs/_interfaces.md``, packed batch).

        Args:
            rows: B dicts with ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``
                and optionally ``ref_chosen_logps``, ``ref_rejected_logps``.

        Returns:
            ``input_ids``, ``labels`` (unshifted: response token ids, -100 elsewhere),
            ``attention_mask`` (1 on real tokens: counts them, it is not the model's mask),
            ``position_ids`` (0.. within each sequence, 0 on padding) and ``sequence_ids``
            (0..2B-1, chosen i -> i, rejected i -> B + i, -1 on padding): LongTensor (R, L);
            ``prompt_lengths``: LongTensor (B,); ``ref_chosen_logps``, ``ref_rejected_logps``:
            FloatTensor (B,) when every row has them.
        """
        prompts = [list(r["prompt_input_ids"]) for r in rows]
        responses = [list(r["chosen_input_ids"]) for r in rows]
        responses += [list(r["rejected_input_ids"]) for r in rows]
        prompts = prompts + prompts  # (2B,) chosen first, then rejected
        lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
        packed = pack_rows(lengths, self.pack_length or sum(lengths))
        width = max(sum(lengths[i] for i in row) for row in packed)
        shape = (len(packed), width)  # (R, L)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        sequence_ids = torch.full(shape, -1, dtype=torch.long)
        for r, row in enumerate(packed):
            start = 0
            for s in row:
                n, m = len(prompts[s]), len(responses[s])
                span = slice(start, start + n + m)
                input_ids[r, span] = torch.tensor(prompts[s] + responses[s], dtype=torch.long)
                labels[r, start + n : start + n + m] = torch.tensor(responses[s], dtype=torch.long)
                position_ids[r, span] = torch.arange(n + m)
                sequence_ids[r, span] = s
                start += n + m
        batch = {
            "input_ids": input_ids,  # (R, L)
            "attention_mask": (sequence_ids >= 0).long(),  # (R, L)
            "labels": labels,  # (R, L)
            "position_ids": position_ids,  # (R, L)
            "sequence_ids": sequence_ids,  # (R, L)
        }
        return {**batch, **pair_columns(rows)}
