"""Results of pure functions kept for the inputs a capture repeats, within bounds.

A link carries the same few hundred hello shapes, certificates and CA names over and over, and working
each out again (a JA4, an X.509 summary) costs more than the rest of a connection's report. What is kept
is bounded twice: a number of entries, least recently used first out, and a size per input: an input
longer than any real one (a hostile hello listing thousands of suites, a megabyte "certificate") is
worked out every time and never kept.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

Result = TypeVar("Result")


def repeated(entries: int, longest: int) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Keep up to ``entries`` results of the decorated function, for calls whose tuple, bytes and str
    arguments are all at most ``longest`` long. The function must be pure and its results immutable."""

    def keep(function: Callable[..., Result]) -> Callable[..., Result]:
        kept = lru_cache(maxsize=entries)(function)

        @wraps(function)
        def call(*args: Any) -> Result:
            for arg in args:
                if isinstance(arg, tuple | bytes | str) and len(arg) > longest:
                    return function(*args)
            return kept(*args)

        call.cache_info = kept.cache_info  # type: ignore[attr-defined]
        return call

    return keep
