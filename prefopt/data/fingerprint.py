"""Content hashes of tokenized pairs and tokenizers (for the reference log-prob cache's key).

Each hash reads the content itself, never a path or a ``datasets`` cache fingerprint: the same
token ids give the same hash wherever the data came from, and one changed id changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

TOKEN_COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")


def digest_of(payload: Mapping[str, Any]) -> str:
    """sha256 (hex) of a JSON-serialisable mapping, keys sorted."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_fingerprint(dataset: Dataset, columns: tuple[str, ...] = TOKEN_COLUMNS) -> str:
    """sha256 (hex) of the token ids of every row, in dataset order.

    Args:
        dataset: tokenized pairs (``docs/_interfaces.md``).
        columns: the list-of-int columns hashed, each as its row lengths then its flat ids.
    """
    table = dataset.with_format("arrow")[:]
    digest = hashlib.sha256(f"rows:{len(dataset)}".encode())
    for column in columns:
        lengths = pc.list_value_length(table[column]).to_numpy(zero_copy_only=False)
        values = pc.list_flatten(table[column]).to_numpy(zero_copy_only=False)
        digest.update(f"\n{column}\n".encode())
        digest.update(np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 (hex) of what makes a tokenizer's ids: its class, vocabulary (added tokens
    included), special tokens and chat template."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    return digest_of(
        {
            "class": type(tokenizer).__name__,
            "vocab": vocab,
            "special_tokens": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
            "chat_template": getattr(tokenizer, "chat_template", None),
        }
    )
