"""DTLS 1.0/1.2/1.3 record layer and handshake reassembly (RFC 6347, RFC 9146, RFC 9147).

Everything here takes the bytes of one UDP datagram (or of one record, or one handshake fragment) and
returns frozen dataclasses; :class:`ParseError` is the only exception. The handshake message bodies are
the TLS ones, so a DTLS ClientHello becomes the same :class:`ClientHello` the TLS path reports on
(only the cookie is extra), and ServerHello, Certificate, CertificateRequest and alerts go through
the existing parsers unchanged.

What differs from TLS, and why this module exists:

- A datagram carries whole records, several per datagram, never half of one: framing is per datagram
  and a bad record loses the rest of that datagram only, not the flow.
- Records carry an epoch and a sequence number because UDP reorders and loses; DTLS 1.3 also has a
  compact *unified header* whose low sequence bits are encrypted (RFC 9147 4.2.3). The helpers at the
  end undo that mask and rebuild full numbers; the keys come from the caller.
- Handshake messages are cut into fragments (message_seq, fragment_offset, fragment_length) that can
  arrive in any order, twice, or overlapping after a retransmission with a smaller MTU.
  :class:`HandshakeReassembler` turns them back into each message exactly once, in order, within a
  byte budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from helloscope.parsers.buffer import Reader
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import ClientHello, parse_client_hello
from helloscope.parsers.records import MAX_CIPHERTEXT
from helloscope.parsers.registry import (
    ACK,
    CHANGE_CIPHER_SPEC,
    CLIENT_HELLO,
    DTLS_BAD_VER,
    DTLS_VERSIONS,
    HELLO_VERIFY_REQUEST,
    SERVER_HELLO,
    TLS12_CID,
)

RECORD_HEADER: Final = 13  # type, version, epoch u16, sequence u48, length u16
HANDSHAKE_HEADER: Final = 12  # msg_type, length u24, message_seq u16, fragment_offset u24, fragment_length u24
# RFC 9147 4: the first byte of a unified header is 0b001CSLEE.
_UNIFIED_MASK: Final = 0xE0
_UNIFIED_BITS: Final = 0x20
_UNIFIED_CID: Final = 0x10
_UNIFIED_SEQ16: Final = 0x08
_UNIFIED_LENGTH: Final = 0x04
_UNIFIED_EPOCH: Final = 0x03
# RFC 9147 4.2.3: the mask is computed over the first 16 bytes of the ciphertext.
SEQUENCE_MASK_SAMPLE: Final = 16
DEFAULT_BUDGET: Final = 256 * 1024
DEFAULT_WINDOW: Final = 32
RECORD_VERSIONS: Final = DTLS_VERSIONS | {DTLS_BAD_VER}
# Messages that open their direction's first flight, so their message_seq is where reassembly starts.
_FLIGHT_OPENERS: Final = frozenset({CLIENT_HELLO, SERVER_HELLO, HELLO_VERIFY_REQUEST})


# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtlsRecord:
    """One record of a datagram, header fields as sent.

    For a unified header (DTLS 1.3 protected record) ``content_type`` and ``version`` are None because
    the real type is inside the ciphertext; ``epoch`` holds only the low two bits and ``sequence`` the
    low 8 or 16 bits, still masked until :func:`unmask_sequence` is applied.
    """

    content_type: int | None
    version: int | None
    epoch: int
    sequence: int
    sequence_bits: int  # 48 for a 13-byte header, 8 or 16 for a unified one
    connection_id: bytes | None
    header: bytes  # as on the wire: the AEAD additional data is built from it
    payload: bytes
    offset: int  # of the header inside the datagram

    @property
    def unified(self) -> bool:
        return self.content_type is None


def _pull_plaintext_record(reader: Reader, data: bytes, cid_length: int) -> DtlsRecord:
    start = reader.position
    content_type = reader.pull_uint8("record content type")
    version = reader.pull_uint16("record version")
    if version not in RECORD_VERSIONS:
        raise ParseError(f"record version 0x{version:04x} is not DTLS", start + 1)
    epoch = reader.pull_uint16("record epoch")
    sequence = int.from_bytes(reader.pull_bytes(6, "record sequence_number"), "big")
    connection_id = None
    if content_type == TLS12_CID:
        # RFC 9146 5.2: the CID length is not on the wire; only the negotiation tells it.
        if not cid_length:
            raise ParseError("tls12_cid record without a known connection ID length", start)
        connection_id = reader.pull_bytes(cid_length, "record connection_id")
    length = reader.pull_uint16("record length")
    if length > MAX_CIPHERTEXT:
        raise ParseError(f"record_overflow: {length} bytes > {MAX_CIPHERTEXT}", start)
    header_end = reader.position
    payload = reader.pull_bytes(length, "record fragment")
    return DtlsRecord(content_type, version, epoch, sequence, 48, connection_id, data[start:header_end], payload, start)


def _pull_unified_record(reader: Reader, data: bytes, cid_length: int) -> DtlsRecord:
    start = reader.position
    flags = reader.pull_uint8("unified header")
    connection_id = None
    if flags & _UNIFIED_CID:
        if not cid_length:
            raise ParseError("unified header with a connection ID of unknown length", start)
        connection_id = reader.pull_bytes(cid_length, "unified header connection_id")
    if flags & _UNIFIED_SEQ16:
        sequence, bits = reader.pull_uint16("unified header sequence"), 16
    else:
        sequence, bits = reader.pull_uint8("unified header sequence"), 8
    if flags & _UNIFIED_LENGTH:
        length = reader.pull_uint16("unified header length")
        if length > MAX_CIPHERTEXT:
            raise ParseError(f"record_overflow: {length} bytes > {MAX_CIPHERTEXT}", start)
    else:
        length = reader.remaining  # no length: the record runs to the end of the datagram
    header_end = reader.position
    payload = reader.pull_bytes(length, "record ciphertext")
    return DtlsRecord(
        None, None, flags & _UNIFIED_EPOCH, sequence, bits, connection_id, data[start:header_end], payload, start
    )


def iter_records(datagram: bytes, *, cid_length: int = 0) -> Iterator[DtlsRecord]:
    """Each record of one UDP datagram, in order.

    A malformed record raises :class:`ParseError` after the good records before it were yielded,
    because a receiver discards the rest of that datagram but keeps what it already read.
    ``cid_length`` is the connection ID length the receiver negotiated (RFC 9146, RFC 9147 9), needed
    only for records that carry one.
    """
    data = bytes(datagram)
    reader = Reader(data)
    while not reader.eof():
        first = data[reader.position]
        if first & _UNIFIED_MASK == _UNIFIED_BITS:
            yield _pull_unified_record(reader, data, cid_length)
        elif CHANGE_CIPHER_SPEC <= first <= ACK:
            yield _pull_plaintext_record(reader, data, cid_length)
        else:
            raise ParseError(f"byte 0x{first:02x} starts no DTLS record", reader.position)


def split_records(datagram: bytes, *, cid_length: int = 0) -> tuple[DtlsRecord, ...]:
    """Every record of a datagram, or ParseError if any part of it is not a record."""
    return tuple(iter_records(datagram, cid_length=cid_length))


def looks_like_dtls(datagram: bytes, *, unified: bool = True) -> bool:
    """Whether a UDP payload is DTLS, cheaply enough to ask of every datagram on any port.

    A DTLSPlaintext/DTLSCiphertext header (content type 20-26, a DTLS version or OpenSSL's pre-standard
    0x0100, a length that fits) is
    recognised from its first 13 bytes. A unified header (``unified``) carries much less: 1 byte in 8
    of random data starts with its bits, so the whole datagram must split into records exactly. Even
    then a new flow should only be opened on the first kind, because every handshake, DTLS 1.3's
    included, starts with a plaintext ClientHello.

    QUIC never matches: its long header starts with 0b1, its short header with 0b01 (RFC 9000 17); only
    a short header with the greased fixed bit (RFC 9287) could look unified. RFC 7983's demultiplexing
    (STUN 0-3, DTLS 20-63, RTP 128-191) agrees on the first byte.
    """
    if len(datagram) < 2:
        return False
    first = datagram[0]
    # tls12_cid (25) records cannot be framed without the negotiated CID length, so they never open a flow.
    if CHANGE_CIPHER_SPEC <= first <= ACK and first != TLS12_CID:
        if len(datagram) < RECORD_HEADER:
            return False
        version = datagram[1] << 8 | datagram[2]
        length = datagram[11] << 8 | datagram[12]
        return version in RECORD_VERSIONS and RECORD_HEADER + length <= len(datagram)
    if unified and first & _UNIFIED_MASK == _UNIFIED_BITS and not first & _UNIFIED_CID:
        try:
            records = split_records(datagram)
        except ParseError:
            return False
        # An AEAD tag alone is 16 bytes (8 for CCM_8); anything shorter is not a protected record.
        return all(len(record.payload) >= SEQUENCE_MASK_SAMPLE for record in records)
    return False


# --- handshake fragments --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeFragment:
    """One piece of a handshake message as carried by a record (RFC 6347 4.2.2, RFC 9147 5.2)."""

    msg_type: int
    length: int  # of the whole message body
    message_seq: int
    fragment_offset: int
    body: bytes

    @property
    def fragment_length(self) -> int:
        return len(self.body)

    @property
    def complete(self) -> bool:
        """The fragment is the whole message (the usual case for hellos)."""
        return self.fragment_offset == 0 and len(self.body) == self.length


def _pull_fragment(reader: Reader) -> HandshakeFragment:
    start = reader.position
    msg_type = reader.pull_uint8("handshake msg_type")
    length = reader.pull_uint24("handshake length")
    message_seq = reader.pull_uint16("handshake message_seq")
    fragment_offset = reader.pull_uint24("handshake fragment_offset")
    fragment_length = reader.pull_uint24("handshake fragment_length")
    if fragment_offset + fragment_length > length:
        raise ParseError(f"fragment {fragment_offset}+{fragment_length} runs past the message length {length}", start)
    return HandshakeFragment(msg_type, length, message_seq, fragment_offset, reader.pull_bytes(fragment_length))


def parse_handshake_fragments(payload: bytes) -> tuple[HandshakeFragment, ...]:
    """Every handshake fragment of one plaintext (or decrypted) handshake record."""
    reader = Reader(payload)
    fragments = []
    while not reader.eof():
        fragments.append(_pull_fragment(reader))
    return tuple(fragments)


@dataclass(frozen=True, slots=True)
class DtlsHandshakeMessage:
    """A DTLS handshake message reassembled from its fragments, with how it arrived."""

    msg_type: int
    message_seq: int
    body: bytes
    fragments: int  # fragments that contributed bytes or repeated them
    conflicting: bool  # an overlapping fragment disagreed with bytes already held; the first ones were kept
    after_gap: bool  # delivered by flush() past a message that never completed

    @property
    def raw_length(self) -> int:
        return HANDSHAKE_HEADER + len(self.body)


@dataclass(frozen=True, slots=True)
class ReassemblyStats:
    """What the reassembler dropped or noticed, for anomalies and run statistics."""

    retransmitted: int  # fragments of messages already delivered
    duplicates: int  # fragments adding no new byte to a pending message
    conflicts: int  # fragments whose bytes or header disagree with what is held
    out_of_window: int  # fragments too far ahead of the next expected message_seq
    overflows: int  # new messages refused because the byte budget was spent
    buffered: int  # bytes held now


class _Pending:
    """A message being rebuilt: its buffer and the byte ranges already filled (sorted, disjoint)."""

    __slots__ = ("buffer", "conflicting", "fragments", "length", "msg_type", "ranges")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buffer = bytearray(length)
        self.ranges: list[tuple[int, int]] = []
        self.fragments = 0
        self.conflicting = False

    @property
    def done(self) -> bool:
        return self.ranges == [(0, self.length)]


class HandshakeReassembler:
    """Handshake messages of one direction of one DTLS association, rebuilt from fragments.

    ``feed`` takes fragments in any order, duplicated or overlapping, and returns the messages that
    became deliverable: each complete message exactly once, in message_seq order. Memory is bounded by
    ``budget`` bytes (a message is held at its announced length from its first fragment) and by a
    ``window`` of message_seq values ahead of the next expected one; what does not fit is counted in
    :attr:`stats`, never buffered.

    Where the sequence starts is learned by default (``next_seq=None``): a sensor may start after the
    first datagrams or lose them, and a ClientHello answering a HelloVerifyRequest has message_seq 1.
    The first ClientHello, ServerHello (HelloRetryRequest included) or HelloVerifyRequest fragment sets
    it, since each of those opens its direction's first flight; fragments before it are held within the
    budget. Pass ``next_seq=0`` to insist on a complete handshake.
    """

    __slots__ = (
        "_budget",
        "_buffered",
        "_complete",
        "_conflicts",
        "_duplicates",
        "_next_seq",
        "_out_of_window",
        "_overflows",
        "_pending",
        "_retransmitted",
        "_window",
    )

    def __init__(
        self, *, budget: int = DEFAULT_BUDGET, window: int = DEFAULT_WINDOW, next_seq: int | None = None
    ) -> None:
        self._budget = budget
        self._window = window
        self._next_seq = next_seq
        self._pending: dict[int, _Pending] = {}
        self._complete: dict[int, DtlsHandshakeMessage] = {}
        self._buffered = 0
        self._retransmitted = self._duplicates = self._conflicts = self._out_of_window = self._overflows = 0

    @property
    def next_seq(self) -> int | None:
        """The message_seq of the next message to be delivered; None until a hello has set it."""
        return self._next_seq

    @property
    def stats(self) -> ReassemblyStats:
        return ReassemblyStats(
            self._retransmitted,
            self._duplicates,
            self._conflicts,
            self._out_of_window,
            self._overflows,
            self._buffered,
        )

    def feed(self, fragment: HandshakeFragment) -> tuple[DtlsHandshakeMessage, ...]:
        seq = fragment.message_seq
        if self._next_seq is None and fragment.msg_type in _FLIGHT_OPENERS:
            self._start(seq)
        if self._next_seq is not None:
            if seq < self._next_seq:
                self._retransmitted += 1
                return ()
            if seq >= self._next_seq + self._window:
                self._out_of_window += 1
                return ()
        if seq in self._complete:
            self._duplicates += 1
            return ()
        pending = self._pending.get(seq)
        if pending is None:
            if self._buffered + fragment.length > self._budget:
                self._overflows += 1
                return ()
            pending = self._pending[seq] = _Pending(fragment.msg_type, fragment.length)
            self._buffered += fragment.length
        elif pending.msg_type != fragment.msg_type or pending.length != fragment.length:
            self._conflicts += 1
            return ()
        conflicting_before = pending.conflicting
        if not _add(pending, fragment.fragment_offset, fragment.body):
            self._duplicates += 1
        if pending.conflicting and not conflicting_before:
            self._conflicts += 1
        if pending.done:
            del self._pending[seq]
            self._complete[seq] = DtlsHandshakeMessage(
                pending.msg_type, seq, bytes(pending.buffer), pending.fragments, pending.conflicting, False
            )
        return self._deliver()

    def flush(self) -> tuple[DtlsHandshakeMessage, ...]:
        """Every complete message still held, in order, skipping the gaps of messages that never
        completed (the flow ended or timed out); later fragments of skipped messages count as
        retransmitted."""
        out = []
        gap = False
        for seq in sorted(self._complete):
            message = self._complete.pop(seq)
            gap = gap or (self._next_seq is not None and seq != self._next_seq)
            self._buffered -= len(message.body)
            out.append(replace(message, after_gap=gap) if gap else message)
            self._next_seq = seq + 1
        if self._next_seq is not None:
            self._drop_below(self._next_seq)
        return tuple(out)

    def _start(self, seq: int) -> None:
        self._next_seq = seq
        self._drop_below(seq)

    def _drop_below(self, seq: int) -> None:
        for old in [old for old in self._pending if old < seq]:
            self._buffered -= self._pending.pop(old).length
        for old in [old for old in self._complete if old < seq]:
            self._buffered -= len(self._complete.pop(old).body)

    def _deliver(self) -> tuple[DtlsHandshakeMessage, ...]:
        if self._next_seq is None:
            return ()
        out = []
        while self._next_seq in self._complete:
            message = self._complete.pop(self._next_seq)
            self._buffered -= len(message.body)
            out.append(message)
            self._next_seq += 1
        return tuple(out)


def _add(pending: _Pending, offset: int, body: bytes) -> bool:
    """Copy into ``pending`` the bytes of a fragment it does not hold yet; True if any were new.

    Bytes already held win over a retransmission that disagrees, which is then flagged: a sensor
    reports what the receiver most likely kept (stacks keep the first copy too).
    """
    pending.fragments += 1
    end = offset + len(body)
    if end == offset:
        # A zero-length fragment completes only a zero-length message (ServerHelloDone and the like).
        if pending.length == 0 and not pending.ranges:
            pending.ranges = [(0, 0)]
            return True
        return False
    new = False
    cursor = offset  # bytes of the fragment before this are accounted for
    ranges: list[tuple[int, int]] = []
    lo_merge, hi_merge = offset, end
    for start, stop in pending.ranges:
        if stop < offset or start > end:
            ranges.append((start, stop))
            continue
        lo, hi = max(start, offset), min(stop, end)
        if lo < hi and pending.buffer[lo:hi] != body[lo - offset : hi - offset]:
            pending.conflicting = True
        if cursor < lo:
            pending.buffer[cursor:lo] = body[cursor - offset : lo - offset]
            new = True
        cursor = max(cursor, hi)
        lo_merge, hi_merge = min(lo_merge, start), max(hi_merge, stop)
    if cursor < end:
        pending.buffer[cursor:end] = body[cursor - offset :]
        new = True
    ranges.append((lo_merge, hi_merge))
    ranges.sort()
    pending.ranges = ranges
    return new


# --- messages and records specific to DTLS --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloVerifyRequest:
    """The stateless cookie exchange of DTLS 1.0/1.2 (RFC 6347 4.2.1); DTLS 1.3 uses HRR instead."""

    server_version: int
    cookie: bytes


def parse_hello_verify_request(body: bytes) -> HelloVerifyRequest:
    reader = Reader(body)
    server_version = reader.pull_uint16("server_version")
    cookie = reader.pull_opaque(1, "cookie")
    if not reader.eof():
        raise ParseError(f"{reader.remaining} bytes after the HelloVerifyRequest cookie", reader.position)
    return HelloVerifyRequest(server_version, cookie)


def parse_dtls_client_hello(body: bytes) -> ClientHello:
    """A DTLS ClientHello body (after the 12-byte header): the TLS structure plus a cookie."""
    return parse_client_hello(body, dtls=True)


@dataclass(frozen=True, slots=True)
class RecordNumber:
    """A record an ACK acknowledges: its epoch and sequence number."""

    epoch: int
    sequence: int


def _pull_record_number(reader: Reader) -> RecordNumber:
    epoch = int.from_bytes(reader.pull_bytes(8, "ACK epoch"), "big")
    return RecordNumber(epoch, int.from_bytes(reader.pull_bytes(8, "ACK sequence_number"), "big"))


def parse_ack(payload: bytes) -> tuple[RecordNumber, ...]:
    """A DTLS 1.3 ACK (content type 26, RFC 9147 7): ``RecordNumber record_numbers<0..2^16-1>``."""
    reader = Reader(payload)
    numbers = reader.pull_vector(2, "record_numbers", _pull_record_number)
    if not reader.eof():
        raise ParseError(f"{reader.remaining} bytes after the ACK record numbers", reader.position)
    return numbers


# --- DTLS 1.3 record numbers ----------------------------------------------------------------------


def sequence_mask_sample(record: DtlsRecord) -> bytes:
    """The ciphertext bytes the sequence-number mask is computed from (RFC 9147 4.2.3).

    The caller computes the mask with the epoch's ``sn_key`` (AES-ECB of the sample for AES suites,
    ChaCha20 with the sample as counter and nonce for ChaCha20) and passes it to :func:`unmask_sequence`.
    """
    if not record.unified:
        raise ParseError("only unified-header records have an encrypted sequence number", record.offset)
    if len(record.payload) < SEQUENCE_MASK_SAMPLE:
        raise ParseError(f"record of {len(record.payload)} bytes is too short to sample", record.offset)
    return record.payload[:SEQUENCE_MASK_SAMPLE]


def unmask_sequence(record: DtlsRecord, mask: bytes) -> DtlsRecord:
    """The record with its sequence bits decrypted in both ``sequence`` and ``header``.

    The AEAD additional data is the header with the sequence in clear, as the sender built it before
    masking, so the rewritten ``header`` is what decryption needs.
    """
    if not record.unified:
        raise ParseError("only unified-header records have an encrypted sequence number", record.offset)
    width = record.sequence_bits // 8
    if len(mask) < width:
        raise ParseError(f"sequence mask of {len(mask)} bytes, need {width}", record.offset)
    sequence = record.sequence ^ int.from_bytes(mask[:width], "big")
    position = 1 + (len(record.connection_id) if record.connection_id is not None else 0)
    header = record.header[:position] + sequence.to_bytes(width, "big") + record.header[position + width :]
    return replace(record, sequence=sequence, header=header)


def reconstruct(low: int, bits: int, expected: int) -> int:
    """The full value with these low ``bits`` closest to ``expected`` (RFC 9147 4.2.2), for both the
    sequence number (expected: one past the highest seen in the epoch) and the epoch (2 bits)."""
    if bits <= 0 or low >> bits:
        raise ParseError(f"{low} does not fit in {bits} bits", None)
    span = 1 << bits
    candidate = (expected & ~(span - 1)) | low
    best = candidate
    for other in (candidate - span, candidate + span):
        if other >= 0 and abs(other - expected) < abs(best - expected):
            best = other
    return best
