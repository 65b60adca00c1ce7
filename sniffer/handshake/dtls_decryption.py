"""Open a DTLS association's protected records with its logged secrets: the DTLS side of decryption.

What :mod:`helloscope.sniffer.handshake.decryption` does for TLS, for records that come in datagrams:
each record names its own epoch and sequence number (lost, reordered and retransmitted datagrams), so a
record that does not open is skipped, not the end of its direction, and the handshake messages inside
carry DTLS's 12-byte fragment headers, rebuilt per direction by :class:`HandshakeReassembler` (a resent
flight gives each message once).

- DTLS 1.2 (RFC 6347 §4.1.2.1): the key block from CLIENT_RANDOM's master secret; nonce and additional
  data take ``epoch << 48 | sequence_number`` from the record header. Epoch 1 is the handshake's keys:
  a side's records before and including its Finished are :attr:`Phase.HANDSHAKE`, later ones
  :attr:`Phase.APPLICATION`. Epoch 2 and later (a renegotiation's keys) are not opened.
- DTLS 1.3 (RFC 9147): unified headers carry the epoch's two low bits and a masked 8- or 16-bit sequence
  number. Epoch 1 is early data, epoch 2 the handshake traffic secrets, epoch 3 the first application
  traffic secrets (``*_TRAFFIC_SECRET_0``; the bare ``*_TRAFFIC_SECRET`` label some tools write, as the
  illustrated DTLS capture does, is read too); later epochs (KeyUpdate) are not opened. Each record's
  mask comes from the candidate key, its full sequence number from the highest one opened before in
  that direction and epoch.

The result is a :class:`Decryption` with the TLS conventions: decrypted messages with sender, type,
body, phase and timestamp, decrypted alerts, and the records each side sent past the handshake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.decrypt import TLS13_SUITES, DecryptError, Dtls13RecordDecryptor, Tls12RecordDecryptor
from helloscope.parsers.dtls import (
    DtlsRecord,
    HandshakeFragment,
    HandshakeReassembler,
    parse_handshake_fragments,
    reconstruct,
    sequence_mask_sample,
    unmask_sequence,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.keylog import (
    CLIENT_EARLY_TRAFFIC_SECRET,
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_RANDOM,
    CLIENT_TRAFFIC_SECRET_0,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
)
from helloscope.parsers.registry import (
    ALERT,
    APPLICATION_DATA,
    FINISHED,
    HANDSHAKE,
    TLS13,
    tls_equivalent,
)
from helloscope.sniffer.handshake.decryption import NULL_COMPRESSION, DecryptedMessage, Decryption, Session
from helloscope.sniffer.report.model import AlertFinding
from helloscope.sniffer.vocabulary import DecryptionStatus, Evidence, Phase, Sender

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
_DTLS12_EPOCH: Final = 1  # the only DTLS 1.2 epoch opened: the handshake's key block
_EPOCH_BITS: Final = 2  # a unified header carries the epoch's two low bits
# DTLS 1.3 epochs (RFC 9147 §6.1) by their two low bits: phase, then the key-log labels to try in order.
_DTLS13_EPOCHS: Final[dict[Sender, dict[int, tuple[Phase, tuple[str, ...]]]]] = {
    CLIENT: {
        1: (Phase.EARLY, (CLIENT_EARLY_TRAFFIC_SECRET,)),
        2: (Phase.HANDSHAKE, (CLIENT_HANDSHAKE_TRAFFIC_SECRET,)),
        3: (Phase.APPLICATION, (CLIENT_TRAFFIC_SECRET_0, "CLIENT_TRAFFIC_SECRET")),
    },
    SERVER: {
        2: (Phase.HANDSHAKE, (SERVER_HANDSHAKE_TRAFFIC_SECRET,)),
        3: (Phase.APPLICATION, (SERVER_TRAFFIC_SECRET_0, "SERVER_TRAFFIC_SECRET")),
    },
}


@dataclass(frozen=True, slots=True)
class DtlsProtectedRecord:
    """A record the association kept for the key log: who sent it, when, and the record as framed."""

    sender: Sender
    record: DtlsRecord
    timestamp: float

    @property
    def epoch(self) -> int:
        return self.record.epoch

    @property
    def sequence(self) -> int:
        return self.record.sequence

    @property
    def header(self) -> bytes:
        return self.record.header

    @property
    def payload(self) -> bytes:
        return self.record.payload


@dataclass(frozen=True, slots=True)
class _Opened:
    """One record's protection removed: what it carried and the phase its keys belong to."""

    item: DtlsProtectedRecord
    content_type: int
    plaintext: bytes
    phase: Phase | None  # DTLS 1.3: from the epoch; DTLS 1.2: decided by the side's Finished


NextSeq = Mapping[Sender, int | None]  # per side, the message_seq after its plaintext handshake messages


def dtls_decryption_of(
    session: Session | None,
    protected_seen: bool,
    records: Sequence[DtlsProtectedRecord] | None,
    keys: KeyLog | None,
    next_seq: NextSeq | None = None,
) -> Decryption:
    """A reported association's decryption. ``records`` is None when none were kept: no key could arrive."""
    if session is None or not protected_seen:
        return Decryption(DecryptionStatus.NOT_NEEDED)
    if records is None:
        return Decryption(DecryptionStatus.NO_KEYS)
    return decrypt_dtls(session, records, keys, next_seq)


def decrypt_dtls(
    session: Session, records: Sequence[DtlsProtectedRecord], keys: KeyLog | None, next_seq: NextSeq | None = None
) -> Decryption:
    """Open the kept records. ``next_seq`` (the plaintext reassemblers' next message_seq per side) says
    where each side's encrypted handshake messages continue; without it, at the lowest one decrypted."""
    if not records:
        return Decryption(DecryptionStatus.NOT_NEEDED)
    if keys is None or not keys.labels(session.client_random):
        return Decryption(DecryptionStatus.NO_KEYS)
    if tls_equivalent(session.version) >= TLS13:
        decryption = _decrypt_dtls13(session, records, keys)
    else:
        decryption = _decrypt_dtls12(session, records, keys)
    if isinstance(decryption, Decryption):
        return decryption
    opened, failures, sources = decryption
    return _read(opened, failures, sources, next_seq or {})


# ----- DTLS 1.2 ----------------------------------------------------------------------------------


_Material = tuple[list["_Opened"], "_Failures", set[str]]


def _decrypt_dtls12(session: Session, records: Sequence[DtlsProtectedRecord], keys: KeyLog) -> Decryption | _Material:
    secrets = keys.candidates(CLIENT_RANDOM, session.client_random)
    if not secrets:
        return Decryption(DecryptionStatus.NO_KEYS)
    if session.compression != NULL_COMPRESSION:
        return Decryption(DecryptionStatus.UNSUPPORTED, f"compression method {session.compression}")
    try:
        candidates = {
            sender: [
                (
                    Tls12RecordDecryptor(
                        session.cipher_suite, master, session.client_random, session.server_random, sender == CLIENT
                    ),
                    source,
                )
                for master, source in secrets
            ]
            for sender in (CLIENT, SERVER)
        }
    except DecryptError as error:
        return Decryption(DecryptionStatus.UNSUPPORTED, error.what)
    opened: list[_Opened] = []
    failures = _Failures()
    sources: set[str] = set()
    for item in records:
        record = item.record
        if record.unified or record.content_type is None or record.version is None:
            failures.add(item.sender, "unified-header record in a DTLS 1.2 association")
            continue
        if record.epoch != _DTLS12_EPOCH:
            failures.add(item.sender, f"epoch {record.epoch} (a renegotiation's keys) is not opened")
            continue
        header = bytes((record.content_type, record.version >> 8, record.version & 0xFF)) + len(
            record.payload
        ).to_bytes(2, "big")
        sequence = record.epoch << 48 | record.sequence
        side = candidates[item.sender]
        for decryptor, source in side:
            try:
                plaintext = decryptor.decrypt(header, record.payload, sequence)
            except ParseError:
                continue
            if len(side) > 1:
                candidates[item.sender] = [(decryptor, source)]
            sources.add(source)
            opened.append(_Opened(item, record.content_type, plaintext, None))
            break
        else:
            failures.add(item.sender, "record does not open with the logged master secret")
    return opened, failures, sources


# ----- DTLS 1.3 ----------------------------------------------------------------------------------


class _Dtls13Epoch:
    """One direction's keys for one epoch (by its low bits): candidate decryptors and the highest
    sequence number opened, from which the next record's full number is rebuilt."""

    __slots__ = ("candidates", "highest", "phase")

    def __init__(self, phase: Phase, candidates: list[tuple[Dtls13RecordDecryptor, str]]) -> None:
        self.phase = phase
        self.candidates = candidates
        self.highest = -1

    def open(self, record: DtlsRecord) -> tuple[int, bytes, str] | None:
        """Content type, plaintext and source of one unified-header record, or None if no key opens it."""
        try:
            sample = sequence_mask_sample(record)
        except ParseError:
            return None
        for decryptor, source in self.candidates:
            try:
                unmasked = unmask_sequence(record, decryptor.sequence_mask(sample))
                sequence = reconstruct(unmasked.sequence, record.sequence_bits, self.highest + 1)
                inner = decryptor.decrypt(unmasked.header, record.payload, sequence)
            except ParseError:
                continue
            if len(self.candidates) > 1:
                self.candidates = [(decryptor, source)]
            self.highest = max(self.highest, sequence)
            return inner.content_type, inner.plaintext, source
        return None


def _decrypt_dtls13(session: Session, records: Sequence[DtlsProtectedRecord], keys: KeyLog) -> Decryption | _Material:
    epochs: dict[tuple[Sender, int], _Dtls13Epoch] = {}
    refused: DecryptError | None = None
    for sender, by_epoch in _DTLS13_EPOCHS.items():
        for low_bits, (phase, labels) in by_epoch.items():
            candidates = []
            for label in labels:
                for secret, source in keys.candidates(label, session.client_random):
                    try:
                        candidates.append((Dtls13RecordDecryptor(session.cipher_suite, secret), source))
                    except DecryptError as error:
                        refused = error  # a secret of the wrong length for this suite, or a suite not supported
            if candidates:
                epochs[sender, low_bits] = _Dtls13Epoch(phase, candidates)
    if not epochs:
        if refused is None:
            return Decryption(DecryptionStatus.NO_KEYS)
        if session.cipher_suite not in TLS13_SUITES:
            return Decryption(DecryptionStatus.UNSUPPORTED, refused.what)
        return Decryption(DecryptionStatus.DECRYPT_FAILED, refused.what)  # secrets of another hash's length
    opened: list[_Opened] = []
    failures = _Failures()
    sources: set[str] = set()
    for item in records:
        record = item.record
        if not record.unified:
            failures.add(item.sender, f"epoch {record.epoch} record without a unified header")
            continue
        epoch = epochs.get((item.sender, record.epoch & ((1 << _EPOCH_BITS) - 1)))
        if epoch is None:
            failures.add(item.sender, f"no logged secret for epoch bits {record.epoch}")
            continue
        result = epoch.open(record)
        if result is None:
            failures.add(item.sender, "record does not open with the logged secrets")
            continue
        content_type, plaintext, source = result
        sources.add(source)
        opened.append(_Opened(item, content_type, plaintext, epoch.phase))
    return opened, failures, sources


# ----- what the opened records say ---------------------------------------------------------------


class _Failures:
    """Records that were not opened, counted per reason; the first reason is the one reported."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, sender: Sender, reason: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{sender} {reason}"

    def reason(self) -> str | None:
        if self.first is None:
            return None
        return self.first if self.count == 1 else f"{self.first} (and {self.count - 1} more records not opened)"


def _read(opened: list[_Opened], failures: _Failures, sources: set[str], next_seq: NextSeq) -> Decryption:
    """Messages, alerts and application records from the opened records, in capture order."""
    if not opened:
        return Decryption(DecryptionStatus.DECRYPT_FAILED, failures.reason() or "no record opened")
    # Each side's encrypted handshake continues its plaintext one: at the plaintext reassembler's next
    # message_seq, or at the lowest one decrypted when that is higher (plaintext messages were lost) or
    # unknown. A later handshake starting again at 0 (a renegotiation, not read) cannot hold it back.
    fragments: dict[Sender, list[int]] = {CLIENT: [], SERVER: []}
    notes: list[str] = []
    parsed: list[tuple[_Opened, tuple[HandshakeFragment, ...]]] = []
    for item in opened:
        pieces: tuple[HandshakeFragment, ...] = ()
        if item.content_type == HANDSHAKE:
            try:
                pieces = parse_handshake_fragments(item.plaintext)
            except ParseError as error:
                notes.append(f"{item.item.sender} decrypted handshake record is malformed: {error.what}")
            fragments[item.item.sender].extend(piece.message_seq for piece in pieces)
        parsed.append((item, pieces))
    reassemblers = {
        sender: HandshakeReassembler(next_seq=max(min(seqs), next_seq.get(sender) or 0))
        for sender, seqs in fragments.items()
        if seqs
    }
    finished = {CLIENT: False, SERVER: False}
    messages: list[DecryptedMessage] = []
    alerts: list[AlertFinding] = []
    application: list[tuple[Sender, float]] = []
    for item, pieces in parsed:
        sender, timestamp = item.item.sender, item.item.timestamp
        phase = item.phase
        if phase is None:  # DTLS 1.2: the handshake's keys carry the Finished, then the data
            phase = Phase.APPLICATION if finished[sender] else Phase.HANDSHAKE
        if pieces:
            for piece in pieces:
                for message in reassemblers[sender].feed(piece):
                    messages.append(DecryptedMessage(sender, message.msg_type, message.body, phase, timestamp))
                    if message.msg_type == FINISHED and phase == Phase.HANDSHAKE:
                        finished[sender] = True
        elif item.content_type == ALERT:
            try:
                found = parse_alerts(item.plaintext)
            except ParseError as error:
                notes.append(f"{sender} decrypted alert is malformed: {error.what}")
                continue
            alerts.extend(
                AlertFinding(sender, alert.level, alert.description, Evidence.DECRYPTED, timestamp) for alert in found
            )
        elif item.content_type == APPLICATION_DATA and phase == Phase.APPLICATION:
            application.append((sender, timestamp))
        # Anything else (DTLS 1.3 ACKs, a renegotiation's ChangeCipherSpec) tells nothing the report uses.
    reason = failures.reason() or (notes[0] if notes else None)
    return Decryption(
        status=DecryptionStatus.DECRYPTED,
        reason=reason,
        messages=tuple(messages),
        alerts=tuple(alerts),
        records=len(opened),
        application_records=tuple(application),
        source="+".join(sorted(sources)) or None,
    )
