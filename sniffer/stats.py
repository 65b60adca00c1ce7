"""Run statistics: every limit hit and every anomaly is counted here, never dropped silently."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class RunStats:
    """Counters for one run (mutable while the run goes on; ``as_dict`` snapshots them)."""

    files: int = 0
    packets: int = 0
    bytes: int = 0
    tcp_segments: int = 0
    undecoded_frames: int = 0
    truncated_files: int = 0
    flows_tracked: int = 0
    tls_connections: int = 0
    non_tls_flows: int = 0
    flow_cap_evictions: int = 0
    idle_evictions: int = 0
    stream_byte_cap_hits: int = 0
    out_of_order_segments: int = 0
    retransmitted_segments: int = 0
    overlap_conflicts: int = 0
    stream_gaps: int = 0
    connections_with_anomalies: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
