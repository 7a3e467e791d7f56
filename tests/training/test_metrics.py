"""MeanMetrics: per-pair values count once each, batch scalars by their weight, across batches."""

import pytest
import torch
from torch.testing import assert_close

from prefopt.training.metrics import MeanMetrics


def test_per_pair_values_and_weighted_scalars_pool_across_batches():
    """Batch 1: accuracies (1, 0, 1), nll 2.0 over 10 tokens. Batch 2: accuracies (0,), nll 4.0
    over 30 tokens, and no loss. accuracies = 2 / 4 = 0.5 (every pair counts once, not the mean
    of the batch means 0.333); nll = (2 * 10 + 4 * 30) / 40 = 3.5; loss = its only value, 1.5."""
    metrics = MeanMetrics(["accuracies", "nll", "loss"])
    metrics.update(
        {
            "accuracies": torch.tensor([1.0, 0.0, 1.0]),
            "nll": torch.tensor(2.0),
            "loss": torch.tensor(1.5),
        },
        {"nll": torch.tensor(10.0)},
    )
    metrics.update(
        {"accuracies": torch.tensor([0.0]), "nll": torch.tensor(4.0)}, {"nll": torch.tensor(30.0)}
    )
    out = metrics.compute()
    assert_close(out["accuracies"], torch.tensor(0.5))
    assert_close(out["nll"], torch.tensor(3.5))
    assert_close(out["loss"], torch.tensor(1.5))


def test_a_metric_never_updated_is_absent_and_reset_clears():
    metrics = MeanMetrics(["a", "b"])
    metrics.update({"a": torch.tensor([2.0, 4.0])})
    assert set(metrics.compute()) == {"a"}
    metrics.reset()
    metrics.update({"a": torch.tensor([1.0])})
    assert_close(metrics.compute()["a"], torch.tensor(1.0))


def test_forward_returns_this_batch_only_and_accumulates_nothing_extra():
    """What training_step logs: each call's own batch (dist_sync_on_step on several devices)."""
    metrics = MeanMetrics(["a"])
    assert_close(metrics({"a": torch.tensor([1.0, 3.0])})["a"], torch.tensor(2.0))
    assert_close(metrics({"a": torch.tensor([10.0])})["a"], torch.tensor(10.0))
    assert_close(metrics.compute()["a"], torch.tensor(14.0 / 3))


def test_unknown_names_are_refused():
    with pytest.raises(KeyError, match="metrics not declared to MeanMetrics: \\['typo'\\]"):
        MeanMetrics(["a"]).update({"typo": torch.tensor(1.0)})
