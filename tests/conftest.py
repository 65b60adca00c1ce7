"""Shared fixtures; helper functions live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CORPUS, CORPUS_ABSENT, PCAPS, REPO, in_corpus, need_corpus, tshark_fields

__all__ = ["CORPUS", "PCAPS", "REPO", "tshark_fields"]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, or skip when this checkout has no shared folder beside it."""
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_ABSENT)
    return CORPUS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corpus: reads ../shared/corpus (HELLOSCOPE_CORPUS); skips without it")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what reads the public corpus, so a fresh-clone run (.ci/run) can select just that cheaply."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        module = getattr(item, "module", None)
        if (
            "corpus" in getattr(item, "fixturenames", ())
            or any(in_corpus(value) for value in params.values())
            or getattr(module, "CORPUS", None) is CORPUS
        ):
            item.add_marker(pytest.mark.corpus)


@pytest.fixture(autouse=True)
def _corpus_parameters_present(request: pytest.FixtureRequest) -> None:
    """A test parametrized with corpus files skips, before it runs anything, when one of them is absent."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    for value in params.values():
        if in_corpus(value):
            need_corpus(value)
