"""Fixtures of the evaluation tests (the models they build are in helpers.py)."""

import pytest

from prefopt.data import build_builtin_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_builtin_tokenizer()
