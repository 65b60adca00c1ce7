"""Every transport's connection table behind one front: what the pipeline feeds segments to.

The transports are siblings that never import each other; this is where they meet. They share the
sinks, the limits, the key log and one sweep clock, so an idle connection of any transport is swept
when the capture's time passes, whichever transport's packet moved it.
"""

from __future__ import annotations

from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.registry import IP_PROTOCOL_TCP, IP_PROTOCOL_UDP
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.dtls import DtlsTable
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Emit, Limits, Sweeper
from helloscope.sniffer.transport.quic import QuicTable
from helloscope.sniffer.transport.tcp import TcpTable


class ConnectionTables:
    def __init__(
        self,
        emit: Emit,
        stats: RunStats,
        limits: Limits = DEFAULT_LIMITS,
        ports: frozenset[int] = frozenset(),
        keys: KeyLog | None = None,
    ) -> None:
        self.tcp = TcpTable(emit, stats, limits, ports, keys)
        self.quic = QuicTable(emit, stats, limits, keys, ports)
        self.dtls = DtlsTable(emit, stats, limits, keys, ports)
        self._stats = stats
        self._sweeper = Sweeper((self.tcp, self.quic, self.dtls), limits)  # type: ignore[arg-type]
        # Bound once: these run for every packet (the pipeline's loop calls them directly).
        self.tcp_segment = self.tcp.packet
        self.tick = self._sweeper.tick
        self._quic_datagram = self.quic.datagram
        self._dtls_datagram = self.dtls.datagram

    def __len__(self) -> int:
        return len(self.tcp) + len(self.quic) + len(self.dtls)

    def segment(self, timestamp: float, segment: Segment) -> None:
        """One decoded TCP segment or UDP datagram."""
        proto = segment[0]
        if proto == IP_PROTOCOL_TCP:
            self._stats.tcp_segments += 1
            self.tcp_segment(timestamp, segment)
        elif proto == IP_PROTOCOL_UDP:
            self._stats.udp_datagrams += 1
            self.udp_datagram(timestamp, segment)
        self.tick(timestamp)

    def udp_datagram(self, timestamp: float, segment: Segment) -> None:
        # QUIC first: its short headers may clear the fixed bit (RFC 9287), so only the QUIC table knows
        # its own datagrams; what it does not claim may be DTLS (RFC 7983's first-byte ranges).
        if not self._quic_datagram(timestamp, segment):
            self._dtls_datagram(timestamp, segment)

    def expire(self, now: float) -> None:
        """Report and drop connections silent for longer than the idle timeout at ``now``.

        Packets drive this on their own; a live sensor also calls it on a quiet link, where no packet
        arrives to advance the clock.
        """
        self._sweeper.expire(now)

    def flush(self) -> None:
        """End of input: report every connection still open."""
        self.tcp.flush()
        self.quic.flush()
        self.dtls.flush()
