"""One connection's observations → its ConnectionReport: the one step every transport ends with.

A transport hands over its tracker, the connection's decryption (TCP opens the kept records now; QUIC
opened its packets as they came) and what only the transport knows (:class:`TransportEnd`). From there
data flows one way: frozen observations → frozen conclusion → report. What is derived from the
observations for the event (fingerprints, Community ID, the selected ALPN, certificate hygiene, the
server's certificate) is computed here, once, so the event builder only formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from helloscope.parsers.certs import parse_certificate
from helloscope.parsers.community_id import community_id
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import (
    Ja4,
    ja3_of_shape,
    ja3_shape,
    ja3s_of_shape,
    ja3s_shape,
    ja4_of_shape,
    ja4_shape,
)
from helloscope.parsers.hello import ClientHello, ServerHello, selected_alpn
from helloscope.parsers.registry import CERTIFICATE
from helloscope.sniffer.handshake.correlation import certificate_summary, conclude
from helloscope.sniffer.handshake.decryption import DecryptedMessage, Decryption, summarize
from helloscope.sniffer.handshake.hygiene import certificate_findings
from helloscope.sniffer.handshake.tracker import MAX_KEPT_LEAF_BYTES, ConnectionTracker, server_certificate_seen
from helloscope.sniffer.memo import repeated
from helloscope.sniffer.report.model import (
    ConnectionReport,
    DtlsSummary,
    Endpoints,
    Handshake,
    HelloFingerprints,
    Preamble,
    QuicSummary,
    ServerCertificateFinding,
    ServerFingerprints,
    TcpSummary,
)
from helloscope.sniffer.vocabulary import DecryptionStatus, EndReason, Evidence, Phase, Sender

# The connection's last packet is timestamped before its first: the report's end is clamped to its start.
TIME_WENT_BACKWARDS = "capture_time_went_backwards"


@dataclass(frozen=True, slots=True)
class TransportEnd:
    """What the transport knows of a connection as it hands it over."""

    endpoints: Endpoints
    start: float
    end: float
    reason: EndReason
    ja4_transport: str  # JA4's part a starts with t (TCP), q (QUIC) or d (DTLS)
    server_closed: bool = False  # the server sent FIN or RST: what keyless inference reads as its verdict
    missing_hello_detail: str = ""  # why the ClientHello may be missing (segments or CRYPTO data lost)
    anomalies: tuple[str, ...] = ()  # the transport's own notes, after the tracker's
    preamble: Preamble | None = None
    tcp: TcpSummary | None = None
    quic: QuicSummary | None = None
    dtls: DtlsSummary | None = None


def finish_connection(tracker: ConnectionTracker, decryption: Decryption, end: TransportEnd) -> ConnectionReport:
    """Conclude one connection and assemble its report."""
    handshake = tracker.handshake(_observed_anomalies(tracker, end))
    conclusion = conclude(handshake, decryption, end.server_closed)
    # A capture whose clock went backwards can end a connection before it started: the report says it
    # lasted no time (event.duration is never negative) and notes why (see _observed_anomalies).
    stop = max(end.end, end.start)
    summary = summarize(decryption)
    endpoints = end.endpoints
    certificate = conclusion.client_certificate
    server_hello = handshake.server_hello
    return ConnectionReport(
        endpoints=endpoints,
        start=end.start,
        end=stop,
        end_reason=end.reason,
        handshake=handshake,
        conclusion=conclusion,
        decryption=summary,
        community_id=community_id(
            endpoints.transport.number, endpoints.client, endpoints.client_port, endpoints.server, endpoints.server_port
        ),
        client_hello_fingerprints=tuple(_fingerprints(hello, end.ja4_transport) for hello in handshake.client_hellos),
        server_fingerprints=_server_fingerprints(server_hello) if server_hello else None,
        next_protocol=summary.alpn or (selected_alpn(server_hello.extensions) if server_hello else None),
        certificate_findings=tuple(certificate_findings(certificate.chain[0], end.start)) if certificate.chain else (),
        server_certificate=server_certificate_finding(handshake, decryption),
        preamble=end.preamble,
        tcp=end.tcp,
        quic=end.quic,
        dtls=end.dtls,
    )


# A link repeats a few hundred hello shapes: each is fingerprinted once (sniffer.memo bounds what is kept).
_ja3: Callable[..., tuple[str, str]] = repeated(2048, 512)(ja3_of_shape)
_ja3s: Callable[..., tuple[str, str]] = repeated(2048, 512)(ja3s_of_shape)
_ja4: Callable[..., Ja4] = repeated(2048, 512)(ja4_of_shape)


def _fingerprints(hello: ClientHello, transport: str) -> HelloFingerprints:
    """JA3 (none for an SSLv2 hello, as tshark) and JA4 of one hello."""
    ja3_full, ja3 = (None, None) if hello.sslv2 else _ja3(*ja3_shape(hello))
    return HelloFingerprints(ja3, ja3_full, _ja4(*ja4_shape(hello, transport)))


def _server_fingerprints(server_hello: ServerHello) -> ServerFingerprints:
    ja3s_full, ja3s = _ja3s(*ja3s_shape(server_hello))
    return ServerFingerprints(ja3s, ja3s_full)


def server_certificate_finding(handshake: Handshake, decryption: Decryption) -> ServerCertificateFinding | None:
    """The server's certificate, from the clear (TLS <= 1.2) or the decrypted handshake (TLS 1.3, QUIC)."""
    seen, evidence = handshake.server_certificate, Evidence.PLAINTEXT
    if seen is None:
        message = _decrypted_server_certificate(decryption)
        if message is None:
            return None
        evidence = Evidence.DECRYPTED
        try:
            seen = server_certificate_seen(parse_certificate(message.body, tls13=handshake.tls13))
        except ParseError as error:
            return ServerCertificateFinding(evidence, (), None, (f"certificate message: {error.what}",))
    if seen.leaf is None:
        too_large = (f"certificate 0: over {MAX_KEPT_LEAF_BYTES} bytes",) if seen.chain_sha256 else ()
        return ServerCertificateFinding(evidence, seen.chain_sha256, None, too_large)
    try:
        leaf = certificate_summary(seen.leaf)
    except ParseError as error:
        return ServerCertificateFinding(evidence, seen.chain_sha256, None, (f"certificate 0: {error.what}",))
    return ServerCertificateFinding(evidence, seen.chain_sha256, leaf)


def _decrypted_server_certificate(decryption: Decryption) -> DecryptedMessage | None:
    if decryption.status != DecryptionStatus.DECRYPTED:
        return None
    wanted = (Sender.SERVER, CERTIFICATE, Phase.HANDSHAKE)
    return next((item for item in decryption.messages if (item.sender, item.msg_type, item.phase) == wanted), None)


def _observed_anomalies(tracker: ConnectionTracker, end: TransportEnd) -> tuple[str, ...]:
    """The tracker's anomalies, then the transport's, then a missing ClientHello: each once."""
    anomalies = list(dict.fromkeys((*tracker.anomalies, *end.anomalies)))
    if not tracker.client_hellos and not any("client_hello" in note for note in anomalies):
        anomalies.append("client_hello_incomplete" + end.missing_hello_detail)
    if end.end < end.start:
        anomalies.append(TIME_WENT_BACKWARDS)
    return tuple(anomalies)
