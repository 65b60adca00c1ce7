"""Every transport's connection table behind one front: what the pipeline feeds segments to.

The transports are siblings that never import each other; this is where they meet. They share the
sinks, the limits, the key log and one sweep clock, so an idle connection of any transport is swept
when the capture's time passes, whichever transport's packet moved it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.registry import IP_PROTOCOL_TCP, IP_PROTOCOL_UDP
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Emit, Limits, Sweeper
from helloscope.sniffer.transport.tcp import TcpTable

if TYPE_CHECKING:
    from helloscope.sniffer.transport.dtls import DtlsTable
    from helloscope.sniffer.transport.quic import QuicTable


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
        self._emit = emit
        self._stats = stats
        self._limits = limits
        self._ports = ports
        self._keys = keys
        # The QUIC and DTLS tables (and their parsers and ciphers) are made with the first UDP datagram:
        # a TCP-only capture, the common case, does not import them (startup time, issue 13).
        self._udp: tuple[QuicTable, DtlsTable] | None = None
        self._sweeper = Sweeper([self.tcp], limits)  # type: ignore[list-item]
        # Bound once: these run for every packet (the pipeline's loop calls them directly).
        self.tcp_segment = self.tcp.packet
        self.tick = self._sweeper.tick
        self.skim = self.tcp.skim

    def sieve(self, share: object = None, worker: int = 0, workers: int = 1) -> Any:
        """A sieve for a capture reader that feeds these tables (:class:`~.capture.files.CaptureReader`),
        or None where there is none (no C core, or the reference path: ``Limits(fast_path=False)``).

        It takes the packets the skimmer would take, unless the sweep clock is due. With ``workers``, it
        also takes the frames another worker owns (run.parallel's flow hash), unless the worker's
        ``share`` must move its own sweep clock on them (its float ``tick``). What it takes never reaches
        the pipeline: :func:`~helloscope.sniffer.run.pipeline.count_sieved` adds those packets to the counts.
        """
        if fast.Sieve is None or self.tcp.skimmer is None:
            return None
        return fast.Sieve(self.tcp.skimmer, self._sweeper, share, worker, workers)

    def __len__(self) -> int:
        return len(self.tcp) + sum(len(table) for table in self._udp or ())

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
        quic, dtls = self._udp or self._open_udp()
        if not quic.datagram(timestamp, segment):
            dtls.datagram(timestamp, segment)

    def _open_udp(self) -> tuple[QuicTable, DtlsTable]:
        from helloscope.sniffer.transport.dtls import DtlsTable
        from helloscope.sniffer.transport.quic import QuicTable

        quic = QuicTable(self._emit, self._stats, self._limits, self._keys, self._ports)
        dtls = DtlsTable(self._emit, self._stats, self._limits, self._keys, self._ports)
        self._udp = quic, dtls
        self._sweeper.join(quic)  # type: ignore[arg-type]
        self._sweeper.join(dtls)  # type: ignore[arg-type]
        return self._udp

    def expire(self, now: float) -> None:
        """Report and drop connections silent for longer than the idle timeout at ``now``.

        Packets drive this on their own; a live sensor also calls it on a quiet link, where no packet
        arrives to advance the clock.
        """
        self._sweeper.expire(now)

    def flush(self) -> None:
        """End of input: report every connection still open."""
        self.tcp.flush()
        for table in self._udp or ():
            table.flush()
