"""The flow table: TCP segments in, one :class:`ConnectionReport` per TLS connection out.

A flow is followed only while it can still change its report. Once settled it stays in the table as a
``done`` entry so that its later packets (bulk data) cost one dictionary look-up, until its teardown
or the idle timeout removes it. Flows are keyed by both directed 4-tuples, so a packet needs one
look-up whichever way it travels.

A flow's reassemblers and tracker are allocated with its first payload (or FIN): a flood of SYNs that
never carry data costs only the small :class:`_Flow` record each (see bench/resource_bounds.py).

TCP shapes a passive observer must read as the endpoints do:

- A FIN ends its direction at its own sequence number, not when it is seen: a FIN that overtook the
  last data segments waits for them, or for the receiver to acknowledge it (the bytes reached the
  receiver but not the capture), or for the idle timeout, or the capture's end.
- Data in a SYN (TCP Fast Open) starts at ISN + 1 like any other.
- An RST ends a followed connection only when its sequence number is in the window. A passive observer
  knows neither the receive window nor its scale, so "in the window" is: within ``RST_WINDOW`` bytes, either
  way, of the next sequence number the sensor expects from the RST's sender (the end of the bytes
  delivered so far). That is wider than any window a connection still in its handshake has open,
  and an RST placed outside it by a blind injector or an evasion tool, which the real receiver drops,
  is listed as ``tcp_rst_out_of_window``. Where that position is unknown (no SYN or data from the
  sender yet, a direction past its byte cap or broken, a flow already reported) the RST is honoured.
- A payload segment whose TCP checksum is wrong cannot take "first copy wins" from a right copy: when
  its sender is known to write valid checksums (one of its segments in this flow had one) and the packet
  is whole, it is held back (one per direction) instead of reassembled. A later copy of any of its bytes
  that is not wrong drops it (listed as ``tcp_bad_checksum_dropped``); the receiver acknowledging its
  bytes, its sender moving on to other bytes, or the connection's end delivers it, as before: captures
  edited after the fact (anonymised corpora) keep wrong checksums the receiver evidently accepted. A
  zero checksum, or one holding only the pseudo-header sum (checksum offload on the capturing host,
  GRO), is not wrong; a flow whose every checksum is offloaded cannot be judged. Checked only where a
  decoy does most harm for least cost: SYNs, and each direction's bytes up to the end of its first TLS
  record (the ClientHello, the ServerHello) in a flow not yet reported.
- A 4-tuple reused after its connection was reported without FIN or RST starts a new connection with
  a new SYN (a new ISN, not a retransmission) or a new ClientHello at the start of a segment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_client_hello, parse_sslv2_client_hello
from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.preamble import (
    SIGNATURE_SPAN,
    classify_preamble,
    find_client_hello,
    find_server_response,
    is_sslv2_client_hello,
    sslv2_client_hello_undecided,
)
from helloscope.parsers.records import RecordReader
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.handshake.decryption import decryption_of
from helloscope.sniffer.handshake.finish import TransportEnd, finish_connection
from helloscope.sniffer.handshake.settlement import MAX_TRACED_RECORDS, keys_can_follow
from helloscope.sniffer.handshake.tracker import ConnectionTracker
from helloscope.sniffer.report.model import ConnectionReport, Endpoints, Preamble, RecordTrace, TcpSummary
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Connection, ConnectionTable, Emit, Limits
from helloscope.sniffer.transport.reassembly import RECENT_WINDOW, StreamReassembler
from helloscope.sniffer.vocabulary import EndReason, Sender, Transport

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

# What a flow costs beyond its buffers, measured with tracemalloc (bench/resource_bounds.py --only
# flow-memory and --only half-open): a flow that has only seen SYNs, and one with its stream state and
# a parsed ClientHello.
HALF_OPEN_COST: Final = 310
FLOW_COST: Final = 5_500
# Longest signature the TLS-start scan looks for (a hello header spread over six 1-byte records):
# re-scan this much of the old buffer on new data.
_SIGNATURE_OVERLAP: Final = SIGNATURE_SPAN
_SEQ_MOD: Final = 1 << 32
_SEQ_MASK: Final = _SEQ_MOD - 1
_SEQ_HALF: Final = 1 << 31
# An RST this far from where the sensor expects its sender to be, either way, is outside any window a
# connection still in its handshake has open (see the module docstring).
RST_WINDOW: Final = 1 << 17
_HANDSHAKE_RECORD: Final = 0x16
# Checksums are verified up to the end of each direction's first TLS record (the ClientHello, the
# ServerHello), at most this far into the stream while TLS is still being looked for. Verifying every
# segment until a connection settles cost 10-20% on a handshake-heavy capture; this costs a few segments
# per connection.
_MAX_RECORD: Final = 5 + (1 << 14) + 2048


class _Direction:
    """One endpoint's byte stream: reassembly, then the search for TLS, then record framing."""

    __slots__ = ("base", "broken", "fin", "pending", "preamble", "records", "scanned", "stream", "suspect", "verified")

    def __init__(self, limits: Limits, isn: int | None) -> None:
        self.stream = StreamReassembler(limits.max_stream_bytes, limits.max_out_of_order_bytes)
        # Sequence number of stream offset 0, as the reassembler fixes it (the SYN's ISN + 1, else the
        # first data segment's): where a FIN or an RST of this direction lies in the stream.
        self.base: int | None = None
        self.fin: int | None = None  # sequence number of a FIN waiting for the bytes before it
        # A payload segment with a wrong checksum, held back: (timestamp, sequence number, payload)
        self.suspect: tuple[float, int, bytes] | None = None
        # Stream offset up to which TCP checksums are verified: the end of the first TLS record once known.
        self.verified = limits.max_preamble_bytes + _MAX_RECORD
        if isn is not None:
            self.syn(isn)
        self.pending = bytearray()  # bytes before TLS was found in this direction
        self.scanned = 0
        self.preamble = b""  # plaintext that preceded TLS, kept to name the protocol
        self.records: RecordReader | None = None
        self.broken = False  # framing lost: later bytes of this direction are ignored

    def syn(self, isn: int) -> None:
        self.stream.syn(isn)
        if self.base is None:
            self.base = (isn + 1) & _SEQ_MASK

    def next_seq(self) -> int | None:
        """The sequence number of the next byte this direction's stream waits for; None when unknown."""
        stream = self.stream
        if self.base is None or self.broken or stream.capped:
            return None
        return (self.base + stream.delivered) & _SEQ_MASK

    def reached(self, seq: int) -> bool:
        """Every byte before ``seq`` was delivered (or never can be: the position is unknown)."""
        expected = self.next_seq()
        return expected is None or (seq - expected) & _SEQ_MASK >= _SEQ_HALF or seq == expected

    def stop(self) -> None:
        self.broken = True
        self.records = None
        self.pending = bytearray()


_NO_ISN: Final[tuple[int | None, int | None]] = (None, None)


class _Flow(Connection):
    __slots__ = ("checksums", "client", "fins", "isn", "keys", "reset_by", "sides", "tls", "tracker")

    def __init__(self, key: tuple[bytes, int, bytes, int], timestamp: float) -> None:
        super().__init__(timestamp)
        reverse = (key[2], key[3], key[0], key[1])
        self.keys = (key, reverse)
        # Allocated by TcpTable._allocate with the first payload or FIN; index 0: sender of the first packet.
        self.sides: tuple[_Direction, _Direction] | None = None
        self.tracker: ConnectionTracker | None = None
        self.isn = _NO_ISN  # each side's SYN sequence number: tells a new connection from a retransmitted SYN
        self.fins = 0  # bit 1 << side: that side's FIN took effect (every byte before it was delivered)
        self.checksums = 0  # bit 1 << side: that side wrote a valid TCP checksum in this flow
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
        self._max_memory = limits.max_memory
        # With the C core, the packets of reported flows that only keep them alive never reach packet():
        # the skimmer does what packet() would (look-up, last-seen time); the pipeline calls it first, or
        # a capture reader's sieve does before the packet is even made into objects.
        self.skimmer: Any = None
        self.skim: Callable[[int, bytes, float], Any] | None = None
        if fast.FlowSkimmer is not None and limits.fast_path:
            # It also takes the in-order bytes of keyless TLS 1.3 past the ServerHello that only lengthen
            # the record trace (most packets of a handshake-heavy capture), as packet() would take them.
            trace = (RecordTrace, Sender.CLIENT, Sender.SERVER, MAX_TRACED_RECORDS, FLOW_COST, RECENT_WINDOW)
            self.skimmer = fast.FlowSkimmer(self._flows, self, _Flow, float(limits.idle_timeout), trace)
            self.skim = self.skimmer.decode

    # ----- packets -------------------------------------------------------------------------------

    def packet(self, timestamp: float, segment: Segment) -> None:
        # One unpack instead of an attribute look-up per field: this runs for every TCP segment.
        _, src, dst, sport, dport, seq, ack, flags, payload, snapped, frame, transport = segment
        if self._memory > self._max_memory:
            self.shed_memory()
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
            # Reported: only a new connection on the same 4-tuple (a new SYN, a new ClientHello) or the
            # teardown matters. The first test is all a bulk data segment costs.
            if not (flags & SYN or payload and payload[0] == _HANDSHAKE_RECORD) or not _starts_anew(
                flow, key, seq, flags, payload
            ):
                if flags & (FIN | RST):
                    self._teardown(flow, flow.keys.index(key), flags)
                return
            self.finish(flow, EndReason.PORT_REUSE)
            flow = self._open(key, timestamp)
        elif flags & SYN and not flags & ACK and flow.sides is not None:
            index = flow.keys.index(key)
            if flow.sides[index].stream.delivered and seq != flow.isn[index]:
                self.finish(flow, EndReason.PORT_REUSE)
                flow = self._open(key, timestamp)
        side = 0 if key == flow.keys[0] else 1
        if flags & SYN:
            if flow.isn[side] is None:
                flow.isn = (seq, flow.isn[1]) if side == 0 else (flow.isn[0], seq)
            if flow.sides is not None:
                flow.sides[side].syn(seq)
            if flow.client is None:
                flow.client = 1 - side if flags & ACK else side
            if frame and not snapped and _checksum(src, dst, frame, transport, len(payload)) == _VALID:
                flow.checksums |= 1 << side
            seq = (seq + 1) & _SEQ_MASK  # data in a SYN (TCP Fast Open) starts after the SYN's number
        # Only bytes reaching the tracker can settle a connection: a bare ACK skips that check.
        tracked = False
        sides = flow.sides
        if payload:
            sides, tracker = self._allocate(flow)
            direction = sides[side]
            if not direction.broken:
                if (
                    frame
                    and not snapped
                    and (direction.base is None or (seq - direction.base) & _SEQ_MASK < direction.verified)
                ):
                    state = _checksum(src, dst, frame, transport, len(payload))
                    if state == _VALID:
                        flow.checksums |= 1 << side
                    elif state == _WRONG and flow.checksums >> side & 1:
                        # The receiver drops it: hold it until a copy that is not wrong contradicts it, the
                        # receiver acknowledges its bytes, or the sender moves on (see _suspect).
                        held, direction.suspect = direction.suspect, (timestamp, seq, payload)
                        if held is not None:
                            tracked = self._data(flow, sides, tracker, side, *held)
                        payload = b""
                if direction.suspect is not None and payload:
                    tracked = self._suspect(flow, sides, tracker, side, seq, payload)
                if payload:
                    tracked = self._data(flow, sides, tracker, side, timestamp, seq, payload) or tracked
                    if snapped:
                        tracker.note("snaplen_cut_payload")
        acked_fin = False
        if sides is not None and flags & ACK:
            other = sides[1 - side]
            if other.fin is not None and (ack - other.fin - 1) & _SEQ_MASK < _SEQ_HALF:
                # The receiver acknowledged the waiting FIN: it has every byte before it, seen here or not.
                other.fin = None
                acked_fin = True
            if other.suspect is not None and (ack - other.suspect[1] - len(other.suspect[2])) & _SEQ_MASK < _SEQ_HALF:
                # The receiver took those bytes, and no other copy of them was seen: they were these.
                tracker = flow.tracker
                assert tracker is not None
                held, other.suspect = other.suspect, None
                tracked = self._data(flow, sides, tracker, 1 - side, *held) or tracked
        if flags & (FIN | RST) and not flow.done:
            if flags & RST:
                self._reset(flow, side, seq)
            else:
                self._fin(flow, side, (seq + len(payload)) & _SEQ_MASK)
        elif tracked and not flow.done and tracker.settled and not self._follow_with_keys(tracker):
            self.settle(flow, EndReason.HANDSHAKE_SETTLED)
        if acked_fin and flow.tracked:
            self._teardown(flow, 1 - side, FIN)
        if (
            tracked
            and flow.tracked
            and sides is not None
            and (flow.done or sides[0].fin is not None or sides[1].fin is not None)
        ):
            self._fins_due(flow)
        if payload and flow.tracked:
            self.charge(flow, _cost(flow))

    def _data(
        self,
        flow: _Flow,
        sides: tuple[_Direction, _Direction],
        tracker: ConnectionTracker,
        side: int,
        timestamp: float,
        seq: int,
        payload: bytes,
    ) -> bool:
        """A direction's payload into its stream, and what became contiguous into the tracker: whether any did."""
        direction = sides[side]
        if direction.broken:
            return False
        stream = direction.stream
        if direction.base is None:
            direction.base = seq
        gaps = stream.gaps
        data = stream.add(seq, payload)
        if stream.gaps != gaps and direction.records is not None:
            # Record framing cannot survive lost bytes; what was seen before the hole stands.
            tracker.stream_broken(flow.role(side), "stream_gap")
            direction.stop()
            return True
        if not data:
            return False
        if direction.records is not None:
            self._frame(flow, direction, tracker, side, data, timestamp)
        else:
            self._search(flow, sides, tracker, side, data, timestamp)
        return True

    def _suspect(
        self,
        flow: _Flow,
        sides: tuple[_Direction, _Direction],
        tracker: ConnectionTracker,
        side: int,
        seq: int,
        payload: bytes,
    ) -> bool:
        """A segment that is not wrong, from a sender whose wrong-checksum segment is held: if it overlaps
        the held one, the held one was a decoy (or damaged) and is dropped; otherwise the sender has moved
        on and the held bytes are delivered first, as a capture that damaged them would have them."""
        direction = sides[side]
        assert direction.suspect is not None
        held = direction.suspect
        direction.suspect = None
        held_seq, held_payload = held[1], held[2]
        if (seq - held_seq) & _SEQ_MASK < len(held_payload) or (held_seq - seq) & _SEQ_MASK < len(payload):
            tracker.note("tcp_bad_checksum_dropped")
            return False
        return self._data(flow, sides, tracker, side, *held)

    def _fins_due(self, flow: _Flow) -> None:
        """FINs that overtook data take effect once their bytes are in, or once the flow is reported
        (a reported flow's FINs take effect as they arrive)."""
        assert flow.sides is not None
        for side, direction in enumerate(flow.sides):
            if direction.fin is not None and (flow.done or direction.reached(direction.fin)):
                direction.fin = None
                self._teardown(flow, side, FIN)
                if not flow.tracked:
                    return

    def _fin(self, flow: _Flow, side: int, seq: int) -> None:
        """A FIN at sequence number ``seq``: it ends its direction once every byte before it is in."""
        sides = flow.sides
        if sides is None:
            isn = flow.isn[side]
            if isn is None or seq == (isn + 1) & _SEQ_MASK:
                self._teardown(flow, side, FIN)
                return
            sides, _ = self._allocate(flow)  # bytes are missing before the FIN: wait for them
        direction = sides[side]
        if direction.reached(seq):
            direction.fin = None
            self._teardown(flow, side, FIN)
        elif direction.fin is None:
            direction.fin = seq

    def _reset(self, flow: _Flow, side: int, seq: int) -> None:
        """An RST ends the connection when its sequence number is in the window (module docstring)."""
        if flow.sides is not None:
            expected = flow.sides[side].next_seq()
        else:
            isn = flow.isn[side]
            expected = None if isn is None else (isn + 1) & _SEQ_MASK
        if expected is not None and RST_WINDOW < (seq - expected) & _SEQ_MASK < _SEQ_MOD - RST_WINDOW:
            if flow.tracker is not None:
                flow.tracker.note("tcp_rst_out_of_window")
            return
        self._teardown(flow, side, RST)

    def _allocate(self, flow: _Flow) -> tuple[tuple[_Direction, _Direction], ConnectionTracker]:
        """The flow's byte-stream state, made with its first payload."""
        if flow.sides is None or flow.tracker is None:
            limits = self._limits
            flow.sides = (_Direction(limits, flow.isn[0]), _Direction(limits, flow.isn[1]))
            flow.tracker = ConnectionTracker(keep_protected=self._keys_can_open())
        return flow.sides, flow.tracker

    def _keys_can_open(self) -> bool:
        """Whether a new connection's protected records are worth keeping for the key log.

        No key log, or one sealed empty (nothing followed, no capture secrets to come), means no key can
        ever open them. Asked per new flow, so a key log sealed after the table was made counts.
        """
        keys = self._keys
        return not self._limits.fast_path or (keys is not None and (not keys.sealed or len(keys) > 0))

    def _follow_with_keys(self, tracker: ConnectionTracker) -> bool:
        """Keep a connection that would settle open when the key log can read what follows (keys_can_follow)."""
        session = tracker.session()
        if not keys_can_follow(tracker, session.client_random if session else None, self._keys):
            return False
        tracker.follow_after_handshake = True
        return True

    # ----- flow lifecycle ------------------------------------------------------------------------

    def _open(self, key: tuple[bytes, int, bytes, int], timestamp: float) -> _Flow:
        flow = _Flow(key, timestamp)
        self._admit(flow)
        self.charge(flow, HALF_OPEN_COST)
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
        tracker.record_all(role, records, timestamp)
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
        if direction.scanned == 0:
            if is_sslv2_client_hello(data):
                return self._start_sslv2(flow, direction, tracker, side, data, timestamp)
            if sslv2_client_hello_undecided(data):
                return False  # under 5 bytes: scanning now would rule SSLv2 out for good
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
        direction.records = fast.RecordReader()  # the C core's framer when it is built, the same records
        if len(data) >= start + 5:
            direction.verified = start + 5 + (data[start + 3] << 8 | data[start + 4])
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
            if not flow.reported:  # its later packets are not reassembled: what they had counts now
                self._count_streams(sides)
            for direction in sides:
                direction.pending = bytearray()
            flow.done = True
            flow.reported = True  # nothing to report: never TLS within the bound

    # ----- reports -------------------------------------------------------------------------------

    def _count_streams(self, sides: tuple[_Direction, _Direction]) -> None:
        """Add a flow's reassembly counters to the run's, once, when it stops being reassembled."""
        stats = self._stats
        for direction in sides:
            stream = direction.stream
            stats.out_of_order_segments += stream.out_of_order
            stats.retransmitted_segments += stream.retransmitted
            stats.overlap_conflicts += stream.conflicts
            stats.stream_gaps += stream.gaps
            stats.stream_byte_cap_hits += stream.capped

    def _report(self, flow: _Flow, reason: EndReason) -> ConnectionReport | None:
        tracker, sides = flow.tracker, flow.sides
        if sides is None or tracker is None:
            return None  # no payload ever arrived: nothing to count, never TLS
        for side, direction in enumerate(sides):
            if direction.suspect is not None:  # nothing contradicted it to the end: its bytes stand
                held, direction.suspect = direction.suspect, None
                self._data(flow, sides, tracker, side, *held)
        streams = [direction.stream for direction in sides]
        self._count_streams(sides)
        for direction in sides:
            direction.pending = bytearray()
            direction.records = None
            direction.stream.release()  # reported: held segments and the retransmission window serve no one
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


_VALID: Final = 1
_WRONG: Final = 2
_UNKNOWN: Final = 3  # zero, or only the pseudo-header sum (offloaded), or the header is not all there


def _checksum(src: bytes, dst: bytes, frame: bytes, transport: int, payload_length: int) -> int:
    """Whether the TCP checksum of the segment at ``frame[transport:]`` is valid, wrong or unknown.

    The ones' complement sum of 16-bit words is the bytes' value as one big number modulo 0xFFFF
    (2**16 = 1 mod 0xFFFF), so ``int.from_bytes`` sums them in C. IPv4 and IPv6 pseudo-headers sum alike:
    the addresses, the protocol and the TCP length.
    """
    if len(frame) < transport + 20:
        return _UNKNOWN
    length = (frame[transport + 12] >> 4) * 4 + payload_length
    field = frame[transport + 16] << 8 | frame[transport + 17]
    if not field or len(frame) < transport + length:
        return _UNKNOWN
    pseudo = int.from_bytes(src + dst, "big") + 6 + length
    if (field - pseudo) % 0xFFFF == 0:
        return _UNKNOWN  # checksum offload (or GRO): the field holds the pseudo-header sum only
    body = int.from_bytes(frame[transport : transport + length], "big")
    if length & 1:
        body <<= 8  # an odd last byte is the high byte of a word padded with zero
    return _VALID if (pseudo + body) % 0xFFFF == 0 else _WRONG


def _starts_anew(flow: _Flow, key: tuple[bytes, int, bytes, int], seq: int, flags: int, payload: bytes) -> bool:
    """A segment on the 4-tuple of a reported flow that begins a new connection: a SYN with a new ISN
    (not a retransmitted one), or a ClientHello at the start of its payload."""
    if flags & SYN:
        return seq != flow.isn[flow.keys.index(key)]
    if find_client_hello(payload[:_SIGNATURE_OVERLAP]) != 0:
        return False
    # A plausible record header; the encrypted stream of the old connection could show one by chance
    # (about once in 10**8 handshake records), so the hello must also fit its record and parse when whole.
    record_length = payload[3] << 8 | payload[4]
    body_length = int.from_bytes(payload[6:9], "big")
    if body_length + 4 > record_length:
        return False
    if len(payload) >= 9 + body_length:
        try:
            parse_client_hello(payload[9 : 9 + body_length])
        except ParseError:
            return False
    return True


def _cost(flow: _Flow) -> int:
    """What a flow with stream state is accounted at: its fixed part and what its buffers hold now."""
    cost = FLOW_COST
    if flow.sides is not None:
        for direction in flow.sides:
            records = direction.records
            cost += direction.stream.memory + len(direction.pending) + (records.buffered if records else 0)
    if flow.tracker is not None:
        cost += flow.tracker.protected_bytes
    return cost


def _preamble(client: bytes, server: bytes) -> Preamble | None:
    if not client and not server:
        return None
    return Preamble(classify_preamble(client, server), len(client), len(server))
