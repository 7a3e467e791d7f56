"""The ``+ packing`` ORPO row: prefopt's padding-free packed pairs (``data.packing``).

The benchmark packs the same pairs per step as the length-grouped row (the same batches) with
``prefopt.data.packing.PackedPreferenceCollator`` into rows of prefopt's default capacity
(``resolve_pack_length``: 4 x ``max_length``), and measures the efficiency of the batches it gets
(real tokens / ``input_ids`` elements); over an epoch, ``packing_efficiency`` of the grouped
batches' sequence lengths. The batches go through ``Scoring`` / ``batch_loss`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from .workload import PAD_ID, Pair, real_tokens


def packing_seam() -> tuple[tuple[Callable, Callable] | None, str]:
    """``((PackedPreferenceCollator, packing_efficiency), "")``, or ``(None, why not)``."""
    try:
        from prefopt.data.packing import PackedPreferenceCollator, packing_efficiency
    except ImportError as err:  # an older prefopt
        return None, f"`+ packing` skipped: prefopt.data.packing is not importable ({err})"
    return (PackedPreferenceCollator, packing_efficiency), ""


def capacity(batch_size: int, max_length: int) -> int:
    """Tokens of a packed row: prefopt's default (``data.pack_length: null``)."""
    from prefopt.data.packing import resolve_pack_length

    return resolve_pack_length(None, max_length)


def packed_batches(
    collator_cls: Callable, pairs: list[Pair], index: list[list[int]], row_tokens: int
) -> tuple[list[dict], float]:
    """The packed batches of the pairs at each ``index`` and their packing efficiency (real
    tokens / ``input_ids`` elements)."""
    collator = collator_cls(pad_token_id=PAD_ID, pack_length=row_tokens)
    batches = [collator([pairs[i] for i in x]) for x in index]
    real = sum(real_tokens(pairs[i]) for x in index for i in x)
    return batches, real / sum(b["input_ids"].numel() for b in batches)


def epoch_efficiency(
    efficiency: Callable, pairs: list[Pair], batches: list[list[int]], row_tokens: int
) -> float:
    """``packing_efficiency`` of the sequences of each batch (prompt + each response)."""
    from prefopt.data.packing import pair_sequence_lengths

    lengths = [pair_sequence_lengths([pairs[i] for i in batch]) for batch in batches]
    return float(efficiency(lengths, row_tokens))
