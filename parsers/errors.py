"""The one exception type every parser raises on malformed or truncated input."""

from __future__ import annotations


class ParseError(ValueError):
    """Input that does not follow the wire format.

    ``what`` names the structure being read and ``offset`` the byte position (relative to the buffer
    the parser was given) where reading failed, so an anomaly can be reported without a traceback.
    """

    def __init__(self, what: str, offset: int | None = None) -> None:
        self.what = what
        self.offset = offset
        super().__init__(what if offset is None else f"{what} at offset {offset}")
