"""A bounds-checked cursor over bytes, so parsers read like the RFC's struct definitions."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from helloscope.parsers.errors import ParseError

T = TypeVar("T")


class Reader:
    """Sequential reader over an immutable byte buffer.

    Every read past the end raises :class:`ParseError` naming the structure, never ``IndexError`` or
    ``struct.error``: fuzzers and the tracker only have one exception to expect.
    """

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> None:
        self._data = bytes(data) if not isinstance(data, bytes) else data
        self._pos = start
        self._end = len(self._data) if end is None else end

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _need(self, n: int, what: str) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise ParseError(f"truncated {what}: need {n} bytes, have {self._end - pos}", pos)
        self._pos = pos + n
        return pos

    def pull_uint8(self, what: str = "uint8") -> int:
        return self._data[self._need(1, what)]

    def pull_uint16(self, what: str = "uint16") -> int:
        p = self._need(2, what)
        return (self._data[p] << 8) | self._data[p + 1]

    def pull_uint24(self, what: str = "uint24") -> int:
        p = self._need(3, what)
        return int.from_bytes(self._data[p : p + 3], "big")

    def pull_uint32(self, what: str = "uint32") -> int:
        p = self._need(4, what)
        return int.from_bytes(self._data[p : p + 4], "big")

    def pull_bytes(self, n: int, what: str = "bytes") -> bytes:
        p = self._need(n, what)
        return self._data[p : p + n]

    def pull_rest(self) -> bytes:
        p = self._pos
        self._pos = self._end
        return self._data[p : self._end]

    def pull_opaque(self, length_size: int, what: str = "vector") -> bytes:
        """A length-prefixed vector (``opaque x<0..2^(8*length_size)-1>``) as bytes."""
        n = self._pull_length(length_size, what)
        return self.pull_bytes(n, what)

    def _pull_length(self, length_size: int, what: str) -> int:
        pos = self._pos
        end = pos + length_size
        if end > self._end:
            # _need raises, naming the field; the message is made only here: a hello has dozens of lengths
            self._need(length_size, f"{what} length")
        self._pos = end
        return int.from_bytes(self._data[pos:end], "big")

    @contextmanager
    def pull_block(self, length_size: int, what: str = "block") -> Iterator[Reader]:
        """Read a length-prefixed block with a sub-reader that must consume it exactly."""
        inner = self._block(length_size, what)
        yield inner
        if not inner.eof():
            raise ParseError(f"{inner.remaining} unexpected bytes at end of {what}", inner.position)

    def _block(self, length_size: int, what: str) -> Reader:
        """The sub-reader of a length-prefixed block, for callers that always consume it whole."""
        n = self._pull_length(length_size, what)
        start = self._need(n, what)
        return Reader(self._data, start, start + n)

    def pull_list_uint16(self, length_size: int, what: str) -> tuple[int, ...]:
        """A vector of uint16 values (cipher suites, groups, signature schemes)."""
        n = self._pull_length(length_size, what)
        start = self._need(n, what)
        if n % 2:
            raise ParseError(f"odd length in {what}", start)
        return struct.unpack_from(f">{n // 2}H", self._data, start)

    def pull_vector(self, length_size: int, what: str, pull_item: Callable[[Reader], T]) -> tuple[T, ...]:
        """A length-prefixed vector of variable-size items, each read from the block by ``pull_item``."""
        block = self._block(length_size, what)
        items = []
        while block._pos < block._end:
            items.append(pull_item(block))
        return tuple(items)
