"""What helloscope concludes about one connection: frozen values, each finding with its evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from helloscope.parsers.certs import CertificateRequest, X509Summary
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import ClientHello, ServerHello
from helloscope.parsers.registry import ALERT_NAMES

# How a finding was learned. An inference is never labelled as seen.
PLAINTEXT: Final = "plaintext"
DECRYPTED: Final = "decrypted"
INFERRED: Final = "inferred"
UNKNOWN: Final = "unknown"

# outcome values (DESIGN.md)
INCOMPLETE: Final = "incomplete"
REJECTED: Final = "rejected"
AUTHENTICATED: Final = "authenticated"
DECLINED: Final = "declined"
NOT_REQUESTED: Final = "not_requested"
FAILED: Final = "failed"

# flag_outcome values; UNKNOWN when the CertificateRequest could not be observed
HONORED: Final = "honored"
IGNORED: Final = "ignored"
UNSOLICITED: Final = "unsolicited"
NONE: Final = "none"

# client_certificate states
ABSENT: Final = "absent"
EMPTY: Final = "empty"
PRESENTED: Final = "presented"

CLIENT: Final = "client"
SERVER: Final = "server"


@dataclass(frozen=True, slots=True)
class CertificateRequestFinding:
    seen: bool | None
    evidence: str
    message: CertificateRequest | None = None
    confidence: str | None = None  # inferred findings only: high, medium, low
    basis: str | None = None  # inferred findings only: the sizes the guess rests on


@dataclass(frozen=True, slots=True)
class ClientCertificateFinding:
    state: str | None
    evidence: str
    chain: tuple[X509Summary, ...] = ()
    chain_length: int = 0
    unreadable: tuple[str, ...] = ()  # why a certificate of the chain could not be summarised
    confidence: str | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class AlertFinding:
    sender: str
    level: int | None  # None when the alert record is encrypted
    description: int | None
    evidence: str
    timestamp: float

    @property
    def name(self) -> str | None:
        if self.description is None:
            return None
        return ALERT_NAMES.get(self.description, f"unknown_{self.description}")

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass(frozen=True, slots=True)
class RecordTrace:
    """One record after the ServerHello: what size-based inference works from."""

    sender: str
    content_type: int
    length: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class Preamble:
    protocol: str
    client_bytes: int
    server_bytes: int


@dataclass(frozen=True, slots=True)
class TcpSummary:
    client_bytes: int
    server_bytes: int
    out_of_order: int
    retransmitted: int
    overlap_conflicts: int
    gaps: int
    byte_cap_reached: bool
    client_fin: bool
    server_fin: bool
    reset_by: str | None


@dataclass(frozen=True, slots=True)
class QuicClose:
    """A CONNECTION_CLOSE read from an Initial packet, or with keys from a Handshake or 1-RTT packet."""

    sender: str
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


@dataclass(frozen=True, slots=True)
class DecryptionSummary:
    status: str  # not_needed, no_keys, decrypted, decrypt_failed, unsupported
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


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    transport: str
    start: float
    end: float
    end_reason: str
    handshake: Handshake
    certificate_request: CertificateRequestFinding
    client_certificate: ClientCertificateFinding
    alerts: tuple[AlertFinding, ...]  # plaintext and decrypted, in time order
    established: bool | None
    decryption: DecryptionSummary
    outcome: str
    outcome_evidence: str
    outcome_confidence: str | None
    outcome_basis: str | None
    flag_outcome: str
    flag_outcome_evidence: str
    preamble: Preamble | None
    tcp: TcpSummary | None
    quic: QuicSummary | None = None

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
