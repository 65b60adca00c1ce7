"""Open a connection's protected records with its logged secrets: what TLS 1.3 hides, made visible.

The tracker keeps the protected records it saw (bounded); when the connection is reported, this module
tries the key log. Each direction walks its key phases in order (TLS 1.3: early, handshake, then
application traffic secret; TLS 1.2: the one key block after the ChangeCipherSpec). A record that no
phase opens stops that direction: nothing after it can be read in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.decrypt import DecryptError, Tls12RecordDecryptor, Tls13RecordDecryptor
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
from helloscope.parsers.records import HandshakeReader
from helloscope.parsers.registry import (
    TLS13,
    ALERT,
    CERTIFICATE_REQUEST,
    CERTIFICATE_VERIFY,
    ENCRYPTED_EXTENSIONS,
    FINISHED,
    HANDSHAKE,
    HANDSHAKE_TYPE_NAMES,
    NEW_SESSION_TICKET,
)
from helloscope.parsers.tickets import NewSessionTicket, parse_encrypted_extensions, parse_new_session_ticket
from helloscope.sniffer.report.model import AlertFinding, DecryptionSummary
from helloscope.sniffer.vocabulary import DecryptionStatus, Evidence, Phase, Sender

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
NULL_COMPRESSION: Final = 0

_TLS13_PHASES: Final = {
    CLIENT: (
        (Phase.EARLY, CLIENT_EARLY_TRAFFIC_SECRET),
        (Phase.HANDSHAKE, CLIENT_HANDSHAKE_TRAFFIC_SECRET),
        (Phase.APPLICATION, CLIENT_TRAFFIC_SECRET_0),
    ),
    SERVER: ((Phase.HANDSHAKE, SERVER_HANDSHAKE_TRAFFIC_SECRET), (Phase.APPLICATION, SERVER_TRAFFIC_SECRET_0)),
}


@dataclass(frozen=True, slots=True)
class ProtectedRecord:
    sender: Sender
    content_type: int
    version: int
    payload: bytes
    timestamp: float

    @property
    def header(self) -> bytes:
        return bytes((self.content_type, self.version >> 8, self.version & 0xFF)) + len(self.payload).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class DecryptedMessage:
    sender: Sender
    msg_type: int
    body: bytes
    phase: Phase
    timestamp: float


@dataclass(frozen=True, slots=True)
class Decryption:
    status: DecryptionStatus
    reason: str | None = None
    messages: tuple[DecryptedMessage, ...] = ()
    alerts: tuple[AlertFinding, ...] = ()
    records: int = 0  # records opened
    # Records each side sent after its peer's Finished that were not alerts: the handshake went on.
    application_records: tuple[tuple[Sender, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    """What decryption needs from the plaintext handshake."""

    client_random: bytes
    server_random: bytes
    cipher_suite: int
    version: int
    compression: int


def summarize(decryption: Decryption) -> DecryptionSummary:
    """The report's view of a decryption: status, and what the opened handshake showed."""
    messages = decryption.messages
    kinds = {(message.sender, message.msg_type, message.phase) for message in messages}
    tickets: list[NewSessionTicket] = []
    alpn: bytes | None = None
    anomalies: list[str] = []
    for message in messages:
        try:
            if message.sender == SERVER and message.msg_type == NEW_SESSION_TICKET:
                tickets.append(parse_new_session_ticket(message.body))
            elif message.sender == SERVER and message.msg_type == ENCRYPTED_EXTENSIONS:
                alpn = parse_encrypted_extensions(message.body).alpn
        except ParseError as error:
            anomalies.append(
                f"server_{HANDSHAKE_TYPE_NAMES.get(message.msg_type, message.msg_type)}_malformed: {error.what}"
            )
    return DecryptionSummary(
        status=decryption.status,
        reason=decryption.reason,
        records=decryption.records,
        client_finished=(CLIENT, FINISHED, Phase.HANDSHAKE) in kinds,
        server_finished=(SERVER, FINISHED, Phase.HANDSHAKE) in kinds,
        certificate_verify=any(sender == CLIENT and kind == CERTIFICATE_VERIFY for sender, kind, _ in kinds),
        post_handshake_certificate_request=(SERVER, CERTIFICATE_REQUEST, Phase.APPLICATION) in kinds,
        tickets=len(tickets),
        ticket_flags=tuple(sorted({flag for ticket in tickets if ticket.tls_flags for flag in ticket.tls_flags.flags})),
        alpn=alpn,
        anomalies=tuple(anomalies),
    )


def decryption_of(
    session: Session | None, protected_seen: bool, records: Sequence[ProtectedRecord] | None, keys: KeyLog | None
) -> Decryption:
    """A reported connection's decryption. ``records`` is None when none were kept: no key could arrive."""
    if session is None or not protected_seen:
        return Decryption(DecryptionStatus.NOT_NEEDED)
    if records is None:
        return Decryption(DecryptionStatus.NO_KEYS)  # what decrypt() says when no key names this connection
    return decrypt(session, records, keys)


def decrypt(session: Session, records: Sequence[ProtectedRecord], keys: KeyLog | None) -> Decryption:
    if not records:
        return Decryption(DecryptionStatus.NOT_NEEDED)
    if keys is None or not keys.labels(session.client_random):
        return Decryption(DecryptionStatus.NO_KEYS)
    if session.version >= TLS13:
        return _decrypt_tls13(session, records, keys)
    return _decrypt_tls12(session, records, keys)


class _Reading:
    """Accumulates what the records of one connection reveal, in capture order."""

    def __init__(self) -> None:
        self.messages: list[DecryptedMessage] = []
        self.alerts: list[AlertFinding] = []
        self.application: list[tuple[Sender, float]] = []
        self.opened = 0
        self.readers = {CLIENT: HandshakeReader(), SERVER: HandshakeReader()}

    def content(self, record: ProtectedRecord, content_type: int, plaintext: bytes, phase: Phase) -> None:
        self.opened += 1
        sender = record.sender
        if content_type == HANDSHAKE:
            for message in self.readers[sender].feed(plaintext):
                self.messages.append(DecryptedMessage(sender, message.msg_type, message.body, phase, record.timestamp))
        elif content_type == ALERT:
            for alert in parse_alerts(plaintext):
                self.alerts.append(AlertFinding(sender, alert.level, alert.description, Evidence.DECRYPTED, record.timestamp))
        elif phase == Phase.APPLICATION:
            self.application.append((sender, record.timestamp))

    def result(self, status: DecryptionStatus, reason: str | None = None) -> Decryption:
        return Decryption(
            status, reason, tuple(self.messages), tuple(self.alerts), self.opened, tuple(self.application)
        )


def _decrypt_tls13(session: Session, records: Sequence[ProtectedRecord], keys: KeyLog) -> Decryption:
    reading = _Reading()
    failures: list[str] = []
    for sender in (CLIENT, SERVER):
        phases = [
            (name, _tls13_decryptor(session.cipher_suite, keys.secret(label, session.client_random)))
            for name, label in _TLS13_PHASES[sender]
        ]
        if all(decryptor is None for _, decryptor in phases):
            continue
        current = 0
        for record in (item for item in records if item.sender == sender):
            opened = _open_tls13(record, phases, current)
            if opened is None:
                failures.append(f"{sender} record {reading.opened + 1} does not open with the logged secrets")
                break
            current, content_type, plaintext = opened
            try:
                reading.content(record, content_type, plaintext, phases[current][0])
            except ParseError as error:
                failures.append(f"{sender} decrypted content is malformed: {error.what}")
                break
            if phases[current][0] == Phase.HANDSHAKE and _finished(reading, sender):
                current += 1  # after its Finished a side switches to the application traffic secret
    return _status(reading, failures)


def _open_tls13(
    record: ProtectedRecord, phases: list[tuple[Phase, Tls13RecordDecryptor | None]], current: int
) -> tuple[int, int, bytes] | None:
    """Open with the current phase, or a later one (early data refused, an unseen Finished)."""
    for index in range(current, len(phases)):
        decryptor = phases[index][1]
        if decryptor is None:
            continue
        try:
            opened = decryptor.decrypt(record.header, record.payload)
        except DecryptError:
            continue
        except ParseError:
            return None
        return index, opened.content_type, opened.plaintext
    return None


def _tls13_decryptor(cipher_suite: int, secret: bytes | None) -> Tls13RecordDecryptor | None:
    if secret is None:
        return None
    try:
        return Tls13RecordDecryptor(cipher_suite, secret)
    except DecryptError:
        return None  # a secret of the wrong length for this suite cannot belong to this connection


def _finished(reading: _Reading, sender: Sender) -> bool:
    return any(message.sender == sender and message.msg_type == FINISHED for message in reading.messages)


def _decrypt_tls12(session: Session, records: Sequence[ProtectedRecord], keys: KeyLog) -> Decryption:
    master = keys.secret(CLIENT_RANDOM, session.client_random)
    if master is None:
        return Decryption(DecryptionStatus.NO_KEYS)
    if session.compression != NULL_COMPRESSION:
        return Decryption(DecryptionStatus.UNSUPPORTED, f"compression method {session.compression}")
    reading = _Reading()
    failures: list[str] = []
    for sender in (CLIENT, SERVER):
        try:
            decryptor = Tls12RecordDecryptor(
                session.cipher_suite, master, session.client_random, session.server_random, sender == CLIENT
            )
        except DecryptError as error:
            return Decryption(DecryptionStatus.UNSUPPORTED, error.what)
        for record in (item for item in records if item.sender == sender):
            try:
                plaintext = decryptor.decrypt(record.header, record.payload)
                phase = Phase.APPLICATION if _finished(reading, sender) else Phase.HANDSHAKE
                reading.content(record, record.content_type, plaintext, phase)
            except ParseError as error:
                failures.append(f"{sender} record does not open with the logged master secret: {error.what}")
                break
    return _status(reading, failures)


def _status(reading: _Reading, failures: list[str]) -> Decryption:
    if reading.opened == 0:
        return reading.result(DecryptionStatus.DECRYPT_FAILED, failures[0] if failures else "no secret for the negotiated keys")
    # Records opened before a failure stand; a late failure (a KeyUpdate, a renegotiation) is noted.
    return reading.result(DecryptionStatus.DECRYPTED, failures[0] if failures else None)
