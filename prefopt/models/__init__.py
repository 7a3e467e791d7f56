"""Tensors to log-probs: model loading (tiny or pretrained) and the log-prob function."""

from prefopt.models.load import build_tiny_model, load_model, load_pretrained_model
from prefopt.models.logps import SequenceStats, sequence_stats

__all__ = [
    "SequenceStats",
    "build_tiny_model",
    "load_model",
    "load_pretrained_model",
    "sequence_stats",
]
