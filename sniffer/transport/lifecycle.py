"""The one connection lifecycle every transport lives on: open under a cap, end on arrival after the idle
timeout, sweep, flush, finish → report.

A transport (TCP flows, QUIC connections, DTLS associations) only moves bytes: it finds the connection a
packet belongs to, feeds its tracker, and says when the connection is settled or torn down. When and
how a connection ends, what is counted then, and how the report reaches the sinks is decided here, once,
so every transport ends connections by the same rules and ``--workers`` gives one process's reports.

The rule that makes reports independent of when sweeps run: a connection silent for longer than the
idle timeout ended then. A packet that arrives later finds it ended (and may open a new connection);
a sweep or the capture's end only reports what already ended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.vocabulary import EndReason


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource bounds; defaults are documented in README."""

    max_flows: int = 200_000
    max_stream_bytes: int = 256 * 1024
    max_out_of_order_bytes: int = 64 * 1024
    max_preamble_bytes: int = 16 * 1024
    idle_timeout: float = 300.0
    # What connections may hold in all, as accounted (buffers and per-connection state, not the
    # interpreter's own overhead): past it the oldest connections are reported and dropped.
    max_memory: int = 1 << 30
    # False selects the reference path: every protected record is kept even when no key can ever open
    # it. Reports are identical either way (tests/test_fast_path.py holds them to that).
    fast_path: bool = True


DEFAULT_LIMITS: Final = Limits()


class Connection:
    """What the lifecycle needs of any transport's connection."""

    __slots__ = ("cost", "done", "last_seen", "reported", "start", "tracked")

    def __init__(self, timestamp: float) -> None:
        self.start = timestamp
        self.last_seen = timestamp
        self.done = False  # settled or never TLS: later packets only keep it alive until it ends
        self.reported = False
        self.tracked = False  # in the table: admitted and not finished
        self.cost = 0  # bytes it is accounted at (see ConnectionTable.charge)


C = TypeVar("C", bound=Connection)
Emit = Callable[[ConnectionReport], None]
Endpoint = tuple[bytes, int]  # packed address, port
Path = tuple[bytes, int, bytes, int]  # src, sport, dst, dport: one direction between two endpoints


class PathIndex(Generic[C]):
    """Connections by directed 4-tuple, both directions: how a datagram transport finds its connection."""

    __slots__ = ("_paths",)

    def __init__(self) -> None:
        self._paths: dict[Path, C] = {}

    def get(self, path: Path) -> C | None:
        return self._paths.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def __bool__(self) -> bool:
        return bool(self._paths)

    def add(self, client: Endpoint, server: Endpoint, connection: C) -> None:
        self._paths[(*client, *server)] = self._paths[(*server, *client)] = connection

    def discard(self, client: Endpoint, server: Endpoint, connection: C) -> None:
        """Forget both directions, unless a newer connection took the path over since."""
        for path in ((*client, *server), (*server, *client)):
            if self._paths.get(path) is connection:
                del self._paths[path]


class ConnectionTable(ABC, Generic[C]):
    """Connections of one transport, in creation order, under one cap and one idle timeout.

    ``idle_evictions``, ``flow_cap_evictions`` and ``memory_evictions`` count the connections whose
    following the timeout, the flow cap or the memory bound cut short, that is those not reported yet:
    a settled connection that is dropped later loses nothing, and counting it would make the figures
    depend on how files are shared among workers.
    """

    def __init__(self, emit: Emit, stats: RunStats, limits: Limits) -> None:
        self._emit = emit
        self._stats = stats
        self._limits = limits
        self._idle = limits.idle_timeout  # read on every packet
        self._order: deque[C] = deque()  # creation order, for cap eviction and idle sweeps
        self._finished_in_order = 0  # finished connections still in _order, dropped by _compact_order
        self._memory = 0  # what the tracked connections are accounted at, in all

    # ----- what a transport provides -------------------------------------------------------------

    @abstractmethod
    def _forget(self, connection: C) -> None:
        """Remove the connection from the transport's look-up tables."""

    @abstractmethod
    def _report(self, connection: C, reason: EndReason) -> ConnectionReport | None:
        """The connection's report, or None when there is nothing to report (never TLS)."""

    # ----- the lifecycle -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._order) - self._finished_in_order

    @property
    def memory(self) -> int:
        """Bytes the tracked connections are accounted at."""
        return self._memory

    def _admit(self, connection: C) -> None:
        """Track a new connection, evicting the oldest ones while the table is at its cap."""
        while len(self) >= self._limits.max_flows and self._order:
            if self._evict_oldest(EndReason.EVICTED):
                self._stats.flow_cap_evictions += 1
        connection.tracked = True
        self._order.append(connection)
        self._stats.flows_tracked += 1

    def charge(self, connection: C, cost: int) -> None:
        """Account ``connection`` at ``cost`` bytes from now on (its buffers changed)."""
        self._memory += cost - connection.cost
        connection.cost = cost

    def shed_memory(self) -> None:
        """Over the memory bound: report and drop the oldest connections until under it.

        A transport calls this before it looks up the connection of a packet, so the connection it is
        about to work on is never dropped under its feet.
        """
        while self._memory > self._limits.max_memory and self._order:
            if self._evict_oldest(EndReason.MEMORY):
                self._stats.memory_evictions += 1

    def _evict_oldest(self, reason: EndReason) -> bool:
        """End the oldest connection in the queue; True if that cut its following short (not yet reported)."""
        oldest = self._order.popleft()
        if not oldest.tracked:
            self._finished_in_order -= 1
            return False
        cut_short = not oldest.reported
        self._end(oldest, reason)
        return cut_short

    def ended_on_arrival(self, connection: C, timestamp: float) -> bool:
        """A packet for ``connection`` at ``timestamp``: True when the connection had gone idle (it is
        finished now, as of its last packet); otherwise its clock moves on."""
        if timestamp - connection.last_seen > self._idle:
            self._stats.idle_evictions += not connection.reported
            self.finish(connection, EndReason.IDLE)
            return True
        connection.last_seen = timestamp
        return False

    def settle(self, connection: C, reason: EndReason) -> None:
        """Report the connection now; it stays tracked (done) until it ends, so its packets cost little."""
        connection.done = True
        connection.reported = True
        report = self._report(connection, reason)
        if report is not None:
            self._stats.count_report(report)
            self._emit(report)

    def finish(self, connection: C, reason: EndReason) -> None:
        """Report the connection if it has not been, and forget it."""
        self._end(connection, reason)
        self._finished_in_order += 1
        if self._finished_in_order > len(self._order) // 2:
            self._compact_order()

    def _end(self, connection: C, reason: EndReason) -> None:
        if not connection.reported:
            self.settle(connection, reason)
        connection.tracked = False
        self._memory -= connection.cost
        connection.cost = 0
        self._forget(connection)

    def _compact_order(self) -> None:
        """Drop finished connections from the creation-order queue.

        Sweeps run every ``idle_timeout / 10`` seconds of capture time, and until then the queue alone
        would keep every finished connection (tracker, buffered records) alive: on a busy link that was
        most of the peak memory. Compacting once half the queue is finished keeps the cost amortised O(1).
        """
        self._order = deque(connection for connection in self._order if connection.tracked)
        self._finished_in_order = 0

    def expire(self, now: float) -> None:
        """Report and drop the connections silent for longer than the idle timeout at ``now``."""
        idle = self._idle
        kept: deque[C] = deque()
        for connection in self._order:
            if not connection.tracked:
                continue
            if now - connection.last_seen > idle:
                self._stats.idle_evictions += not connection.reported
                self.finish(connection, EndReason.IDLE)
            else:
                kept.append(connection)
        self._order = kept
        self._finished_in_order = 0

    def flush(self) -> None:
        """End of input: report every connection still open."""
        for connection in list(self._order):
            if connection.tracked:
                self._end(connection, EndReason.CAPTURE_END)
        self._order.clear()
        self._finished_in_order = 0


class Sweeper:
    """One clock for every transport's idle sweep: the capture's time, advanced by any packet."""

    __slots__ = ("_every", "_next", "_tables")

    def __init__(self, tables: list[ConnectionTable[Connection]], limits: Limits) -> None:
        self._tables = tables
        self._every = max(1.0, limits.idle_timeout / 10)
        self._next = 0.0

    def join(self, table: ConnectionTable[Connection]) -> None:
        """A table made after the others (the first UDP datagram): swept from the next tick on."""
        self._tables.append(table)

    def tick(self, timestamp: float) -> None:
        if timestamp >= self._next:
            self.expire(timestamp)

    def expire(self, now: float) -> None:
        self._next = now + self._every
        for table in self._tables:
            table.expire(now)
