"""The QUIC connection table: UDP datagrams in, one :class:`ConnectionReport` per QUIC connection out.

QUIC carries the TLS handshake in CRYPTO frames of Initial packets, protected with keys any observer can
derive from the Destination Connection ID of the client's first Initial (RFC 9001 §5.2). This table opens
client and server Initials, reorders their CRYPTO data and hands the bare handshake messages to the same
:class:`ConnectionTracker` and correlation as TCP, so the reports look the same.

Connections are keyed by the directed 4-tuple *and* the Destination Connection ID a packet carries: the
client's original DCID (or the one a Retry chose), the server's SCID (the client's DCID afterwards) and
the client's SCID (the server's DCID). A client that opens several connections from one port, or two
connections that pick equal CIDs on different paths, stay apart. Short-header (1-RTT) packets carry no
CID length and nothing readable, so they are dropped after one byte test.

Without keys a QUIC connection settles once the client has moved on to Handshake packets after the
ServerHello (the server then discards its Initial keys, so no Initial CONNECTION_CLOSE can follow) or
when a CONNECTION_CLOSE is read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from parsers.errors import ParseError
from parsers.keylog import KeyLog
from parsers.quic import (
    CLIENT_IN,
    HANDSHAKE,
    INITIAL,
    RETRY,
    SERVER_IN,
    CryptoStream,
    LongHeader,
    PacketKeys,
    initial_keys,
    parse_datagram,
    parse_frames,
    parse_transport_parameters,
    unprotect,
)
from sniffer.correlate import conclude
from sniffer.decode import Segment
from sniffer.decryption import NO_KEYS, NOT_NEEDED, UNSUPPORTED, Decryption, summarize
from sniffer.flows import CAPTURE_END, DEFAULT_LIMITS, EVICTED, HANDSHAKE_SETTLED, IDLE, Limits, _ip_text
from sniffer.report import CLIENT, PLAINTEXT, SERVER, AlertFinding, ConnectionReport, QuicClose, QuicSummary
from sniffer.stats import RunStats
from sniffer.tracker import ConnectionTracker

QUIC_TRANSPORT_PARAMETERS: Final = 0x39
FATAL: Final = 2

Endpoint = tuple[bytes, int]
CidKey = tuple[bytes, int, bytes, int, bytes]  # src, sport, dst, dport, destination connection id


class _Connection:
    __slots__ = (
        "cids",
        "client",
        "client_handshake",
        "client_packets",
        "close",
        "done",
        "handshake_packets",
        "initial_dcid",
        "keys",
        "last_seen",
        "original_dcid",
        "reported",
        "retry",
        "server",
        "server_cid",
        "server_packets",
        "start",
        "streams",
        "tracker",
        "undecryptable",
        "version",
    )

    def __init__(self, client: Endpoint, server: Endpoint, header: LongHeader, timestamp: float) -> None:
        self.client = client
        self.server = server
        self.version = header.version
        self.original_dcid = header.dcid
        self.initial_dcid = header.dcid  # what Initial keys derive from; a Retry replaces it
        self.keys: dict[tuple[int, bytes], PacketKeys] = {}
        self.cids: list[CidKey] = []
        self.server_cid: bytes | None = None
        self.start = timestamp
        self.last_seen = timestamp
        self.done = False
        self.reported = False
        self.retry = False
        self.client_handshake = False  # the client sent a Handshake packet: its Initial phase is over
        self.client_packets = self.server_packets = self.undecryptable = self.handshake_packets = 0
        self.close: QuicClose | None = None
        self._restart()

    def _restart(self) -> None:
        self.tracker = ConnectionTracker()
        self.streams = {CLIENT: CryptoStream(), SERVER: CryptoStream()}

    def retried(self, new_dcid: bytes) -> None:
        """A Retry: the client starts over with new Initial keys and a fresh CRYPTO stream."""
        self.retry = True
        self.initial_dcid = new_dcid
        self.keys.clear()
        self._restart()

    def packet_keys(self, version: int, sender: str) -> PacketKeys:
        label = CLIENT_IN if sender == CLIENT else SERVER_IN
        cached = self.keys.get((version, label))
        if cached is None:
            cached = self.keys[(version, label)] = initial_keys(version, self.initial_dcid, label)
        return cached

    @property
    def settled(self) -> bool:
        tracker = self.tracker
        if self.close is not None or tracker.fatal_alert_seen:
            return True
        return tracker.server_hello is not None and self.client_handshake


class QuicTable:
    def __init__(
        self,
        emit: Callable[[ConnectionReport], None],
        stats: RunStats,
        limits: Limits = DEFAULT_LIMITS,
        keys: KeyLog | None = None,
    ) -> None:
        self._emit = emit
        self._stats = stats
        self._limits = limits
        self._keys = keys
        self._by_cid: dict[CidKey, _Connection] = {}
        self._order: deque[_Connection] = deque()  # creation order, for the connection cap and idle sweeps
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._order)

    # ----- datagrams -----------------------------------------------------------------------------

    def datagram(self, timestamp: float, segment: Segment) -> None:
        payload = segment.payload
        if payload and payload[0] & 0x80:  # a long header; anything else is 1-RTT data or not QUIC
            try:
                packets = parse_datagram(payload)
            except ParseError:
                packets = ()
            source: Endpoint = (segment.src, segment.sport)
            destination: Endpoint = (segment.dst, segment.dport)
            touched: _Connection | None = None
            for header in packets:
                touched = self._packet(timestamp, payload, header, source, destination) or touched
            if touched is not None and not touched.done and touched.settled:
                self._report(touched, HANDSHAKE_SETTLED)
        if timestamp >= self._next_sweep:
            self._sweep(timestamp)

    def _packet(
        self, timestamp: float, datagram: bytes, header: LongHeader, source: Endpoint, destination: Endpoint
    ) -> _Connection | None:
        if header.packet_type is None or header.version == 0:
            return None  # Version Negotiation, or a version without public Initial keys
        connection = self._by_cid.get((*source, *destination, header.dcid))
        if connection is None:
            if header.packet_type != INITIAL:
                return None
            return self._open(timestamp, datagram, header, source, destination)
        connection.last_seen = timestamp
        if connection.done:
            return None
        sender = CLIENT if source == connection.client else SERVER
        if header.packet_type == RETRY:
            if sender == SERVER and not connection.retry:
                connection.retried(header.scid)
                self._register(connection, (*connection.client, *connection.server, header.scid))
        elif header.packet_type == HANDSHAKE:
            connection.handshake_packets += 1
            connection.client_handshake |= sender == CLIENT
        elif header.packet_type == INITIAL:
            self._initial(connection, timestamp, datagram, header, sender)
        return connection

    def _open(
        self, timestamp: float, datagram: bytes, header: LongHeader, client: Endpoint, server: Endpoint
    ) -> _Connection | None:
        """A client Initial for a DCID not seen before: a new connection if it opens with that DCID."""
        try:
            unprotect(datagram, header, initial_keys(header.version, header.dcid, CLIENT_IN))
        except ParseError:
            return None  # a server Initial we lack the start of, a corrupt packet, or not QUIC at all
        while len(self._order) >= self._limits.max_flows:
            oldest = self._order.popleft()
            if not oldest.reported:
                self._stats.flow_cap_evictions += 1
            self._finish(oldest, EVICTED)
        connection = _Connection(client, server, header, timestamp)
        self._order.append(connection)
        self._stats.flows_tracked += 1
        self._register(connection, (*client, *server, header.dcid))
        self._register(connection, (*server, *client, header.scid))
        self._initial(connection, timestamp, datagram, header, CLIENT)
        return connection

    def _register(self, connection: _Connection, key: CidKey) -> None:
        self._by_cid[key] = connection
        connection.cids.append(key)

    def _initial(
        self, connection: _Connection, timestamp: float, datagram: bytes, header: LongHeader, sender: str
    ) -> None:
        try:
            packet = unprotect(datagram, header, connection.packet_keys(header.version, sender))
            frames = parse_frames(packet.payload)
        except ParseError:
            connection.undecryptable += 1
            return
        connection.version = header.version
        tracker = connection.tracker
        if sender == CLIENT:
            connection.client_packets += 1
        else:
            connection.server_packets += 1
            if connection.server_cid is None:
                # From now on the client addresses the server by the CID the server chose.
                connection.server_cid = header.scid
                self._register(connection, (*connection.client, *connection.server, header.scid))
        stream = connection.streams[sender]
        for frame in frames.crypto:
            data = stream.add(frame.offset, frame.data)
            if data:
                tracker.handshake_data(sender, data)
        close = frames.close
        if close is not None and connection.close is None:
            connection.close = QuicClose(sender, close.error_code, close.frame_type, close.reason, close.application)
            alert = close.tls_alert
            if alert is not None:
                tracker.alerts.append(AlertFinding(sender, FATAL, alert, PLAINTEXT, timestamp))

    # ----- lifecycle -----------------------------------------------------------------------------

    def flush(self) -> None:
        """End of input: report every connection still open."""
        for connection in self._order:
            self._finish(connection, CAPTURE_END)
        self._order.clear()

    def _finish(self, connection: _Connection, reason: str) -> None:
        if not connection.reported:
            self._report(connection, reason)
        for key in connection.cids:
            if self._by_cid.get(key) is connection:
                del self._by_cid[key]

    def _sweep(self, now: float) -> None:
        idle = self._limits.idle_timeout
        self._next_sweep = now + max(1.0, idle / 10)
        kept: deque[_Connection] = deque()
        for connection in self._order:
            if now - connection.last_seen > idle:
                if not connection.reported:
                    self._stats.idle_evictions += 1
                self._finish(connection, IDLE)
            else:
                kept.append(connection)
        self._order = kept

    # ----- reports -------------------------------------------------------------------------------

    def _report(self, connection: _Connection, reason: str) -> None:
        connection.done = True
        connection.reported = True
        stats = self._stats
        tracker = connection.tracker
        stats.tls_connections += 1
        client_stream = connection.streams[CLIENT]
        if not tracker.client_hellos and not any("client_hello" in note for note in tracker.anomalies):
            tracker.note("client_hello_incomplete" + (": CRYPTO data missing" if client_stream.pending_bytes else ""))
        if any(stream.capped for stream in connection.streams.values()):
            tracker.note("quic_crypto_byte_cap_reached")
        parameters = self._transport_parameters(tracker)
        handshake = tracker.handshake()
        decryption = self._decryption(tracker, connection)
        conclusion = conclude(tracker, handshake, decryption)
        if len(tracker.anomalies) != len(handshake.anomalies):
            handshake = replace(handshake, anomalies=tuple(tracker.anomalies))
        if handshake.anomalies:
            stats.connections_with_anomalies += 1
        stats.decryption[decryption.status] += 1
        self._emit(
            ConnectionReport(
                client_ip=_ip_text(connection.client[0]),
                client_port=connection.client[1],
                server_ip=_ip_text(connection.server[0]),
                server_port=connection.server[1],
                transport="udp",
                start=connection.start,
                end=connection.last_seen,
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
                preamble=None,
                tcp=None,
                quic=QuicSummary(
                    version=connection.version,
                    original_dcid=connection.original_dcid,
                    retry=connection.retry,
                    client_packets=connection.client_packets,
                    server_packets=connection.server_packets,
                    undecryptable=connection.undecryptable,
                    handshake_packets=connection.handshake_packets,
                    crypto_duplicates=sum(stream.duplicates for stream in connection.streams.values()),
                    transport_parameters=parameters,
                    close=connection.close,
                ),
            )
        )

    @staticmethod
    def _transport_parameters(tracker: ConnectionTracker) -> tuple[tuple[str, int | bytes], ...]:
        hello = tracker.client_hellos[0] if tracker.client_hellos else None
        data = (
            next((ext.data for ext in hello.extensions if ext.type == QUIC_TRANSPORT_PARAMETERS), None)
            if hello
            else None
        )
        if data is None:
            return ()
        try:
            return tuple((parameter.name, parameter.value) for parameter in parse_transport_parameters(data))
        except ParseError as error:
            tracker.note(f"client_quic_transport_parameters_malformed: {error.what}")
            return ()

    def _decryption(self, tracker: ConnectionTracker, connection: _Connection) -> Decryption:
        """Handshake packets are not opened yet: say whether keys were there to do it."""
        session = tracker.session()
        if session is None or not connection.handshake_packets:
            return Decryption(NOT_NEEDED)
        if self._keys is not None and self._keys.labels(session.client_random):
            return Decryption(UNSUPPORTED, "QUIC Handshake packets are not decrypted")
        return Decryption(NO_KEYS)
