"""Run statistics: every limit hit and every anomaly is counted here, never dropped silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from helloscope.sniffer.report.model import ConnectionReport


@dataclass(slots=True)
class RunStats:
    """Counters for one run (mutable while the run goes on; ``as_dict`` snapshots them)."""

    files: int = 0
    packets: int = 0
    bytes: int = 0
    tcp_segments: int = 0
    udp_datagrams: int = 0  # decoded UDP datagrams, each looked at as possible QUIC
    undecoded_frames: int = 0
    truncated_files: int = 0
    flows_tracked: int = 0
    tls_connections: int = 0
    quic_connections: int = 0  # of those, over QUIC
    dtls_connections: int = 0  # of those, over DTLS
    non_tls_flows: int = 0
    flow_cap_evictions: int = 0
    idle_evictions: int = 0
    memory_evictions: int = 0  # connections reported early because --max-memory was reached
    stream_byte_cap_hits: int = 0
    out_of_order_segments: int = 0
    retransmitted_segments: int = 0
    overlap_conflicts: int = 0
    stream_gaps: int = 0
    connections_with_anomalies: int = 0
    keylog_secrets: int = 0
    kernel_received: int = 0  # live capture: packets the kernel passed to our sockets ...
    kernel_dropped: int = 0  # ... and those it dropped for lack of buffer room (zero when reading files)
    handshake_packets_written: int = 0  # live --write-pcap: packets written ...
    handshake_flows_dropped: int = 0  # ... and flows whose held packets were let go for room before their report
    decryption: Counter[str] = field(default_factory=Counter)  # connections by decryption status

    def count_report(self, report: ConnectionReport) -> None:
        """A connection was reported."""
        self.tls_connections += 1
        if report.quic is not None:
            self.quic_connections += 1
        if report.dtls is not None:
            self.dtls_connections += 1
        if report.handshake.anomalies or report.conclusion.anomalies:
            self.connections_with_anomalies += 1
        self.decryption[report.decryption.status] += 1

    def as_dict(self) -> dict[str, int]:
        """Flat counters; decryption statuses become ``decryption_<status>``."""
        flat = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "decryption"}
        flat.update({f"decryption_{status}": count for status, count in sorted(self.decryption.items())})
        return flat
