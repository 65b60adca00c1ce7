"""What helloscope concludes about one connection: frozen values, each finding with its evidence."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import NamedTuple

from helloscope.parsers.certs import CertificateMessage, CertificateRequest, X509Summary
from helloscope.parsers.fingerprints import Ja4
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import ClientHello, ServerHello
from helloscope.parsers.registry import ALERT_FATAL, ALERT_NAMES, TLS13, tls_equivalent
from helloscope.sniffer.vocabulary import (
    CertificateState,
    Confidence,
    DecryptionStatus,
    EndReason,
    Evidence,
    FlagOutcome,
    Outcome,
    Sender,
    Transport,
)


@dataclass(frozen=True, slots=True)
class CertificateRequestFinding:
    """Whether the server asked for a client certificate, and how that is known."""

    seen: bool | None
    evidence: Evidence
    message: CertificateRequest | None = None
    confidence: Confidence | None = None  # inferred findings only
    basis: str | None = None  # inferred findings only: the sizes the guess rests on


@dataclass(frozen=True, slots=True)
class ClientCertificateFinding:
    """Whether the client sent a certificate and what its chain was, and how that is known."""

    state: CertificateState | None
    evidence: Evidence
    chain: tuple[X509Summary, ...] = ()
    chain_length: int = 0
    unreadable: tuple[str, ...] = ()  # why a certificate of the chain could not be summarised
    confidence: Confidence | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class ServerCertificateSeen:
    """The server's Certificate message as kept until the report: fingerprints, and the leaf to summarise."""

    chain_sha256: tuple[str, ...]  # upper-case hex, leaf first
    leaf: bytes | None  # DER; None when the chain is empty or the leaf is over the kept size


@dataclass(frozen=True, slots=True)
class ServerCertificateFinding:
    """The server's certificate as reported: fingerprints and a summary of the leaf."""

    evidence: Evidence  # plaintext (TLS <= 1.2, DTLS 1.2) or decrypted (TLS 1.3, QUIC, DTLS 1.3)
    chain_sha256: tuple[str, ...]
    leaf: X509Summary | None
    unreadable: tuple[str, ...] = ()  # why the leaf could not be summarised


@dataclass(frozen=True, slots=True)
class AlertFinding:
    """An alert either side sent, seen in the clear, decrypted or inferred."""

    sender: Sender
    level: int | None  # None when the alert record is encrypted
    description: int | None
    evidence: Evidence
    timestamp: float

    @property
    def name(self) -> str | None:
        if self.description is None:
            return None
        return ALERT_NAMES.get(self.description, f"unknown_{self.description}")

    @property
    def fatal(self) -> bool:
        return self.level == ALERT_FATAL


class RecordTrace(NamedTuple):
    """One record after the ServerHello: what size-based inference works from.

    A NamedTuple, unlike the other results: one is made per TLS record of every connection (most records
    of a capture), and a frozen dataclass costs over twice as much to build.
    """

    sender: Sender
    content_type: int
    length: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class Preamble:
    """The plaintext protocol that switched to TLS (STARTTLS and similar), and its bytes."""

    protocol: str
    client_bytes: int
    server_bytes: int


@dataclass(frozen=True, slots=True)
class TcpSummary:
    """What the TCP streams of a connection showed: bytes, reordering, gaps and how they ended."""

    client_bytes: int
    server_bytes: int
    out_of_order: int
    retransmitted: int
    overlap_conflicts: int
    gaps: int
    byte_cap_reached: bool
    client_fin: bool
    server_fin: bool
    reset_by: Sender | None


@dataclass(frozen=True, slots=True)
class QuicClose:
    """A CONNECTION_CLOSE read from an Initial packet, or with keys from a Handshake or 1-RTT packet."""

    sender: Sender
    packet_type: str  # initial, handshake or 1rtt
    error_code: int
    frame_type: int | None
    reason: bytes
    application: bool


@dataclass(frozen=True, slots=True)
class QuicSummary:
    """What the Initial packets of a QUIC connection showed beside the TLS handshake."""

    version: int  # of the last Initial read: a compatible version negotiation can switch v1 to v2
    original_dcid: bytes
    retry: bool
    client_packets: int  # Initial packets opened, per sender
    server_packets: int
    undecryptable: int  # Initial packets that did not authenticate, or with malformed frames
    handshake_packets: int  # Handshake-level long-header packets seen (protected, not opened)
    crypto_duplicates: int
    transport_parameters: tuple[tuple[str, int | bytes], ...]  # the ClientHello's, in order
    close: QuicClose | None


@dataclass(frozen=True, slots=True)
class DtlsSummary:
    """What the datagrams of a DTLS association showed beside the TLS handshake."""

    client_datagrams: int
    server_datagrams: int
    hello_verify_request: bool  # the cookie exchange took place: the report shows the second ClientHello
    retransmitted_fragments: int  # handshake fragments that added nothing (retransmitted flights, duplicates)
    conflicting_fragments: int  # overlapping fragments that disagreed with bytes already held
    unified_records: int  # DTLS 1.3 records with the unified header (protected, content type hidden)
    malformed_datagrams: int  # datagrams whose records stopped framing part-way


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the tracker saw of the handshake, before any conclusion is drawn."""

    client_hellos: tuple[ClientHello, ...]
    server_hello: ServerHello | None
    hello_retry_request: ServerHello | None
    version: int | None
    established: bool | None
    resumed: bool | None
    alerts: tuple[AlertFinding, ...]
    records: tuple[RecordTrace, ...]
    anomalies: tuple[str, ...]
    key_exchange_group: int | None  # ServerKeyExchange curve (TLS <= 1.2) or key_share group (1.3)
    certificate_request: CertificateRequest | None  # in the clear (TLS <= 1.2)
    client_certificate: CertificateMessage | None  # in the clear (TLS <= 1.2)
    server_certificate: ServerCertificateSeen | None  # in the clear (TLS <= 1.2)
    server_flight_done: bool  # ServerHelloDone seen: the server's flight had no CertificateRequest after it
    client_flight_seen: bool  # the client's second flight (Certificate, ClientKeyExchange, CertificateVerify)
    dtls: bool = False
    hello_verify_request: bool = False  # DTLS 1.0/1.2: the server asked for a cookie first
    # TLS <= 1.2: a handshake record followed both Finished (HelloRequest or a new ClientHello): the
    # connection renegotiated, and the renegotiation (encrypted) may have requested a certificate.
    renegotiation: bool = False

    @property
    def tls13(self) -> bool:
        """TLS 1.3 or DTLS 1.3: the handshake after the ServerHello is encrypted."""
        return self.server_hello is not None and tls_equivalent(self.server_hello.version) >= TLS13


@dataclass(frozen=True, slots=True)
class DecryptionSummary:
    """The report's view of a decryption: its status and what the opened handshake showed."""

    status: DecryptionStatus
    reason: str | None
    records: int
    # What the decrypted handshake showed beyond the findings (all False/empty when not decrypted).
    client_finished: bool = False
    server_finished: bool = False
    certificate_verify: bool = False  # the client proved possession of its certificate's key
    post_handshake_certificate_request: bool = False
    tickets: int = 0
    ticket_flags: tuple[int, ...] = ()
    alpn: bytes | None = None  # selected in EncryptedExtensions
    anomalies: tuple[str, ...] = ()
    source: str | None = None  # whose secrets opened the records: keylog, pcapng, or keylog+pcapng


@dataclass(frozen=True, slots=True)
class Conclusion:
    """What the observations of one connection support, each finding with its evidence."""

    certificate_request: CertificateRequestFinding
    client_certificate: ClientCertificateFinding
    alerts: tuple[AlertFinding, ...]  # plaintext, decrypted and inferred, in time order
    established: bool | None
    outcome: Outcome
    outcome_evidence: Evidence
    flag_outcome: FlagOutcome
    flag_outcome_evidence: Evidence
    outcome_confidence: Confidence | None = None
    outcome_basis: str | None = None
    # Anomalies found while concluding (a decrypted message that does not parse), after the observed ones.
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Who talked to whom: packed addresses as the wire carries them (4 bytes IPv4, 16 bytes IPv6)."""

    client: bytes
    client_port: int
    server: bytes
    server_port: int
    transport: Transport

    @property
    def ipv6(self) -> bool:
        return len(self.client) == 16

    @property
    def client_ip(self) -> str:
        return socket.inet_ntop(socket.AF_INET6 if self.ipv6 else socket.AF_INET, self.client)

    @property
    def server_ip(self) -> str:
        return socket.inet_ntop(socket.AF_INET6 if self.ipv6 else socket.AF_INET, self.server)


@dataclass(frozen=True, slots=True)
class HelloFingerprints:
    """A ClientHello's fingerprints, computed once when the connection is reported."""

    ja3: str | None  # None for an SSLv2 hello, which JA3 does not fingerprint
    ja3_full: str | None
    ja4: Ja4


@dataclass(frozen=True, slots=True)
class ServerFingerprints:
    """The ServerHello's JA3S, hashed and in full."""

    ja3s: str
    ja3s_full: str


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """One connection as reported: its observations, their conclusion and what was derived from them."""

    endpoints: Endpoints
    start: float
    end: float
    end_reason: EndReason
    handshake: Handshake
    conclusion: Conclusion
    decryption: DecryptionSummary
    community_id: str
    client_hello_fingerprints: tuple[HelloFingerprints, ...]  # one per ClientHello, in order
    server_fingerprints: ServerFingerprints | None
    next_protocol: bytes | None  # the ALPN the server selected, in the clear or decrypted
    certificate_findings: tuple[str, ...]  # hygiene of the client's leaf certificate at capture time
    server_certificate: ServerCertificateFinding | None = None
    preamble: Preamble | None = None
    tcp: TcpSummary | None = None
    quic: QuicSummary | None = None
    dtls: DtlsSummary | None = None

    @property
    def protocol(self) -> str:
        """network.protocol: what carried the TLS handshake."""
        return "quic" if self.quic is not None else "dtls" if self.dtls is not None else "tls"

    @property
    def client_hello(self) -> ClientHello | None:
        hellos = self.handshake.client_hellos
        return hellos[0] if hellos else None

    @property
    def tls_flags(self) -> TlsFlags | None:
        hello = self.client_hello
        return hello.tls_flags if hello else None

    @property
    def request_mtls(self) -> bool:
        return any(hello.request_mtls for hello in self.handshake.client_hellos)

    @property
    def anomalies(self) -> tuple[str, ...]:
        """Every anomaly, observed first: the handshake's, the conclusion's, the hello's, decryption's."""
        hello = self.client_hello
        return (
            *self.handshake.anomalies,
            *self.conclusion.anomalies,
            *(hello.anomalies if hello else ()),
            *self.decryption.anomalies,
        )
