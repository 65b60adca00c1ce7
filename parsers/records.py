"""Incremental TLS record framing and handshake-message reassembly.

Both readers take bytes in whatever pieces the transport delivers (one TCP segment, one decrypted
record) and hand back every complete unit. They share one buffering strategy: parse complete frames
straight out of the caller's bytes when nothing is pending, and otherwise append to a bytearray whose
consumed front is dropped once per feed, so a long message arriving in many small pieces costs linear
time rather than quadratic re-slicing.

A framing error cannot be recovered from (a byte stream has no resynchronisation point), so a reader
that meets one stays *poisoned*. Frames that were complete before the bad header in the same feed are
still returned; the error is then raised by the next feed() and is available as ``error`` at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from helloscope.parsers.errors import ParseError
from helloscope.parsers.registry import CHANGE_CIPHER_SPEC, HEARTBEAT

RECORD_HEADER = 5
HANDSHAKE_HEADER = 4
MAX_PLAINTEXT = 16384
# RFC 5246 6.2.3 allows up to 2^14 + 2048 bytes of ciphertext.
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048

T = TypeVar("T")
_Bytes = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Record:
    """A TLS record as framed: header fields, payload and where it started in the stream."""

    content_type: int
    version: int
    payload: bytes
    offset: int  # of the 5-byte header, counted from the first byte ever fed


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """A handshake message reassembled across records: type, body and size on the wire."""

    msg_type: int
    body: bytes
    raw_length: int  # header included, as it counts towards record sizes


class _Framer(ABC, Generic[T]):
    """The shared feed loop: frames are a fixed-size header announcing the body length."""

    __slots__ = ("_base", "_error", "_tail")

    HEADER: ClassVar[int]

    def __init__(self) -> None:
        self._tail = bytearray()
        self._base = 0  # stream offset of self._tail[0]
        self._error: ParseError | None = None

    @property
    def error(self) -> ParseError | None:
        """The framing error that poisoned this reader, if any."""
        return self._error

    @abstractmethod
    def _body_length(self, view: _Bytes, pos: int, stream_offset: int) -> int:
        """Validate the header at ``view[pos:]`` and return its body length, or raise ParseError."""

    @abstractmethod
    def _frame(self, view: _Bytes, pos: int, length: int, stream_offset: int) -> T:
        """Build the frame whose header starts at ``view[pos]``."""

    def _feed(self, data: _Bytes) -> list[T]:
        if self._error is not None:
            raise ParseError(self._error.what, self._error.offset)
        tail = self._tail
        if tail:
            tail += data
            # A view, so that frames copy their bytes once; released before the front is dropped.
            with memoryview(tail) as view:
                pos, frames = self._frames(view)
            del tail[:pos]  # CPython drops a bytearray's front without moving the rest
        else:
            # Nothing pending (the usual case): frames come straight out of the caller's bytes.
            pos, frames = self._frames(data)
            if pos < len(data):
                tail += data[pos:]
        self._base += pos
        if self._error is not None and not frames:
            raise ParseError(self._error.what, self._error.offset)
        return frames

    def _frames(self, view: _Bytes) -> tuple[int, list[T]]:
        """Every complete frame in ``view`` and where the first incomplete one starts; records a bad header."""
        frames: list[T] = []
        pos = 0
        header = self.HEADER
        end = len(view)
        base = self._base
        while end - pos >= header:
            try:
                length = self._body_length(view, pos, base + pos)
            except ParseError as exc:
                self._error = exc
                break
            if end - pos - header < length:
                break
            frames.append(self._frame(view, pos, length, base + pos))
            pos += header + length
        return pos, frames


class RecordReader(_Framer[Record]):
    """Split a byte stream into TLS records (RFC 8446 5.1 / RFC 5246 6.2)."""

    __slots__ = ("_max_fragment",)

    HEADER: ClassVar[int] = RECORD_HEADER

    def __init__(self, max_fragment: int = MAX_CIPHERTEXT) -> None:
        super().__init__()
        self._max_fragment = max_fragment

    def feed(self, data: _Bytes) -> list[Record]:
        """Every record completed by ``data``; a partial record stays buffered."""
        return self._feed(data)

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a record."""
        return len(self._tail)

    def _body_length(self, view: _Bytes, pos: int, stream_offset: int) -> int:
        content_type = view[pos]
        if not CHANGE_CIPHER_SPEC <= content_type <= HEARTBEAT:
            raise ParseError(f"record content type {content_type} is not TLS", stream_offset)
        if view[pos + 1] != 3:
            raise ParseError(f"record major version {view[pos + 1]} is not 3", stream_offset)
        length = view[pos + 3] << 8 | view[pos + 4]
        if length > self._max_fragment:
            raise ParseError(f"record_overflow: {length} bytes > {self._max_fragment}", stream_offset)
        return length

    def _frame(self, view: _Bytes, pos: int, length: int, stream_offset: int) -> Record:
        start = pos + RECORD_HEADER
        return Record(view[pos], view[pos + 1] << 8 | view[pos + 2], bytes(view[start : start + length]), stream_offset)


class HandshakeReader(_Framer[HandshakeMessage]):
    """Reassemble handshake messages from the payloads of consecutive handshake records.

    Several messages may share one record and one message may span many (RFC 8446 5.1).
    """

    __slots__ = ("_max_message",)

    HEADER: ClassVar[int] = HANDSHAKE_HEADER

    def __init__(self, max_message: int = 1 << 20) -> None:
        super().__init__()
        self._max_message = max_message

    def feed(self, fragment: _Bytes) -> list[HandshakeMessage]:
        """Every message completed by ``fragment``; a partial message stays buffered."""
        return self._feed(fragment)

    @property
    def pending(self) -> bool:
        """A partial message (or a partial header) is buffered."""
        return bool(self._tail)

    def _body_length(self, view: _Bytes, pos: int, stream_offset: int) -> int:
        length = view[pos + 1] << 16 | view[pos + 2] << 8 | view[pos + 3]
        if length > self._max_message:
            raise ParseError(f"handshake message of {length} bytes exceeds {self._max_message}", stream_offset)
        return length

    def _frame(self, view: _Bytes, pos: int, length: int, stream_offset: int) -> HandshakeMessage:
        start = pos + HANDSHAKE_HEADER
        return HandshakeMessage(view[pos], bytes(view[start : start + length]), HANDSHAKE_HEADER + length)
