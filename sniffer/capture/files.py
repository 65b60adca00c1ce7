"""Reading pcap and pcapng capture files, from a path or a pipe, fast and with bounded memory.

Both formats are a sequence of length-prefixed records. The reader pulls the file in large chunks into
one buffer and walks the records with ``struct.unpack_from`` on that buffer, so a packet costs a header
unpack and one slice instead of a ``read()`` call and a header object. Only the unparsed tail of the
buffer is carried over when it is refilled, and a record may never be longer than a fixed limit, so a
corrupt length field can neither allocate gigabytes nor stall the run.

Damage (a file cut mid-record, an absurd length) ends the iteration: every packet before it has been
yielded and :attr:`CaptureReader.truncation` says where and why. Only a file that is not a capture at all
raises :class:`CaptureError`.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Final, NamedTuple, Self

from helloscope.sniffer.capture.compression import CompressionError, decompressed, read_errors
from helloscope.sniffer.capture.fast import Sieve, split_pcap, split_pcapng

_CHUNK = 1 << 20
# Longer than any frame a capture tool writes (pcap snaplen tops out at 262144, jumbo frames at 64 KiB):
# a longer record is a corrupt length field, and must not become a huge allocation.
_MAX_RECORD = 16 << 20
_MIN_CAPLEN_LIMIT = 262144

# magic as it appears on disk -> (struct byte order, timestamp fraction units per second)
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAP_FILE_HEADER = 24
_PCAP_RECORD_HEADER = 16

_SHB = 0x0A0D0D0A  # a palindrome, so it reads the same before the section's byte order is known
_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
_BYTE_ORDER_MAGIC = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB = 1
_PB = 2
_SPB = 3
_EPB = 6
_DSB = 0x0A
_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14
_DEFAULT_TS_UNITS = 1_000_000
TLS_KEY_LOG = 0x544C534B  # "TLSK": Decryption Secrets Block payload is NSS key log text


PCAP: Final = "pcap"
PCAPNG: Final = "pcapng"


class CaptureError(Exception):
    """The file cannot be read as a capture at all (missing, unreadable, not pcap/pcapng)."""


@dataclass(frozen=True, slots=True)
class Truncation:
    """Where a capture stopped being readable; every packet before ``offset`` was yielded."""

    offset: int
    reason: str


class _Interface(NamedTuple):
    """What a pcapng packet block needs from its Interface Description Block."""

    linktype: int
    snaplen: int
    units: float  # timestamp units per second (if_tsresol)
    offset: float  # if_tsoffset, seconds


class CaptureReader:
    """Iterates ``(timestamp, linktype, frame)`` for every packet of a pcap or pcapng stream.

    ``timestamp`` is float seconds since the epoch, ``frame`` the captured bytes. The stream is read
    strictly forward (pipes work). When the iteration ends the stream is closed if ``close_stream`` was
    given, which :func:`open_capture` does for files it opened.

    Attributes, current as each packet is yielded: ``packets`` read so far; ``bytes_read`` (file offset
    consumed); ``last_timestamp``, the last packet's (None before the first); ``secrets``, the payloads
    of pcapng TLS key log Decryption Secrets Blocks met so far (a DSB precedes the packets it decrypts);
    ``skipped_secrets``, DSBs longer than 16 MiB, passed over unread; ``skipped``, pcapng packets of
    undeclared interfaces; ``truncation``, set when iteration stopped at damage. ``format`` ("pcap" or
    "pcapng") is known once the reader is made: only pcapng can carry secrets, so a caller may seal its
    key log for pcap input.

    ``accelerated=False`` keeps the C core out of this reader (tests and fuzzing compare the two).

    ``sieve``, set before iterating (C core only), sees each packet of the ordinary records first and
    takes what it can account for itself (``helloscope.sniffer.transport.tables.ConnectionTables.sieve``):
    those packets are read and counted here but not yielded.
    """

    def __init__(self, stream: BinaryIO, name: str, *, close_stream: bool = False, accelerated: bool = True) -> None:
        self.name = name
        self.truncation: Truncation | None = None
        self.secrets: list[bytes] = []
        self._packets = 0
        self._last: float | None = None
        self.sieve: Sieve | None = None
        # The C core's iterator over the buffer while the reader is in it: position, packets read and last
        # timestamp are its own until it is done.
        self._batch: Any = None
        # pcapng packet blocks naming an interface that was never described: nothing to decode them with
        self.skipped = 0
        # Decryption Secrets Blocks longer than a record may be, passed over unread (the rest is still read)
        self.skipped_secrets = 0
        self._stream = stream
        self._close_stream = close_stream
        # read1 returns what one underlying read gives, so a live pipe is processed as data arrives
        self._read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        self._buf = b""
        self._pos = 0  # parse position in _buf
        self._spare: tuple[bytes, int] | None = None  # a chunk read past the buffer, where its unread part starts
        self._base = 0  # file offset of _buf[0]
        self._read_error: str | None = None
        self.format = PCAP
        self.linktypes: list[int] = []  # the link types the file declares (pcapng: one per interface)
        self._split_pcap = split_pcap if accelerated else None
        self._split_pcapng = split_pcapng if accelerated else None
        try:
            self._records = self._start()
        except CaptureError:
            self.close()
            raise

    @property
    def bytes_read(self) -> int:
        """File offset up to which records have been consumed (uncompressed offset for compressed input)."""
        batch = self._batch
        return self._base + (self._pos if batch is None else batch.pos)

    @property
    def packets(self) -> int:
        """Packets read so far: yielded, or taken by the sieve."""
        batch = self._batch
        return self._packets if batch is None else self._packets + batch.count

    @property
    def last_timestamp(self) -> float | None:
        """The timestamp of the last packet read (yielded or taken by the sieve); None before the first."""
        batch = self._batch
        return self._last if batch is None or not batch.count else batch.timestamp

    def _batch_done(self, batch: Any) -> bool:
        """Take over the position, packet count and timestamp of a finished C batch: whether it read any."""
        self._batch = None
        self._pos = batch.pos
        if not batch.count:
            return False
        self._packets += batch.count
        self._last = batch.timestamp
        return True

    def _start(self) -> Iterator[tuple[float, int, bytes]]:
        """Check the file header and pick the record parser for the format."""
        if not self._fill(4):
            have = len(self._buf)
            detail = self._read_error or ("empty file" if have == 0 else f"only {have} bytes")
            raise CaptureError(f"{self.name}: not a capture file ({detail})")
        magic = self._buf[:4]
        if magic in _PCAP_MAGICS:
            endian, units = _PCAP_MAGICS[magic]
            if not self._fill(_PCAP_FILE_HEADER):
                raise CaptureError(f"{self.name}: pcap file header cut short")
            snaplen, linktype = struct.unpack_from(endian + "II", self._buf, 16)
            self.linktypes.append(linktype)
            self._pos = _PCAP_FILE_HEADER
            return self._pcap(endian, units, linktype, min(max(snaplen, _MIN_CAPLEN_LIMIT), _MAX_RECORD))
        if magic == _SHB_MAGIC:
            if not self._fill(12) or self._buf[8:12] not in _BYTE_ORDER_MAGIC:
                raise CaptureError(f"{self.name}: pcapng section header without a valid byte-order magic")
            self.format = PCAPNG
            return self._pcapng()
        raise CaptureError(f"{self.name}: not a pcap or pcapng file (starts with {magic.hex()})")

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        try:
            yield from self._records
        finally:
            self.close()

    def close(self) -> None:
        if self._close_stream:
            self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the shared block buffer -------------------------------------------------------------------
    # Each format's loop keeps the buffer, its position and its length in locals and handles every
    # record that lies wholly inside the buffer; only when one does not fit does it call _refill.

    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available from ``_pos`` on, reading in chunks; False if the stream ends first.

        A used-up buffer is replaced by the rest of the chunk read last, as it is. Where a record runs
        on past the buffer's end, its bytes are joined into a buffer of their own, ``_pos`` 0, and the
        rest of the chunk waits in ``_spare``: copying each whole chunk to put a record's first bytes
        in front of it cost a tenth of a bulk capture's run.
        """
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if not have and self._spare is not None:
            spare, at = self._spare
            self._spare = None
            self._base += pos - at
            self._buf, self._pos = buf, pos = spare, at
            have = len(spare) - at
        if have >= need:
            return True
        parts = [buf[pos:]] if have else []
        self._base += pos
        self._pos = 0
        while have < need:
            if self._spare is None:
                if self._read_error is not None:
                    break
                try:
                    data = self._read(max(need - have, _CHUNK))
                except read_errors() as exc:  # besides OSError, how damaged compressed streams fail
                    self._read_error = f"read error: {exc}"
                    break
                if not data:
                    break
                if not parts or len(data) <= need - have:
                    parts.append(data)
                    have += len(data)
                    continue
                self._spare = (data, 0)
            piece = self._next_bytes(need - have)
            parts.append(piece)
            have += len(piece)
        self._buf = b"".join(parts)
        return have >= need

    def _next_bytes(self, size: int) -> bytes:
        """Up to ``size`` of the bytes that follow the buffer: from the chunk read last, else one read."""
        if self._spare is None:
            return self._read(size)
        spare, at = self._spare
        piece = spare[at : at + size]
        at += len(piece)
        self._spare = (spare, at) if at < len(spare) else None
        return piece

    def _refill(self, pos: int, need: int, what: str) -> bytes | None:
        """The buffer, refilled so the record at ``pos`` (now at ``_pos``) has ``need`` bytes; None at the end.

        A stream that ends exactly at a record boundary ends cleanly, anywhere else it is damage.
        """
        self._pos = pos
        if self._fill(need):
            return self._buf
        have = len(self._buf)
        if have or self._read_error:
            self.truncation = Truncation(self._base, self._read_error or f"{what} cut short (need {need}, have {have})")
        return None

    def _damaged(self, pos: int, reason: str) -> None:
        """Stop at the record starting at ``pos``: it cannot be trusted."""
        self._pos = pos
        self.truncation = Truncation(self._base + pos, reason)

    def _skip_block(self, pos: int, blen: int, u32: Callable[[bytes, int], tuple[int]]) -> bytes | None:
        """Read past the ``blen``-byte block at ``pos`` holding at most one chunk of it; the buffer after it.

        None when the stream ends inside the block or its trailing length differs (damage, as for any block).
        """
        start = self._base + pos
        buf = self._buf
        seen = buf[pos : pos + blen]
        remaining = blen - len(seen)
        tail = seen[-4:]
        rest = buf[pos + blen :]
        while remaining:
            try:
                data = self._next_bytes(min(remaining, _CHUNK))
            except read_errors() as exc:
                self._read_error = f"read error: {exc}"
                data = b""
            if not data:
                self._base, self._buf, self._pos = start, b"", 0
                reason = self._read_error or f"pcapng block (type {_DSB:#x}, length {blen}) cut short"
                self.truncation = Truncation(start, reason)
                return None
            tail = (tail + data[:remaining])[-4:]
            rest = data[remaining:]
            remaining -= min(remaining, len(data))
        if u32(tail, 0)[0] != blen:
            self._base, self._buf, self._pos = start, b"", 0
            self.truncation = Truncation(start, f"pcapng block length {blen} does not match its trailing copy")
            return None
        self._base, self._buf, self._pos = start + blen, rest, 0
        return rest

    # -- classic pcap ------------------------------------------------------------------------------
    # With the C core (helloscope.sniffer.capture.fast), each pass of a loop first lets it split a batch
    # of ordinary records; the Python code below then meets only what the C side stops at (the buffer's
    # end, damage, pcapng blocks that change the reader's state), as it did on its own.

    def _pcap(self, endian: str, units: int, linktype: int, limit: int) -> Iterator[tuple[float, int, bytes]]:
        header = struct.Struct(endian + "III").unpack_from
        hlen = _PCAP_RECORD_HEADER
        buf, pos = self._buf, self._pos
        end = len(buf)
        little = endian == "<"
        split = self._split_pcap
        while True:
            if split is not None:
                batch = self._batch = split(buf, pos, little, units, linktype, limit, self.sieve)
                yield from batch
                pos = batch.pos
                if self._batch_done(batch):
                    continue
            if end - pos >= hlen:
                sec, frac, caplen = header(buf, pos)
                if caplen > limit:
                    self._damaged(pos, f"record length {caplen} exceeds limit {limit}")
                    return
                stop = pos + hlen + caplen
                if stop <= end:
                    self._pos = stop
                    self._packets += 1
                    self._last = timestamp = sec + frac / units
                    yield timestamp, linktype, buf[pos + hlen : stop]
                    pos = stop
                    continue
                need, what = hlen + caplen, f"packet data (caplen {caplen})"
            else:
                need, what = hlen, "record header"
            refilled = self._refill(pos, need, what)
            if refilled is None:
                return
            buf, pos, end = refilled, self._pos, len(refilled)

    # -- pcapng ------------------------------------------------------------------------------------

    def _pcapng(self) -> Iterator[tuple[float, int, bytes]]:
        buf, pos = self._buf, self._pos
        end = len(buf)
        endian = "<"
        u32 = struct.Struct("<I").unpack_from
        block = struct.Struct("<II").unpack_from
        epb = struct.Struct("<IIII").unpack_from
        interfaces: list[_Interface] = []
        timestamp = 0.0  # an SPB has none: it inherits the previous packet's
        split = self._split_pcapng
        while True:
            if split is not None:
                batch = self._batch = split(buf, pos, endian == "<", interfaces, timestamp, self.sieve)
                yield from batch
                pos, timestamp = batch.pos, batch.timestamp
                if self._batch_done(batch):
                    continue
            if end - pos < 12:
                need, what = 12, "pcapng block header"
            else:
                btype, blen = block(buf, pos)
                if btype == _SHB:
                    # a new section: its own byte order, and interface ids start again from 0
                    endian = _BYTE_ORDER_MAGIC.get(buf[pos + 8 : pos + 12], "")
                    if not endian:
                        self._damaged(pos, "pcapng section header byte-order magic invalid")
                        return
                    u32 = struct.Struct(endian + "I").unpack_from
                    block = struct.Struct(endian + "II").unpack_from
                    epb = struct.Struct(endian + "IIII").unpack_from
                    interfaces = []
                    blen = u32(buf, pos + 4)[0]
                if btype == _DSB and blen > _MAX_RECORD and not blen & 3:
                    # Secrets are not worth the memory of a block this size, nor the packets after it.
                    skipped = self._skip_block(pos, blen, u32)
                    if skipped is None:
                        return
                    self.skipped_secrets += 1
                    buf, pos, end = skipped, 0, len(skipped)
                    continue
                if blen < 12 or blen & 3 or blen > _MAX_RECORD:
                    self._damaged(pos, f"pcapng block length {blen} invalid")
                    return
                need, what = blen, f"pcapng block (type {btype:#x}, length {blen})"
            if end - pos < need:
                refilled = self._refill(pos, need, what)
                if refilled is None:
                    return
                buf, pos, end = refilled, self._pos, len(refilled)
                continue

            stop = pos + blen
            if u32(buf, stop - 4)[0] != blen:
                self._damaged(pos, f"pcapng block length {blen} does not match its trailing copy")
                return
            if btype in (_EPB, _PB):
                if blen < 32:
                    self._damaged(pos, f"pcapng packet block length {blen} too small")
                    return
                if btype == _EPB:
                    ifid, high, low, caplen = epb(buf, pos + 8)
                else:  # the obsolete Packet Block has a 16-bit interface id and a 16-bit drop count
                    ifid, high, low, caplen = struct.unpack_from(endian + "HxxIII", buf, pos + 8)
                if caplen > blen - 32:
                    self._damaged(pos, f"pcapng packet length {caplen} exceeds its block ({blen})")
                    return
                if ifid < len(interfaces):
                    linktype, _, units, offset = interfaces[ifid]
                    # float arithmetic: exact for microsecond counts, and within the ~0.2 µs a float
                    # holds for an epoch timestamp anyway at finer resolutions; big-int division costs more
                    self._last = timestamp = (high * 4294967296.0 + low) / units + offset
                    self._pos = stop
                    self._packets += 1
                    yield timestamp, linktype, buf[pos + 28 : pos + 28 + caplen]
                else:
                    self.skipped += 1
            elif btype == _SPB:
                if not interfaces or blen < 16:
                    self.skipped += 1
                else:
                    linktype, snaplen = interfaces[0][:2]
                    caplen = min(u32(buf, pos + 8)[0], blen - 16)
                    if snaplen:
                        caplen = min(caplen, snaplen)
                    self._last = timestamp
                    self._pos = stop
                    self._packets += 1
                    yield timestamp, linktype, buf[pos + 12 : pos + 12 + caplen]
            elif btype == _IDB:
                if blen < 20:
                    self._damaged(pos, f"pcapng interface block length {blen} too small")
                    return
                interfaces.append(_parse_idb(buf, pos, blen, endian))
                self.linktypes.append(interfaces[-1].linktype)
            elif btype == _DSB and blen >= 20:
                stype, slen = struct.unpack_from(endian + "II", buf, pos + 8)
                if stype == TLS_KEY_LOG and slen <= blen - 20:
                    self.secrets.append(buf[pos + 16 : pos + 16 + slen])
            pos = stop


def _parse_idb(buf: bytes, pos: int, blen: int, endian: str) -> _Interface:
    """Link type, snap length and timestamp scale of one Interface Description Block.

    A malformed option list is not damage to the file (the block boundary is known), so option parsing
    just stops at the first option that does not fit.
    """
    linktype, snaplen = struct.unpack_from(endian + "HxxI", buf, pos + 8)
    units, offset = _DEFAULT_TS_UNITS, 0
    option = struct.Struct(endian + "HH").unpack_from
    at, stop = pos + 16, pos + blen - 4
    while at + 4 <= stop:
        code, length = option(buf, at)
        value = at + 4
        if code == 0 or value + length > stop:
            break
        if code == _OPT_TSRESOL and length >= 1:
            resol = buf[value]
            # high bit set: a negative power of two, else a negative power of ten
            units = 1 << (resol & 0x7F) if resol & 0x80 else 10**resol
        elif code == _OPT_TSOFFSET and length >= 8:
            offset = struct.unpack_from(endian + "q", buf, value)[0]
        at = value + (length + 3 & ~3)
    return _Interface(linktype, snaplen, float(units), float(offset))


def open_capture(path: str, *, accelerated: bool = True) -> CaptureReader:
    """Open a pcap or pcapng file (optionally gzip, xz, bzip2 or zstd-compressed); ``"-"`` reads standard input.

    Raises :class:`CaptureError` with a one-line message naming the path when the file is missing,
    unreadable, a directory, or not a capture.
    """
    if path == "-":
        stream: BinaryIO = sys.stdin.buffer
        name, owned = "<stdin>", False
    else:
        name, owned = path, True
        try:
            stream = open(path, "rb")  # noqa: SIM115 - the reader owns it and closes it when done
        except OSError as exc:
            raise CaptureError(open_error(path, exc, "a capture file")) from None
    try:
        stream, kind = decompressed(stream, path if owned else None)
    except CompressionError as exc:
        raise CaptureError(f"{name}: {exc}") from None
    except OSError as exc:
        if owned:
            stream.close()
        raise CaptureError(f"{name}: cannot read ({exc.strerror or exc})") from None
    # A decompressing reader is ours to close; over stdin it leaves stdin itself open.
    owned = owned or kind is not None
    return CaptureReader(stream, name, close_stream=owned, accelerated=accelerated)


def open_error(path: str, error: OSError, kind: str) -> str:
    """One line for a file that cannot be opened (``kind`` is what a directory is not), naming the path."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(error, IsADirectoryError):
        return f"{path}: is a directory, not {kind}"
    if isinstance(error, PermissionError):
        return f"{path}: permission denied"
    return f"{path}: cannot open ({error.strerror or error})"


def is_capture_start(prefix: bytes) -> bool:
    """Whether data starting with ``prefix`` (at least 4 bytes, decompressed) is a pcap or pcapng file."""
    return prefix[:4] in _PCAP_MAGICS or prefix[:4] == _SHB_MAGIC


def capture_files(directory: str) -> list[str]:
    """The capture files under ``directory``, recursively, by path: what starts as pcap or pcapng once
    decompressed, whatever its name; other files (key logs, notes, JSON) are passed over.
    """
    found = []
    for root, folders, names in os.walk(directory, onerror=_walk_error):
        folders.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as raw:
                    stream, _ = decompressed(raw, None)
                    if is_capture_start(stream.read(4)):
                        found.append(path)
            except CompressionError:
                found.append(path)  # zstd without zstandard: opening it says what to install
            except read_errors():
                continue  # unreadable or damaged: not a capture this run can read
    return found


def _walk_error(error: OSError) -> None:
    raise CaptureError(f"{error.filename}: cannot list ({error.strerror or error})")
