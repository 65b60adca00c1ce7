"""Open a connection's protected records with its logged secrets: what TLS 1.3 hides, made visible.

The tracker keeps the protected records it saw (bounded); when the connection is reported, this module
tries the key log. Each direction walks its key phases in order (TLS 1.3: early, handshake, then
application traffic secret; TLS 1.2: the key block after each ChangeCipherSpec, a renegotiation's from
the master secret logged under its own ClientHello.random). A record that no phase opens stops that
direction: nothing after it can be read in order. Every different secret known for a label is tried
(a key log and a capture's Decryption Secrets Block may disagree), and the report says whose opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_client_hello, parse_server_hello
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
    ALERT,
    CERTIFICATE_REQUEST,
    CERTIFICATE_VERIFY,
    CHANGE_CIPHER_SPEC,
    CLIENT_HELLO,
    ENCRYPTED_EXTENSIONS,
    FINISHED,
    HANDSHAKE,
    HANDSHAKE_TYPE_NAMES,
    NEW_SESSION_TICKET,
    SERVER_HELLO,
    TLS13,
)
from helloscope.sniffer.report.model import AlertFinding, DecryptionSummary
from helloscope.sniffer.vocabulary import DecryptionStatus, Evidence, Phase, Sender

# The record decryptors and the ticket parser are imported by the functions that use them, once a
# connection has logged secrets: a run without keys never loads them (startup time, issue 13).
if TYPE_CHECKING:
    from helloscope.parsers.decrypt import Tls12RecordDecryptor, Tls13RecordDecryptor
    from helloscope.parsers.tickets import NewSessionTicket

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
    """An encrypted record kept for decryption, as it came from one side."""

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
    """A handshake message read from opened records, with the key phase that opened it."""

    sender: Sender
    msg_type: int
    body: bytes
    phase: Phase
    timestamp: float


@dataclass(frozen=True, slots=True)
class Decryption:
    """What trying the key log on a connection's records gave: a status and what was opened."""

    status: DecryptionStatus
    reason: str | None = None
    messages: tuple[DecryptedMessage, ...] = ()
    alerts: tuple[AlertFinding, ...] = ()
    records: int = 0  # records opened
    # Records each side sent after its peer's Finished that were not alerts: the handshake went on.
    application_records: tuple[tuple[Sender, float], ...] = ()
    source: str | None = None  # whose secrets opened the records: keylog, pcapng, or keylog+pcapng


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
    if messages:  # records were opened
        from helloscope.parsers.tickets import parse_encrypted_extensions, parse_new_session_ticket
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
        source=decryption.source,
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
        self.sources: set[str] = set()

    def content(self, record: ProtectedRecord, content_type: int, plaintext: bytes, phase: Phase) -> None:
        self.opened += 1
        sender = record.sender
        if content_type == HANDSHAKE:
            for message in self.readers[sender].feed(plaintext):
                self.messages.append(DecryptedMessage(sender, message.msg_type, message.body, phase, record.timestamp))
        elif content_type == ALERT:
            for alert in parse_alerts(plaintext):
                self.alerts.append(
                    AlertFinding(sender, alert.level, alert.description, Evidence.DECRYPTED, record.timestamp)
                )
        elif phase == Phase.APPLICATION:
            self.application.append((sender, record.timestamp))

    def result(self, status: DecryptionStatus, reason: str | None = None) -> Decryption:
        return Decryption(
            status,
            reason,
            tuple(self.messages),
            tuple(self.alerts),
            self.opened,
            tuple(self.application),
            "+".join(sorted(self.sources)) or None,
        )


def _decrypt_tls13(session: Session, records: Sequence[ProtectedRecord], keys: KeyLog) -> Decryption:
    reading = _Reading()
    failures: list[str] = []
    for sender in (CLIENT, SERVER):
        phases = [
            (name, _tls13_decryptors(session.cipher_suite, keys, label, session.client_random))
            for name, label in _TLS13_PHASES[sender]
        ]
        if not any(decryptors for _, decryptors in phases):
            continue
        current = 0
        for record in (item for item in records if item.sender == sender):
            opened = _open_tls13(record, phases, current)
            if opened is None:
                failures.append(f"{sender} record {reading.opened + 1} does not open with the logged secrets")
                break
            current, content_type, plaintext, source = opened
            reading.sources.add(source)
            try:
                reading.content(record, content_type, plaintext, phases[current][0])
            except ParseError as error:
                failures.append(f"{sender} decrypted content is malformed: {error.what}")
                break
            if phases[current][0] == Phase.HANDSHAKE and _finished(reading, sender):
                current += 1  # after its Finished a side switches to the application traffic secret
    return _status(reading, failures)


Candidates: TypeAlias = "list[tuple[Tls13RecordDecryptor, str]]"  # one per different secret known, with its source


def _open_tls13(
    record: ProtectedRecord, phases: list[tuple[Phase, Candidates]], current: int
) -> tuple[int, int, bytes, str] | None:
    """Open with the current phase, or a later one (early data refused, an unseen Finished).

    The first candidate secret of a phase that opens a record becomes that phase's only one.
    """
    from helloscope.parsers.decrypt import DecryptError

    for index in range(current, len(phases)):
        name, candidates = phases[index]
        for decryptor, source in candidates:
            try:
                opened = decryptor.decrypt(record.header, record.payload)
            except DecryptError:
                continue
            except ParseError:
                return None
            if len(candidates) > 1:
                phases[index] = (name, [(decryptor, source)])
            return index, opened.content_type, opened.plaintext, source
    return None


def _tls13_decryptors(cipher_suite: int, keys: KeyLog, label: str, client_random: bytes) -> Candidates:
    from helloscope.parsers.decrypt import DecryptError, Tls13RecordDecryptor

    candidates: Candidates = []
    for secret, source in _secrets(keys, label, client_random):
        try:
            candidates.append((Tls13RecordDecryptor(cipher_suite, secret), source))
        except DecryptError:
            continue  # a secret of the wrong length for this suite cannot belong to this connection
    return candidates


def _secrets(keys: KeyLog, label: str, client_random: bytes) -> tuple[tuple[bytes, str], ...]:
    """Every different secret logged for a label of a connection, newest first, with its source."""
    return keys.candidates(label, client_random)


def _finished(reading: _Reading, sender: Sender) -> bool:
    return any(message.sender == sender and message.msg_type == FINISHED for message in reading.messages)


def _decrypt_tls12(session: Session, records: Sequence[ProtectedRecord], keys: KeyLog) -> Decryption:
    from helloscope.parsers.decrypt import DecryptError

    if not _secrets(keys, CLIENT_RANDOM, session.client_random):
        return Decryption(DecryptionStatus.NO_KEYS)
    if session.compression != NULL_COMPRESSION:
        return Decryption(DecryptionStatus.UNSUPPORTED, f"compression method {session.compression}")
    try:
        first = {sender: _tls12_candidates(session, keys, sender) for sender in (CLIENT, SERVER)}
    except DecryptError as error:
        return Decryption(DecryptionStatus.UNSUPPORTED, error.what)
    reading = _Reading()
    failures: list[str] = []
    directions = {sender: _Tls12Direction(first[sender]) for sender in (CLIENT, SERVER)}
    renegotiation = _Renegotiation(session)
    # In capture order: a renegotiation's client keys need the ServerHello the server sent before.
    for record in records:
        sender = record.sender
        direction = directions[sender]
        if direction.stopped:
            continue
        opened = direction.open(record)
        if opened is None:
            failures.append(f"{sender} record does not open with the logged master secret")
            direction.stopped = True
            continue
        plaintext, source = opened
        reading.sources.add(source)
        if record.content_type == CHANGE_CIPHER_SPEC:
            # A renegotiation's ChangeCipherSpec, under the old keys: this side switches to the new ones.
            reading.opened += 1
            reason = renegotiation.switch(direction, keys, sender)
            if reason is not None:
                failures.append(f"{sender} {reason}")
                direction.stopped = True
            continue
        before = len(reading.messages)
        try:
            phase = Phase.APPLICATION if direction.finished else Phase.HANDSHAKE
            reading.content(record, record.content_type, plaintext, phase)
            renegotiation.read(reading.messages[before:])
        except ParseError as error:
            failures.append(f"{sender} decrypted content is malformed: {error.what}")
            direction.stopped = True
            continue
        if not direction.finished and _finished(reading, sender):
            direction.finished = True
    return _status(reading, failures)


class _Tls12Direction:
    """One side's record protection: the candidate key blocks until one opens a record, then that one."""

    __slots__ = ("candidates", "finished", "stopped")

    def __init__(self, candidates: list[tuple[Tls12RecordDecryptor, str]]) -> None:
        self.candidates = candidates
        self.finished = False
        self.stopped = False

    def open(self, record: ProtectedRecord) -> tuple[bytes, str] | None:
        for decryptor, source in self.candidates:
            try:
                plaintext = decryptor.decrypt(record.header, record.payload)
            except ParseError:
                continue
            if len(self.candidates) > 1:
                self.candidates = [(decryptor, source)]
            return plaintext, source
        return None


class _Renegotiation:
    """The hellos of the latest renegotiation, read from the decrypted records: its keys' inputs."""

    __slots__ = ("client_random", "server", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.client_random: bytes | None = None
        self.server: tuple[bytes, int] | None = None  # ServerHello.random, cipher suite

    def read(self, messages: Sequence[DecryptedMessage]) -> None:
        for message in messages:
            if message.sender == CLIENT and message.msg_type == CLIENT_HELLO:
                self.client_random, self.server = parse_client_hello(message.body).random, None
            elif message.sender == SERVER and message.msg_type == SERVER_HELLO:
                hello = parse_server_hello(message.body)
                self.server = (hello.random, hello.cipher_suite)

    def switch(self, direction: _Tls12Direction, keys: KeyLog, sender: Sender) -> str | None:
        """Give ``direction`` the renegotiated keys; return why not, if they cannot be made."""
        from helloscope.parsers.decrypt import DecryptError

        if self.client_random is None or self.server is None:
            return "changed keys without a renegotiation's hellos in the decrypted records"
        server_random, suite = self.server
        session = Session(self.client_random, server_random, suite, self.session.version, NULL_COMPRESSION)
        if not _secrets(keys, CLIENT_RANDOM, session.client_random):
            return "renegotiated: no master secret logged for its ClientHello.random"
        try:
            direction.candidates = _tls12_candidates(session, keys, sender)
        except DecryptError as error:
            return f"renegotiated: {error.what}"
        direction.finished = True  # the renegotiation's messages stay post-handshake (Phase.APPLICATION)
        return None


def _tls12_candidates(session: Session, keys: KeyLog, sender: Sender) -> list[tuple[Tls12RecordDecryptor, str]]:
    from helloscope.parsers.decrypt import Tls12RecordDecryptor

    return [
        (
            Tls12RecordDecryptor(
                session.cipher_suite, master, session.client_random, session.server_random, sender == CLIENT
            ),
            source,
        )
        for master, source in _secrets(keys, CLIENT_RANDOM, session.client_random)
    ]


def _status(reading: _Reading, failures: list[str]) -> Decryption:
    if reading.opened == 0:
        return reading.result(
            DecryptionStatus.DECRYPT_FAILED, failures[0] if failures else "no secret for the negotiated keys"
        )
    # Records opened before a failure stand; a late failure (a KeyUpdate, a renegotiation) is noted.
    return reading.result(DecryptionStatus.DECRYPTED, failures[0] if failures else None)
