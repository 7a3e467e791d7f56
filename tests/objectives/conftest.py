"""Fixtures of the objective tests: TRL's own loss code, imported only when a test asks for it."""

import pytest


@pytest.fixture
def trl():
    """:mod:`tests.objectives.trl_reference` (the test is skipped if trl is not installed)."""
    return pytest.importorskip("tests.objectives.trl_reference")
