"""An on-disk FIFO of undelivered records for one destination: segment files plus an acknowledged position.

A destination's directory holds:

- ``SEQ.seg`` segment files, read in ascending ``SEQ`` order. Each record is a 4-byte big-endian payload
  length, the payload's 4-byte CRC-32, then the payload.
- ``ack``: ``SEQ OFFSET``, the position before which everything was delivered. It is replaced atomically
  (write, then rename); segments wholly before it are deleted.
- ``lock``: held with ``flock`` while a sensor uses the directory, so two runs never share a spool.

Appends are flushed to the kernel one by one, so a killed process loses nothing it appended. A crash
mid-append can leave a torn last record (short or failing its CRC). A run never appends to a segment an
earlier run wrote, so a torn record is always the last of its segment: reading skips the rest of that
segment and counts it in ``torn``. The class is not thread-safe; its owner serialises calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct(">II")
_SUFFIX = ".seg"


class SpoolBusyError(Exception):
    """Another process holds this spool directory."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the spool: a segment file's number and a byte offset in it."""

    segment: int
    offset: int


class Spool:
    def __init__(self, directory: Path, limit: int, segment_bytes: int = 16 << 20) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # events can be sensitive: owner only
        self.directory = directory
        self.limit = limit
        self._segment_bytes = max(4096, min(segment_bytes, limit // 4))
        self._lock = open(directory / "lock", "a+b")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolBusyError(f"spool directory {directory} is in use by another helloscope") from None
        for leftover in directory.glob(f"*{_SUFFIX}.tmp"):  # from a crash inside append_before
            leftover.unlink()
        self._sizes = {
            int(path.name.removesuffix(_SUFFIX)): path.stat().st_size
            for path in directory.glob(f"*{_SUFFIX}")
            if path.name.removesuffix(_SUFFIX).lstrip("-").isdigit()
        }
        self._ack = self._read_ack()
        for segment in [seq for seq in self._sizes if seq < self._ack.segment]:
            self._remove_segment(segment)
        self._next_segment = max(max(self._sizes, default=-1) + 1, self._ack.segment)
        self._writer: Position | None = None  # the segment this run appends to, and its size ...
        self._stream: BinaryIO | None = None  # ... open for appending
        self._torn_segments: set[int] = set()
        self.torn = 0

    @property
    def size(self) -> int:
        """Bytes not yet acknowledged (records, their headers, and any torn tail not yet skipped)."""
        return sum(size for seq, size in self._sizes.items() if seq >= self._ack.segment) - self._ack.offset

    def append(self, record: bytes) -> bool:
        """Append one record; False (nothing written) when it would take the spool past its limit."""
        needed = _HEADER.size + len(record)
        if self.size + needed > self.limit:
            return False
        if self._writer is None or self._stream is None or self._writer.offset >= self._segment_bytes:
            self._stop_writing()
            self._stream = open(self._path(self._next_segment), "ab")  # noqa: SIM115 - until the segment is full
            self._writer = Position(self._next_segment, 0)
            self._next_segment += 1
        segment = self._writer.segment
        try:
            self._stream.write(_HEADER.pack(len(record), zlib.crc32(record)) + record)
            self._stream.flush()
        except OSError:
            # A partial write is a torn record: later appends go to a fresh segment, behind it.
            self._stop_writing()
            with contextlib.suppress(OSError):
                self._sizes[segment] = self._path(segment).stat().st_size
            raise
        self._writer = Position(segment, self._writer.offset + needed)
        self._sizes[segment] = self._writer.offset
        return True

    def append_before(self, records: Sequence[bytes]) -> bool:
        """Put ``records`` ahead of everything unacknowledged (they are older); False past the limit.

        The unread rest of the head segment is copied behind them into a new segment numbered before it,
        the acknowledged position moves to that segment, and then the old head goes. A crash in between
        can make the next run send some records twice, never lose one.
        """
        if not records:
            return True
        if not self._sizes:
            return all(self.append(record) for record in records)
        added = sum(_HEADER.size + len(record) for record in records)
        if self.size + added > self.limit:
            return False
        head = min(seq for seq in self._sizes if seq >= self._ack.segment)
        with open(self._path(head), "rb") as stream:
            stream.seek(self._ack.offset if head == self._ack.segment else 0)
            rest = stream.read()
        new_head = head - 1
        temporary = self.directory / f"{new_head}{_SUFFIX}.tmp"
        with open(temporary, "wb") as stream:
            stream.write(b"".join(_HEADER.pack(len(record), zlib.crc32(record)) + record for record in records))
            stream.write(rest)
            stream.flush()
            os.fsync(stream.fileno())  # on disk before the old head, which holds the same records, is deleted
        os.replace(temporary, self._path(new_head))
        self._sizes[new_head] = added + len(rest)
        self._write_ack(Position(new_head, 0))
        self._remove_segment(head)
        if self._writer is not None and self._writer.segment == head:
            self._stop_writing()  # never append behind the copy of a segment's tail
        return True

    def peek(self, max_records: int, max_bytes: int) -> tuple[list[bytes], Position]:
        """The oldest unacknowledged records (at least one if any) and the position just after them."""
        records: list[bytes] = []
        taken = 0
        position = self._ack
        for segment in sorted(seq for seq in self._sizes if seq >= self._ack.segment):
            offset = position.offset if segment == position.segment else 0
            end = self._sizes[segment]
            with open(self._path(segment), "rb") as stream:
                stream.seek(offset)
                while offset < end:
                    header = stream.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        offset = self._torn(segment, end)
                        break
                    length, crc = _HEADER.unpack(header)
                    if records and (len(records) >= max_records or taken + length > max_bytes):
                        return records, Position(segment, offset)
                    payload = stream.read(length)
                    if len(payload) < length or zlib.crc32(payload) != crc:
                        offset = self._torn(segment, end)
                        break
                    records.append(payload)
                    taken += length
                    offset += _HEADER.size + length
            position = Position(segment, offset)
        return records, position

    def acknowledge(self, position: Position) -> None:
        """Everything before ``position`` was delivered: forget it, on disk too."""
        for segment in [seq for seq in self._sizes if seq < position.segment]:
            self._remove_segment(segment)
        if self._writer is not None and self._writer.segment < position.segment:
            self._stop_writing()
        if self._sizes and sum(self._sizes.values()) - position.offset > 0:
            self._write_ack(position)
            return
        # Empty: start afresh so the directory does not keep a fully read segment around.
        for segment in list(self._sizes):
            self._remove_segment(segment)
        self._stop_writing()
        self._ack = Position(self._next_segment, 0)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "ack").unlink()

    def close(self) -> None:
        self._stop_writing()
        self._lock.close()  # releases the flock

    def _stop_writing(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
        self._stream = None
        self._writer = None

    def _torn(self, segment: int, end: int) -> int:
        if segment not in self._torn_segments:
            self._torn_segments.add(segment)
            self.torn += 1
        return end

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment}{_SUFFIX}"

    def _remove_segment(self, segment: int) -> None:
        self._sizes.pop(segment, None)
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()

    def _read_ack(self) -> Position:
        first = min(self._sizes, default=0)
        try:
            segment, offset = (int(field) for field in (self.directory / "ack").read_text().split())
        except (FileNotFoundError, ValueError):
            # No (or a damaged) acknowledgement: replay from the start; repeats, but loses nothing.
            return Position(first, 0)
        if segment in self._sizes:
            return Position(segment, offset if 0 <= offset <= self._sizes[segment] else 0)
        later = [seq for seq in self._sizes if seq > segment]
        return Position(min(later), 0) if later else Position(segment, 0)

    def _write_ack(self, position: Position) -> None:
        temporary = self.directory / "ack.tmp"
        temporary.write_text(f"{position.segment} {position.offset}\n")
        os.replace(temporary, self.directory / "ack")
        self._ack = position
