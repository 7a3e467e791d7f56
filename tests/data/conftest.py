"""Fixtures of the data tests: the built-in tokenizer, the real Phi-3 tokenizer and data (skipped
when ``../shared`` is absent), small fixture files, and a private ``datasets`` cache."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from transformers import PreTrainedTokenizerBase

from prefopt.data import build_builtin_tokenizer, load_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).parents[2] / ".." / "shared"
PHI3 = SHARED / "tokenizers" / "phi-3-mini-4k-instruct"
PREFERENCE = SHARED / "data" / "preference"

datasets.disable_progress_bars()


@pytest.fixture(scope="session")
def builtin_tokenizer() -> PreTrainedTokenizerBase:
    return build_builtin_tokenizer()


@pytest.fixture(scope="session")
def phi3() -> PreTrainedTokenizerBase:
    if not PHI3.is_dir():
        pytest.skip(f"no Phi-3 tokenizer at {PHI3}")
    return load_tokenizer(str(PHI3))


@pytest.fixture
def shared_data() -> Path:
    if not PREFERENCE.is_dir():
        pytest.skip(f"no shared preference data at {PREFERENCE}")
    return PREFERENCE


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    """A fresh ``datasets`` cache per test (nothing written to the user's HF cache)."""
    return str(tmp_path / "hf_cache")
