"""Weighted means of many named metrics in one torchmetrics state (one sync for all of them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


class MeanMetrics(Metric):
    """Weighted means of named values, correct across batches and devices.

    ``update`` takes ``{name: value}`` where a (B,) value counts as B samples of weight 1 and a
    () value as one sample of weight ``weights[name]`` (default 1). All names share two state
    vectors, so a distributed sync is two all-reduces whatever the number of metrics.
    """

    full_state_update = False

    def __init__(self, names: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = list(names)
        self.add_state("sums", torch.zeros(len(self.names), dtype=torch.float64), "sum")
        self.add_state("weights", torch.zeros(len(self.names), dtype=torch.float64), "sum")

    def update(self, values: Mapping[str, Tensor], weights: Mapping[str, Tensor] | None = None):
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"metrics not declared to MeanMetrics: {sorted(unknown)}")
        weights = weights or {}
        sums, counts = [], []
        for name in self.names:
            value = values.get(name)
            if value is None:
                sums.append(torch.zeros((), device=self.sums.device))
                counts.append(torch.zeros((), device=self.sums.device))
            elif value.ndim == 0:
                w = weights.get(name, torch.ones((), device=value.device))
                sums.append(value.detach().double() * w)
                counts.append(torch.as_tensor(w, device=value.device).double())
            else:
                sums.append(value.detach().double().sum())
                counts.append(torch.tensor(value.numel(), device=value.device).double())
        # out of place: states reset inside inference mode (a validation) stay usable outside it
        self.sums = self.sums + torch.stack(sums).double()
        self.weights = self.weights + torch.stack(counts).double()

    def compute(self) -> dict[str, Tensor]:
        means = (self.sums / self.weights).float()
        return {n: means[i] for i, n in enumerate(self.names) if self.weights[i] > 0}
