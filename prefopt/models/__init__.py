"""Tensors to log-probs: building the model (tiny or pretrained, LoRA, surgery), the one log-prob
function, reference providers, and saving in the transformers format."""

from prefopt.models.build import build_model, build_tokenizer
from prefopt.models.load import build_tiny_model, load_model, load_pretrained_model
from prefopt.models.logps import Scoring, SequenceStats, sequence_stats
from prefopt.models.reference import make_reference, score_pairs

__all__ = [
    "Scoring",
    "SequenceStats",
    "build_model",
    "build_tiny_model",
    "build_tokenizer",
    "load_model",
    "load_pretrained_model",
    "make_reference",
    "score_pairs",
    "sequence_stats",
]
