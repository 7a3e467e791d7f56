"""The hook for padding-free packed pairs (``data.packing``), being added to prefopt: the
``+ packing`` ORPO row, skipped with a note while ``prefopt.data.packing`` is not importable.

The seam this expects (to be confirmed when packing is merged; only this file needs changing):

* ``prefopt.data.packing.PackedPreferenceCollator(pad_token_id, max_length)``: called on the
  rows ``PreferenceCollator`` takes (``prompt_input_ids``, ``chosen_input_ids``,
  ``rejected_input_ids``), it returns a batch that ``Scoring`` (hence ``batch_loss``) consumes
  unchanged, its 2B sequences in the ``[chosen; rejected]`` order of ``SequenceStats``, in rows of
  at most ``max_length`` tokens, without padding between sequences.
* ``prefopt.data.packing.packing_efficiency(lengths, capacity) -> float``: real tokens / slots
  when sequences of ``lengths`` tokens are packed into rows of ``capacity``.

The benchmark packs the same pairs per step as the length-grouped row (the same batches), into
rows that can hold the whole step (``capacity``), and measures the efficiency of the batches it
gets itself (real tokens / ``input_ids`` elements), so it does not depend on how the collator
places the sequences.
"""

from __future__ import annotations

from collections.abc import Callable

from .workload import PAD_ID, Pair, real_tokens

SIDES = ("chosen", "rejected")


def packing_seam() -> tuple[tuple[Callable, Callable] | None, str]:
    """``((PackedPreferenceCollator, packing_efficiency), "")``, or ``(None, why not)``."""
    try:
        from prefopt.data.packing import PackedPreferenceCollator, packing_efficiency
    except ImportError as err:  # the module, or one of the two names, is not there (yet)
        return None, f"`+ packing` skipped: prefopt.data.packing is not importable ({err})"
    return (PackedPreferenceCollator, packing_efficiency), ""


def capacity(batch_size: int, max_length: int) -> int:
    """Tokens of a packed row: room for the 2B rows of one step at ``max_length`` each."""
    return 2 * batch_size * max_length


def packed_batches(
    collator_cls: Callable, pairs: list[Pair], index: list[list[int]], row_tokens: int
) -> tuple[list[dict], float]:
    """The packed batches of the pairs at each ``index`` and their packing efficiency (real
    tokens / ``input_ids`` elements)."""
    collator = collator_cls(pad_token_id=PAD_ID, max_length=row_tokens)
    batches = [collator([pairs[i] for i in x]) for x in index]
    real = sum(real_tokens(pairs[i]) for x in index for i in x)
    return batches, real / sum(b["input_ids"].numel() for b in batches)


def epoch_efficiency(efficiency: Callable, pairs: list[Pair], row_tokens: int) -> float:
    """``packing_efficiency`` of the two rows (prompt + each response) of every pair."""
    prompt = [len(p["prompt_input_ids"]) for p in pairs]
    lengths = [n + len(p[f"{side}_input_ids"]) for n, p in zip(prompt, pairs) for side in SIDES]
    return float(efficiency(lengths, row_tokens))
