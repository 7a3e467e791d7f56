"""Rows to tensors: preference formats, tokenization, collation, sampling, and the DataModule."""

from prefopt.data.builtin import builtin_splits
from prefopt.data.collate import IGNORE_INDEX, PreferenceCollator
from prefopt.data.datamodule import PreferenceDataModule
from prefopt.data.sampler import PreferenceSampler
from prefopt.data.tokenize import Truncation
from prefopt.data.tokenizer import build_builtin_tokenizer, load_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "PreferenceCollator",
    "PreferenceDataModule",
    "PreferenceSampler",
    "Truncation",
    "build_builtin_tokenizer",
    "builtin_splits",
    "load_tokenizer",
]
