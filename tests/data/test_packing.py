"""Packed batches: the packer, the layout by hand, the same pairs per step as padded batches
(on one rank and two), the packing efficiency on real and synthetic lengths, and bad lengths."""

from __future__ import annotations

import math
import random
import types

import pytest
import torch

from prefopt.data import IGNORE_INDEX, PreferenceDataModule, PreferenceSampler
from prefopt.data.packing import (
    PackedPreferenceCollator,
    pack_rows,
    packing_efficiency,
    pair_sequence_lengths,
)
from prefopt.errors import ConfigError

X = IGNORE_INDEX
ROWS = [
    {"prompt_input_ids": [1, 2, 3], "chosen_input_ids": [4, 5], "rejected_input_ids": [6]},
    {"prompt_input_ids": [7], "chosen_input_ids": [8], "rejected_input_ids": [9, 10, 11, 12]},
]
REAL_FILES = [
    "llamafactory_dpo_en_demo_conversational_explicit.jsonl",
    "orca_dpo_pairs_conversational_explicit.jsonl",
]


def test_balanced_rows_beat_first_fit_decreasing_when_they_fit():
    """Lengths 5 4 3 3 2 1, capacity 8: first-fit decreasing needs 3 rows (8, 8, 2: a 3 x 8
    rectangle); the same items in 3 rows of 6 (3 x 6) waste nothing."""
    assert pack_rows([5, 4, 3, 3, 2, 1], 8) == [[0, 5], [1, 4], [2, 3]]
    assert pack_rows([9, 1], 8) == [[0], [1]]  # the capacity grows to the longest item only
    assert pack_rows([], 8) == []


def test_every_item_once_and_no_row_over_capacity():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randrange(1, 300) for _ in range(rng.randrange(1, 40))]
        rows = pack_rows(lengths, 512)
        assert sorted(sum(rows, [])) == list(range(len(lengths)))
        assert max(sum(lengths[i] for i in row) for row in rows) <= 512
        assert pack_rows(lengths, 512) == rows  # deterministic


def test_packed_layout_by_hand():
    """Sequences: 0 = [1 2 3 | 4 5], 1 = [7 | 8], 2 = [1 2 3 | 6], 3 = [7 | 9 10 11 12] (chosen
    first); rows of <= 8 tokens: [0], [1, 2], [3], 6 wide (16 real tokens of 18)."""
    batch = PackedPreferenceCollator(pad_token_id=0, pack_length=8)(ROWS)
    expected = {
        "input_ids": [[1, 2, 3, 4, 5, 0], [7, 8, 1, 2, 3, 6], [7, 9, 10, 11, 12, 0]],
        "labels": [[X, X, X, 4, 5, X], [X, 8, X, X, X, 6], [X, 9, 10, 11, 12, X]],
        "position_ids": [[0, 1, 2, 3, 4, 0], [0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0]],
        "sequence_ids": [[0, 0, 0, 0, 0, -1], [1, 1, 2, 2, 2, 2], [3, 3, 3, 3, 3, -1]],
        "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]],
        "prompt_lengths": [3, 1],
    }
    assert set(batch) == set(expected)
    for key, value in expected.items():
        assert batch[key].tolist() == value, key
        assert batch[key].dtype == torch.long
    assert packing_efficiency([pair_sequence_lengths(ROWS)], 8) == pytest.approx(16 / 18)
    one_row = PackedPreferenceCollator(pad_token_id=0)(ROWS)  # no capacity: a single row
    assert one_row["input_ids"].shape == (1, 16)


def test_reference_logps_travel_with_the_pairs():
    rows = [dict(r, ref_chosen_logps=-1.5 - i, ref_rejected_logps=-2.0) for i, r in enumerate(ROWS)]
    batch = PackedPreferenceCollator(pad_token_id=0, pack_length=8)(rows)
    assert batch["ref_chosen_logps"].tolist() == [-1.5, -2.5]
    assert batch["ref_rejected_logps"].dtype == torch.float32


def _sequences(batch: dict[str, torch.Tensor]) -> dict[int, tuple[int, ...]]:
    """``{sequence index: its token ids}`` of a packed batch."""
    ids, seq = batch["input_ids"], batch["sequence_ids"]
    return {int(s): tuple(ids[seq == s].tolist()) for s in seq.unique() if s >= 0}


def _padded_sequences(batch: dict[str, torch.Tensor]) -> dict[int, tuple[int, ...]]:
    mask = batch["attention_mask"].bool()
    return {i: tuple(row[m].tolist()) for i, (row, m) in enumerate(zip(batch["input_ids"], mask))}


@pytest.mark.parametrize("world", [1, 2])
def test_the_packed_loader_yields_the_padded_loaders_pairs_step_by_step(builtin_tokenizer, world):
    kwargs = {"batch_size": 4, "builtin": {"train_size": 40, "eval_size": 10}, "seed": 7}
    for rank in range(world):
        loaders = []
        for packing in (False, True):
            dm = PreferenceDataModule(builtin_tokenizer, packing=packing, **kwargs)
            dm.trainer = types.SimpleNamespace(world_size=world, global_rank=rank)
            dm.setup()
            loaders.append((dm.train_dataloader(), dm.val_dataloader()))
        for plain_loader, packed_loader in zip(*loaders):
            plain, packed = list(plain_loader), list(packed_loader)
            assert len(plain) == len(packed) > 0  # the same steps on every rank
            for a, b in zip(plain, packed):
                assert _sequences(b) == _padded_sequences(a)
                assert torch.equal(a["prompt_lengths"], b["prompt_lengths"])
                assert b["input_ids"].numel() <= a["input_ids"].numel()
            cells = [sum(b["input_ids"].numel() for b in loader) for loader in (plain, packed)]
            assert cells[1] < cells[0]


def _epoch_efficiency(datamodule: PreferenceDataModule, batch_size: int) -> float:
    dataset = datamodule.train_dataset
    sampler = PreferenceSampler(datamodule.lengths(dataset), batch_size, seed=0)
    rows = dataset.to_list()
    batches = [pair_sequence_lengths([rows[i] for i in b]) for b in sampler.batches()]
    return packing_efficiency(batches, datamodule.pack_length)


@pytest.mark.parametrize("name", REAL_FILES)
def test_at_least_97_percent_real_tokens_on_real_preference_data(phi3, shared_data, name):
    """The shared files tokenized with Phi-3, cut at max_length 1024, rows of the default
    4 x 1024 tokens, batches as the training sampler draws them."""
    datamodule = PreferenceDataModule(
        phi3, path=str(shared_data / name), max_length=1024, max_prompt_length=512, packing=True
    )
    datamodule.setup()
    assert datamodule.pack_length == 4096
    for batch_size in (4, 8, 16):
        assert _epoch_efficiency(datamodule, batch_size) >= 0.97, batch_size


def test_at_least_97_percent_real_tokens_on_log_normal_lengths():
    """Synthetic pairs as the benchmark draws them (median prompt 128, responses 192, sigma
    0.8, cut at 1024 with a 512-token prompt budget), 8 pairs per batch, rows of 4096."""
    g = torch.Generator().manual_seed(0)

    def draw(median: float) -> int:
        return max(2, int(math.exp(math.log(median) + 0.8 * float(torch.randn(1, generator=g)))))

    batches = []
    for _ in range(100):
        prompts = [min(draw(128), 512) for _ in range(8)]
        chosen = [p + min(draw(192), 1024 - p) for p in prompts]
        rejected = [p + min(draw(192), 1024 - p) for p in prompts]
        batches.append(chosen + rejected)  # the 2B sequence lengths, chosen first
    assert packing_efficiency(batches, 4096) >= 0.97


def test_pack_length_must_hold_the_longest_sequence(builtin_tokenizer):
    with pytest.raises(ConfigError, match=r"data.pack_length \(32\) must be at least data.max_l"):
        PreferenceDataModule(
            builtin_tokenizer, max_length=64, max_prompt_length=48, packing=True, pack_length=32
        )
    with pytest.raises(ConfigError, match="data.pack_length=0 must be a whole number of tokens"):
        PreferenceDataModule(builtin_tokenizer, packing=True, pack_length=0)
    assert PreferenceDataModule(builtin_tokenizer, max_length=None).pack_length is None
