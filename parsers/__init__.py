"""Pure, sans-IO parsers: bytes in, typed frozen dataclasses out, :class:`ParseError` on bad input."""

from helloscope.parsers.errors import ParseError

__all__ = ["ParseError"]
