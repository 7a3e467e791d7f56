"""Sampler: seeded order, optional length grouping, and rank shares of one global batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

MEGABATCH_FACTOR = 50


class PreferenceSampler(Sampler[int]):
    """Yield this rank's row indices, batch after batch (a DataLoader ``sampler`` with the same
    ``batch_size``, so Lightning calls :meth:`set_epoch` on it each epoch).

    The order is computed for the whole world, then split: global batches of
    ``batch_size * num_replicas`` rows are formed first, and rank r gets rows r, r + R, r + 2R... of
    each (R = ``num_replicas``). So the union over ranks of step k's batches is exactly the global
    batch k that one process with batch size ``batch_size * R`` would see. The order depends only on
    ``seed`` and the epoch (its own ``torch.Generator``), never on the global torch RNG, so every
    objective trained with the same seed sees the same data.

    With ``group_by_length``, rows are sorted by length (longest first) within mega-batches of
    ``50`` global batches and the global batches are then shuffled: less padding, and each row is
    still seen once per epoch in a random batch.

    Args:
        lengths: Length of each row (prompt + longer response), for grouping.
        batch_size: Rows per batch on this rank.
        shuffle: Shuffle rows and batches each epoch; False keeps dataset order.
        seed: Base seed; epoch e uses ``seed + e``.
        group_by_length: Group rows of similar length (only with ``shuffle``).
        num_replicas: Number of ranks R.
        rank: This rank.
        drop_last: Drop the last global batch when it is not full. Otherwise it is split like
            the others, and with R > 1 it is dropped only if it has fewer than R rows (so every
            rank yields the same number of batches).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_by_length = group_by_length
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on (Lightning calls it)."""
        self.epoch = epoch

    def skip_batches(self, num_batches: int) -> None:
        """Skip the first ``num_batches`` batches of the next iteration (to resume mid-epoch)."""
        self._skip = num_batches

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "skip": self._skip, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._skip, self.seed = state["epoch"], state["skip"], state["seed"]

    def global_batches(self) -> list[list[int]]:
        """All global batches of the current epoch, as one process of batch size B * R sees them."""
        n = len(self.lengths)
        global_size = self.batch_size * self.num_replicas
        if not self.shuffle:
            order = list(range(n))
            return [order[i : i + global_size] for i in range(0, n, global_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator)
        if self.group_by_length:
            mega = global_size * MEGABATCH_FACTOR
            chunks = [order[i : i + mega] for i in range(0, n, mega)]
            # stable sort, longest first, within each mega-batch
            order = torch.cat(
                [c[torch.sort(-self.lengths[c], stable=True).indices] for c in chunks]
            )
        order = order.tolist()
        batches = [order[i : i + global_size] for i in range(0, n, global_size)]
        full = [b for b in batches if len(b) == global_size]
        rest = batches[len(full) :]
        if self.group_by_length:
            full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return full + rest

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (``batch_size`` rows each but the last)."""
        keep = []
        for batch in self.global_batches():
            full = len(batch) == self.batch_size * self.num_replicas
            if full or (not self.drop_last and len(batch) >= self.num_replicas):
                keep.append(batch[self.rank :: self.num_replicas])
        return keep

    def __iter__(self) -> Iterator[int]:
        batches = self.batches()[self._skip :]
        self._skip = 0
        for batch in batches:
            yield from batch

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches()[self._skip :])
