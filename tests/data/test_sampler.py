"""The batch sampler: seeded order, rank shares of one global batch, length grouping, resume."""

from __future__ import annotations

import random

import pytest
import torch

from prefopt.data import PreferenceSampler

_RNG = random.Random(0)
LENGTHS = [_RNG.randrange(5, 200) for _ in range(1003)]


def _epoch(**kwargs) -> list[list[int]]:
    return PreferenceSampler(LENGTHS, **kwargs).batches()


@pytest.mark.parametrize("group_by_length", [True, False])
def test_union_over_ranks_is_the_one_process_global_batch(group_by_length):
    kwargs = {"shuffle": True, "seed": 3, "group_by_length": group_by_length}
    single = _epoch(batch_size=16, **kwargs)
    ranks = [_epoch(batch_size=4, num_replicas=4, rank=r, **kwargs) for r in range(4)]
    assert all(len(r) == len(single) for r in ranks)
    for step, global_batch in enumerate(single):
        shares = [r[step] for r in ranks]
        assert sorted(sum(shares, [])) == sorted(global_batch)
        assert [len(s) for s in shares] == [4] * 4 or step == len(single) - 1


def test_every_row_once_per_epoch_and_order_from_seed_and_epoch_only():
    sampler = PreferenceSampler(LENGTHS, batch_size=16, seed=1)
    torch.manual_seed(123)
    first = list(sampler)
    torch.manual_seed(456)  # the global RNG does not matter
    assert list(sampler) == first == sum(sampler.batches(), [])
    assert sorted(first) == list(range(len(LENGTHS)))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(PreferenceSampler(LENGTHS, batch_size=16, seed=2)) != first


def test_group_by_length_pads_less():
    def padding(batches):
        return sum(
            max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches
        )

    grouped = _epoch(batch_size=16, group_by_length=True)
    plain = _epoch(batch_size=16, group_by_length=False)
    assert padding(grouped) < padding(plain) / 5


def test_no_shuffle_keeps_dataset_order():
    batches = _epoch(batch_size=100, shuffle=False)
    assert sum(batches, []) == list(range(len(LENGTHS)))
    assert [len(b) for b in batches] == [100] * 10 + [3]


def test_last_batch_drop_rules():
    # 1003 rows, global batch 40: 25 full batches and 3 rows left
    assert len(_epoch(batch_size=40, drop_last=True)) == 25
    assert len(_epoch(batch_size=40)) == 26
    # 2 ranks: the 3 leftover rows split 2 + 1
    assert [len(_epoch(batch_size=20, num_replicas=2, rank=r)[-1]) for r in (0, 1)] == [2, 1]
    # 4 ranks: fewer leftover rows than ranks, so that batch is dropped on every rank
    assert [len(_epoch(batch_size=10, num_replicas=4, rank=r)) for r in range(4)] == [25] * 4


def test_skip_batches_resumes_mid_epoch_once():
    sampler = PreferenceSampler(LENGTHS, batch_size=16, seed=5)
    full = list(sampler)
    sampler.skip_batches(7)
    assert len(sampler) == len(full) - 7 * 16
    assert list(sampler) == full[7 * 16 :]
    assert list(sampler) == full  # only the next iteration skips
    restored = PreferenceSampler(LENGTHS, batch_size=16)
    sampler.skip_batches(3)
    restored.load_state_dict(sampler.state_dict())
    assert list(restored) == full[3 * 16 :]
