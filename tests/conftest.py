"""Shared fixtures; helper functions live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CORPUS, PCAPS, REPO, tshark_fields

__all__ = ["CORPUS", "PCAPS", "REPO", "tshark_fields"]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, or skip when this checkout has no shared folder beside it."""
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS
