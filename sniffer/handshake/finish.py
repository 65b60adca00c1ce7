"""One connection's observations → its ConnectionReport: the step TCP and QUIC connections share."""

from __future__ import annotations

from dataclasses import dataclass, replace

from helloscope.sniffer.handshake.correlation import conclude
from helloscope.sniffer.handshake.decryption import Decryption, summarize
from helloscope.sniffer.report.model import ConnectionReport, Preamble, QuicSummary, TcpSummary
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.handshake.tracker import ConnectionTracker


@dataclass(frozen=True, slots=True)
class Endpoints:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    transport: str


def report_connection(
    tracker: ConnectionTracker,
    decryption: Decryption,
    endpoints: Endpoints,
    span: tuple[float, float, str],
    stats: RunStats,
    *,
    missing_hello_detail: str = "",
    server_closed: bool = False,
    preamble: Preamble | None = None,
    tcp: TcpSummary | None = None,
    quic: QuicSummary | None = None,
) -> ConnectionReport:
    """Conclude and count one connection; ``span`` is (first packet, last packet, end reason)."""
    stats.tls_connections += 1
    if quic is not None:
        stats.quic_connections += 1
    if not tracker.client_hellos and not any("client_hello" in note for note in tracker.anomalies):
        tracker.note("client_hello_incomplete" + missing_hello_detail)
    handshake = tracker.handshake()
    conclusion = conclude(tracker, handshake, decryption, server_closed)
    if len(tracker.anomalies) != len(handshake.anomalies):  # correlation found more to note
        handshake = replace(handshake, anomalies=tuple(tracker.anomalies))
    if handshake.anomalies:
        stats.connections_with_anomalies += 1
    stats.decryption[decryption.status] += 1
    start, end, reason = span
    return ConnectionReport(
        client_ip=endpoints.client_ip,
        client_port=endpoints.client_port,
        server_ip=endpoints.server_ip,
        server_port=endpoints.server_port,
        transport=endpoints.transport,
        start=start,
        end=end,
        end_reason=reason,
        handshake=handshake,
        certificate_request=conclusion.certificate_request,
        client_certificate=conclusion.client_certificate,
        alerts=conclusion.alerts,
        established=conclusion.established,
        decryption=summarize(decryption),
        outcome=conclusion.outcome,
        outcome_evidence=conclusion.outcome_evidence,
        outcome_confidence=conclusion.outcome_confidence,
        outcome_basis=conclusion.outcome_basis,
        flag_outcome=conclusion.flag_outcome,
        flag_outcome_evidence=conclusion.flag_outcome_evidence,
        preamble=preamble,
        tcp=tcp,
        quic=quic,
    )
