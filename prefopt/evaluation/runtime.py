"""Keeping evaluation harmless: a fixed sample split over ranks, the gathered results, the
random generators forked and restored, and the model's train/eval flags restored."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def sample_positions(num_rows: int, num_prompts: int, seed: int) -> list[int]:
    """The eval rows to evaluate: ``num_prompts`` of ``num_rows`` drawn with ``seed`` (its own
    generator, so the global ones are untouched), in dataset order; all rows if fewer."""
    if num_prompts >= num_rows:
        return list(range(num_rows))
    return sorted(random.Random(seed).sample(range(num_rows), num_prompts))


def shard(num_items: int, world_size: int, rank: int) -> list[int]:
    """This rank's positions of ``num_items``: rank r gets r, r + W, r + 2W... of the list padded
    (by wrapping around) to a multiple of W, so every rank has as many items and calls the model
    as often (a sharded model needs every rank in each forward). Positions >= ``num_items`` are
    the padding: evaluated, then dropped by :func:`gather`."""
    padded = -(-num_items // world_size) * world_size if num_items else 0
    return list(range(rank, padded, world_size))


def gather(items: list[tuple[int, Any]], num_items: int, world_size: int) -> list[Any]:
    """Every rank's ``(position, item)`` pairs on every rank (``all_gather_object``), padding
    dropped, in position order."""
    parts = [items]
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        parts = [None] * world_size
        dist.all_gather_object(parts, items)
    found = {position: item for part in parts for position, item in part if position < num_items}
    return [found[p] for p in sorted(found)]


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run the body with the torch (CPU and current CUDA device), Python and NumPy generators
    seeded with ``seed``, and put back the states they had before, so training draws the same
    dropout masks and data seeds as a run without evaluation."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode, then restore each submodule's own flag."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
