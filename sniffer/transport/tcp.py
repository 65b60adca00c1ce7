"""The flow table: TCP segments in, one :class:`ConnectionReport` per TLS connection out.

A flow is followed only while it can still change its report. Once settled it stays in the table as a
``done`` entry so that its later packets (bulk data) cost one dictionary look-up, until its teardown
or the idle timeout removes it. Flows are keyed by both directed 4-tuples, so a packet needs one
look-up whichever way it travels.

A flow's reassemblers and tracker are allocated with its first payload (or FIN): a flood of SYNs that
never carry data costs only the small :class:`_Flow` record each (see bench/resource_bounds.py).
"""

from __future__ import annotations

from typing import Final

from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_sslv2_client_hello
from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.preamble import classify_preamble, find_client_hello, find_server_response, is_sslv2_client_hello
from helloscope.parsers.records import RecordReader
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.handshake.decryption import decryption_of
from helloscope.sniffer.handshake.finish import TransportEnd, finish_connection
from helloscope.sniffer.handshake.settlement import keys_can_follow
from helloscope.sniffer.handshake.tracker import ConnectionTracker
from helloscope.sniffer.report.model import ConnectionReport, Endpoints, Preamble, TcpSummary
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Connection, ConnectionTable, Emit, Limits
from helloscope.sniffer.transport.reassembly import StreamReassembler
from helloscope.sniffer.vocabulary import EndReason, Sender, Transport

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

# Longest signature the TLS-start scan looks for: re-scan this much of the old buffer on new data.
_SIGNATURE_OVERLAP: Final = 11


class _Direction:
    """One endpoint's byte stream: reassembly, then the search for TLS, then record framing."""

    __slots__ = ("broken", "pending", "preamble", "records", "scanned", "stream")

    def __init__(self, limits: Limits, isn: int | None) -> None:
        self.stream = StreamReassembler(limits.max_stream_bytes, limits.max_out_of_order_bytes)
        if isn is not None:
            self.stream.syn(isn)
        self.pending = bytearray()  # bytes before TLS was found in this direction
        self.scanned = 0
        self.preamble = b""  # plaintext that preceded TLS, kept to name the protocol
        self.records: RecordReader | None = None
        self.broken = False  # framing lost: later bytes of this direction are ignored

    def stop(self) -> None:
        self.broken = True
        self.records = None
        self.pending = bytearray()


_NO_ISN: Final[tuple[int | None, int | None]] = (None, None)


class _Flow(Connection):
    __slots__ = ("client", "fins", "isn", "keys", "reset_by", "sides", "tls", "tracker")

    def __init__(self, key: tuple[bytes, int, bytes, int], timestamp: float) -> None:
        super().__init__(timestamp)
        reverse = (key[2], key[3], key[0], key[1])
        self.keys = (key, reverse)
        # Allocated by TcpTable._allocate with the first payload or FIN; index 0: sender of the first packet.
        self.sides: tuple[_Direction, _Direction] | None = None
        self.tracker: ConnectionTracker | None = None
        self.isn = _NO_ISN  # SYN sequence numbers seen before the sides exist
        self.fins = 0  # bit 1 << side: that side sent a FIN
        self.client: int | None = None
        self.reset_by: int | None = None
        self.tls = False  # the client's first TLS record was found: the flow will be reported

    def role(self, side: int) -> Sender:
        return Sender.CLIENT if side == self.client else Sender.SERVER


class TcpTable(ConnectionTable[_Flow]):
    """TCP segments in, one report per TLS connection out."""

    def __init__(
        self,
        emit: Emit,
        stats: RunStats,
        limits: Limits = DEFAULT_LIMITS,
        ports: frozenset[int] = frozenset(),
        keys: KeyLog | None = None,
    ) -> None:
        super().__init__(emit, stats, limits)
        self._keys = keys
        self._ports = ports
        self._flows: dict[tuple[bytes, int, bytes, int], _Flow] = {}

    # ----- packets -------------------------------------------------------------------------------

    def packet(self, timestamp: float, segment: Segment) -> None:
        # One unpack instead of an attribute look-up per field: this runs for every TCP segment.
        _, src, dst, sport, dport, seq, _, flags, payload, snapped = segment
        key = (src, sport, dst, dport)
        flow = self._flows.get(key)
        if flow is not None and self.ended_on_arrival(flow, timestamp):
            flow = None
        if flow is None:
            if not payload and not flags & SYN:
                return  # a bare ACK/FIN/RST of a flow we do not follow
            if self._ports and sport not in self._ports and dport not in self._ports:
                return
            flow = self._open(key, timestamp)
        elif flow.done:
            if flags & (FIN | RST):
                self._teardown(flow, flow.keys.index(key), flags)
            return
        elif (
            flags & SYN
            and not flags & ACK
            and flow.sides is not None
            and flow.sides[flow.keys.index(key)].stream.delivered
        ):
            self.finish(flow, EndReason.PORT_REUSE)
            flow = self._open(key, timestamp)
        side = 0 if key == flow.keys[0] else 1
        if flags & SYN:
            if flow.sides is not None:
                flow.sides[side].stream.syn(seq)
            elif flow.isn[side] is None:
                flow.isn = (seq, flow.isn[1]) if side == 0 else (flow.isn[0], seq)
            if flow.client is None:
                flow.client = 1 - side if flags & ACK else side
        # Only bytes reaching the tracker can settle a connection: a bare ACK skips that check.
        tracked = False
        if payload:
            sides, tracker = self._allocate(flow)
            direction = sides[side]
            if not direction.broken:
                stream = direction.stream
                gaps = stream.gaps
                data = stream.add(seq, payload)
                if snapped:
                    tracker.note("snaplen_cut_payload")
                if stream.gaps != gaps and direction.records is not None:
                    # Record framing cannot survive lost bytes; what was seen before the hole stands.
                    tracker.stream_broken(flow.role(side), "stream_gap")
                    direction.stop()
                    tracked = True
                elif data:
                    if direction.records is not None:
                        self._frame(flow, direction, tracker, side, data, timestamp)
                    else:
                        self._search(flow, sides, tracker, side, data, timestamp)
                    tracked = True
        if flags & (FIN | RST) and not flow.done:
            self._teardown(flow, side, flags)
        elif tracked and not flow.done and tracker.settled and not self._follow_with_keys(tracker):
            self.settle(flow, EndReason.HANDSHAKE_SETTLED)

    def _allocate(self, flow: _Flow) -> tuple[tuple[_Direction, _Direction], ConnectionTracker]:
        """The flow's byte-stream state, made with its first payload."""
        if flow.sides is None or flow.tracker is None:
            limits = self._limits
            flow.sides = (_Direction(limits, flow.isn[0]), _Direction(limits, flow.isn[1]))
            flow.tracker = ConnectionTracker(keep_protected=self._keys_can_open())
            flow.isn = _NO_ISN
        return flow.sides, flow.tracker

    def _keys_can_open(self) -> bool:
        """Whether a new connection's protected records are worth keeping for the key log.

        No key log, or one sealed empty (nothing followed, no capture secrets to come), means no key can
        ever open them. Asked per new flow, so a key log sealed after the table was made counts.
        """
        keys = self._keys
        return not self._limits.fast_path or (keys is not None and (not keys.sealed or len(keys) > 0))

    def _follow_with_keys(self, tracker: ConnectionTracker) -> bool:
        """Keep a finished TLS <= 1.2 connection open when the key log can read what follows."""
        session = tracker.session()
        if not keys_can_follow(tracker, session.client_random if session else None, self._keys):
            return False
        tracker.follow_after_handshake = True
        return True

    # ----- flow lifecycle ------------------------------------------------------------------------

    def _open(self, key: tuple[bytes, int, bytes, int], timestamp: float) -> _Flow:
        flow = _Flow(key, timestamp)
        self._admit(flow)
        self._flows[flow.keys[0]] = flow
        self._flows[flow.keys[1]] = flow
        return flow

    def _teardown(self, flow: _Flow, side: int, flags: int) -> None:
        if flags & RST:
            flow.reset_by = side
            self.finish(flow, EndReason.RESET)
            return
        flow.fins |= 1 << side
        if flow.fins == 3:
            self.finish(flow, EndReason.CLOSED)

    def _forget(self, flow: _Flow) -> None:
        for key in flow.keys:
            if self._flows.get(key) is flow:
                del self._flows[key]

    # ----- byte streams --------------------------------------------------------------------------

    def _search(
        self,
        flow: _Flow,
        sides: tuple[_Direction, _Direction],
        tracker: ConnectionTracker,
        side: int,
        data: bytes,
        timestamp: float,
    ) -> None:
        """Bytes of a direction whose TLS start is not found yet: look for it again with them."""
        sides[side].pending += data
        self._locate_tls(flow, sides, tracker, timestamp)

    def _frame(
        self, flow: _Flow, direction: _Direction, tracker: ConnectionTracker, side: int, data: bytes, timestamp: float
    ) -> None:
        assert direction.records is not None
        role = flow.role(side)
        reader = direction.records
        try:
            records = reader.feed(data)
        except ParseError as error:
            tracker.stream_broken(role, f"record_layer: {error.what}")
            direction.stop()
            return
        for record in records:
            tracker.record(role, record, timestamp)
        if reader.error is not None:
            # Records before the break were delivered above; the break itself ends this direction.
            tracker.stream_broken(role, f"record_layer: {reader.error.what}")
            direction.stop()

    def _locate_tls(
        self, flow: _Flow, sides: tuple[_Direction, _Direction], tracker: ConnectionTracker, timestamp: float
    ) -> None:
        """Find the ClientHello (which also tells who the client is), then the server's answer."""
        if flow.client is None or sides[flow.client].records is None:
            candidates = (flow.client,) if flow.client is not None else (0, 1)
            for side in candidates:
                assert side is not None
                if self._start_client(flow, sides[side], tracker, side, timestamp):
                    break
        client = flow.client
        if client is not None and sides[client].records is not None:
            server = sides[1 - client]
            if server.records is None and server.pending:
                start = find_server_response(bytes(server.pending), max(0, server.scanned - _SIGNATURE_OVERLAP))
                server.scanned = len(server.pending)
                if start is not None:
                    self._start_records(flow, server, tracker, 1 - client, start, timestamp)
        self._give_up_if_not_tls(flow, sides, tracker)

    def _start_client(
        self, flow: _Flow, direction: _Direction, tracker: ConnectionTracker, side: int, timestamp: float
    ) -> bool:
        data = bytes(direction.pending)
        if not data:
            return False
        if direction.scanned == 0 and is_sslv2_client_hello(data):
            return self._start_sslv2(flow, direction, tracker, side, data, timestamp)
        start = find_client_hello(data, max(0, direction.scanned - _SIGNATURE_OVERLAP))
        direction.scanned = len(data)
        if start is None:
            return False
        flow.client = side
        flow.tls = True
        self._start_records(flow, direction, tracker, side, start, timestamp)
        return True

    def _start_sslv2(
        self, flow: _Flow, direction: _Direction, tracker: ConnectionTracker, side: int, data: bytes, timestamp: float
    ) -> bool:
        length = ((data[0] & 0x7F) << 8 | data[1]) + 2
        if len(data) < length:
            return False  # wait for the rest of the SSLv2 record
        flow.client = side
        flow.tls = True
        try:
            tracker.sslv2_client_hello(parse_sslv2_client_hello(data[:length]))
        except ParseError as error:
            tracker.note(f"client_sslv2_hello_malformed: {error.what}")
        direction.pending = bytearray(data)
        self._start_records(flow, direction, tracker, side, length, timestamp)
        return True

    def _start_records(
        self, flow: _Flow, direction: _Direction, tracker: ConnectionTracker, side: int, start: int, timestamp: float
    ) -> None:
        data = bytes(direction.pending)
        direction.preamble = data[:start]
        direction.pending = bytearray()
        direction.records = RecordReader()
        if len(data) > start:
            self._frame(flow, direction, tracker, side, data[start:], timestamp)

    def _give_up_if_not_tls(
        self, flow: _Flow, sides: tuple[_Direction, _Direction], tracker: ConnectionTracker
    ) -> None:
        bound = self._limits.max_preamble_bytes
        client = flow.client
        if client is not None and sides[client].records is not None:
            server = sides[1 - client]
            if server.records is None and len(server.pending) > bound:
                tracker.stream_broken(Sender.SERVER, "tls_not_found")
                server.stop()
            return
        if any(len(direction.pending) > bound for direction in sides):
            self._stats.non_tls_flows += 1
            for direction in sides:
                direction.pending = bytearray()
            flow.done = True
            flow.reported = True  # nothing to report: never TLS within the bound

    # ----- reports -------------------------------------------------------------------------------

    def _report(self, flow: _Flow, reason: EndReason) -> ConnectionReport | None:
        tracker, sides = flow.tracker, flow.sides
        if sides is None or tracker is None:
            return None  # no payload ever arrived: nothing to count, never TLS
        streams = [direction.stream for direction in sides]
        stats = self._stats
        for stream in streams:
            stats.out_of_order_segments += stream.out_of_order
            stats.retransmitted_segments += stream.retransmitted
            stats.overlap_conflicts += stream.conflicts
            stats.stream_gaps += stream.gaps
            stats.stream_byte_cap_hits += stream.capped
        for direction in sides:
            direction.pending = bytearray()
            direction.records = None
        if not flow.tls or flow.client is None:
            return None
        client_stream = streams[flow.client]
        decryption = decryption_of(
            tracker.session(), tracker.protected_seen, tracker.protected if tracker.keep_protected else None, self._keys
        )
        client, server = flow.client, 1 - flow.client
        client_key = flow.keys[client]
        tcp = TcpSummary(
            client_bytes=streams[client].delivered,
            server_bytes=streams[server].delivered,
            out_of_order=sum(stream.out_of_order for stream in streams),
            retransmitted=sum(stream.retransmitted for stream in streams),
            overlap_conflicts=sum(stream.conflicts for stream in streams),
            gaps=sum(stream.gaps for stream in streams),
            byte_cap_reached=any(stream.capped for stream in streams),
            client_fin=bool(flow.fins >> client & 1),
            server_fin=bool(flow.fins >> server & 1),
            reset_by=None if flow.reset_by is None else flow.role(flow.reset_by),
        )
        end = TransportEnd(
            endpoints=Endpoints(client_key[0], client_key[1], client_key[2], client_key[3], Transport.TCP),
            start=flow.start,
            end=flow.last_seen,
            reason=reason,
            ja4_transport="t",
            server_closed=bool(flow.fins >> server & 1) or flow.reset_by == server,
            missing_hello_detail=": segments missing" if client_stream.pending_bytes or client_stream.gaps else "",
            preamble=_preamble(sides[client].preamble, sides[server].preamble),
            tcp=tcp,
        )
        return finish_connection(tracker, decryption, end)


def _preamble(client: bytes, server: bytes) -> Preamble | None:
    if not client and not server:
        return None
    return Preamble(classify_preamble(client, server), len(client), len(server))
