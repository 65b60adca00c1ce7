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
when a CONNECTION_CLOSE is read. With the connection's secrets in the key log (the TLS 1.3 labels),
Handshake and 1-RTT packets are opened as they come: the CertificateRequest, the client's Certificate
and Finished, and the server's verdict (HANDSHAKE_DONE and data, or CONNECTION_CLOSE with a crypto
error) feed the same correlation as decrypted TCP; the connection settles on that verdict.

UDP reorders and duplicates datagrams, and the report must not depend on it: a packet number already
opened in its space is a duplicate and is skipped (RFC 9000 §12.3); Handshake and 1-RTT packets that
arrive before the ServerHello that names their keys are held (``MAX_EARLY_PACKETS``) and opened once it
is read; the verdict needs both Finished messages, and a CONNECTION_CLOSE waits for the client's
Finished for ``CLOSE_GRACE_DATAGRAMS`` datagrams, so a flight reordered around it is still read.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from helloscope.parsers.errors import ParseError
from helloscope.parsers.keylog import (
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_TRAFFIC_SECRET_0,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
)
from helloscope.parsers.quic import (
    ACK,
    ACK_ECN,
    CLIENT_IN,
    CONNECTION_CLOSE,
    CONNECTION_CLOSE_APPLICATION,
    HANDSHAKE,
    INITIAL,
    ONE_RTT,
    PADDING,
    RETRY,
    SERVER_IN,
    ConnectionClose,
    CryptoStream,
    Header,
    Packet,
    PacketKeys,
    initial_keys,
    packet_keys,
    parse_datagram,
    parse_frames,
    parse_transport_parameters,
    short_header,
    unprotect,
)
from helloscope.parsers.quic import HANDSHAKE_DONE as HANDSHAKE_DONE_FRAME
from helloscope.parsers.records import HandshakeReader
from helloscope.parsers.registry import ALERT_FATAL, FINISHED
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.handshake.decryption import DecryptedMessage, Decryption, Session
from helloscope.sniffer.handshake.finish import TransportEnd, finish_connection
from helloscope.sniffer.handshake.settlement import quic_settled, quic_verdict_seen
from helloscope.sniffer.handshake.tracker import ConnectionTracker
from helloscope.sniffer.report.model import AlertFinding, ConnectionReport, Endpoints, QuicClose, QuicSummary
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import (
    DEFAULT_LIMITS,
    Connection,
    ConnectionTable,
    Emit,
    Endpoint,
    Limits,
    PathIndex,
)
from helloscope.sniffer.vocabulary import DecryptionStatus, EndReason, Evidence, Phase, Sender, Transport

QUIC_TRANSPORT_PARAMETERS: Final = 0x39
CLIENT, SERVER = Sender.CLIENT, Sender.SERVER

CidKey = tuple[bytes, int, bytes, int, bytes]  # the path and the destination connection id

_SECRETS: Final = {
    (CLIENT, HANDSHAKE): CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    (SERVER, HANDSHAKE): SERVER_HANDSHAKE_TRAFFIC_SECRET,
    (CLIENT, ONE_RTT): CLIENT_TRAFFIC_SECRET_0,
    (SERVER, ONE_RTT): SERVER_TRAFFIC_SECRET_0,
}
_PHASES: Final = {HANDSHAKE: Phase.HANDSHAKE, ONE_RTT: Phase.APPLICATION}
# Frames that do not show an endpoint carrying on with the connection.
_NOT_CARRYING_ON: Final = frozenset({PADDING, ACK, ACK_ECN, CONNECTION_CLOSE, CONNECTION_CLOSE_APPLICATION})
NO_ERROR: Final = 0x00
# Handshake and 1-RTT packets held per connection until the ServerHello tells how to open them.
MAX_EARLY_PACKETS: Final = 16
# Long-header packets of no known connection (a server's, reordered before the client's first Initial),
# the most recent ones across the table: given to the connection whose first Initial comes next.
MAX_ORPHANS: Final = 64
# Datagrams a keyed connection is still read after a CONNECTION_CLOSE, for a client flight reordered behind it.
CLOSE_GRACE_DATAGRAMS: Final = 8


class _Opener:
    """Opens the Handshake and 1-RTT packets of one connection with key-log secrets, as they arrive."""

    __slots__ = (
        "alerts",
        "application",
        "confirmed",
        "failures",
        "keylog",
        "keys",
        "largest",
        "messages",
        "numbers",
        "opened",
        "readers",
        "session",
        "sources",
    )

    def __init__(self, keylog: KeyLog, session: Session) -> None:
        self.keylog = keylog
        self.session = session
        self.keys: dict[tuple[Sender, str, int], list[tuple[PacketKeys, str]]] = {}
        self.readers: dict[tuple[Sender, str], tuple[CryptoStream, HandshakeReader]] = {}
        self.messages: list[DecryptedMessage] = []
        self.alerts: list[AlertFinding] = []
        self.application: list[tuple[Sender, float]] = []
        # Timestamps of the server's HANDSHAKE_DONE packets: sent once the client's Finished was verified,
        # so they follow it whatever order the capture shows them in (see _went_on).
        self.confirmed: list[float] = []
        self.opened = 0
        self.failures: dict[str, int] = {}
        self.largest: dict[tuple[Sender, str], int] = {}  # packet number spaces, for decoding the numbers
        self.numbers: dict[tuple[Sender, str], set[int]] = {}  # packet numbers opened, per space: duplicates
        self.sources: set[str] = set()

    def _packet_keys(self, sender: Sender, level: str, version: int) -> list[tuple[PacketKeys, str]]:
        """The keys of every different secret logged for this level, with its source; one once it opened."""
        slot = (sender, level, version)
        if slot not in self.keys:
            candidates: list[tuple[PacketKeys, str]] = []
            for secret, source in self.keylog.candidates(_SECRETS[(sender, level)], self.session.client_random):
                try:
                    candidates.append((packet_keys(version, secret, self.session.cipher_suite), source))
                except ParseError as error:
                    self._fail(error.what)
            self.keys[slot] = candidates
        return self.keys[slot]

    def _fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def packet(
        self, sender: Sender, datagram: bytes, header: Header, timestamp: float, version: int
    ) -> ConnectionClose | None:
        """Open one packet; return the CONNECTION_CLOSE it carries, if any."""
        level = header.packet_type or ""
        candidates = self._packet_keys(sender, level, version)
        if not candidates:
            self._fail(f"no {_SECRETS[(sender, level)]}")
            return None
        space = (sender, level)
        failure = ""
        for keys, source in candidates:
            try:
                packet = unprotect(datagram, header, keys, self.largest.get(space, -1))
                frames = parse_frames(packet.payload, application=level == ONE_RTT)
            except ParseError as error:
                failure = error.what
                continue
            if len(candidates) > 1:
                self.keys[(sender, level, version)] = [(keys, source)]
            break
        else:
            self._fail(failure)
            return None
        numbers = self.numbers.setdefault(space, set())
        if packet.packet_number in numbers:
            return None  # a duplicate: it told everything the first time
        numbers.add(packet.packet_number)
        self.sources.add(source)
        self.largest[space] = max(self.largest.get(space, -1), packet.packet_number)
        self.opened += 1
        phase = _PHASES[level]
        if frames.crypto:
            stream, reader = self.readers.setdefault(space, (CryptoStream(), HandshakeReader()))
            for frame in frames.crypto:
                data = stream.add(frame.offset, frame.data)
                try:
                    messages = reader.feed(data) if data else []
                except ParseError as error:
                    self._fail(f"{sender} handshake framing: {error.what}")
                    continue
                self.messages.extend(
                    DecryptedMessage(sender, message.msg_type, message.body, phase, timestamp) for message in messages
                )
        close = frames.close
        if sender == SERVER and level == ONE_RTT and HANDSHAKE_DONE_FRAME in frames.types:
            self.confirmed.append(timestamp)
        elif (close is not None and close.error_code == NO_ERROR) or (
            level == ONE_RTT and frames.types - _NOT_CARRYING_ON
        ):
            # Data, HANDSHAKE_DONE, new CIDs or a clean close: this side went on with the connection.
            self.application.append((sender, timestamp))
        return close

    @property
    def verdict(self) -> bool:
        return quic_verdict_seen(self.messages, self.alerts, self._went_on())

    def _went_on(self) -> tuple[tuple[Sender, float], ...]:
        """Each side carrying on, in time; a HANDSHAKE_DONE counts as after the client's Finished."""
        finished = next(
            (item.timestamp for item in self.messages if item.sender == CLIENT and item.msg_type == FINISHED), None
        )
        confirmed = tuple(
            (SERVER, timestamp if finished is None else max(timestamp, finished)) for timestamp in self.confirmed
        )
        return (*self.application, *confirmed)

    @property
    def both_finished(self) -> bool:
        """Both Finished messages were read: nothing of the handshake is missing."""
        senders = {message.sender for message in self.messages if message.msg_type == FINISHED}
        return len(senders) == 2

    def result(self) -> Decryption:
        if not self.opened:
            reason = ", ".join(sorted(self.failures)) or "no Handshake packet seen"
            return Decryption(DecryptionStatus.DECRYPT_FAILED, reason)
        return Decryption(
            DecryptionStatus.DECRYPTED,
            None,
            tuple(self.messages),
            tuple(self.alerts),
            self.opened,
            self._went_on(),
            "+".join(sorted(self.sources)) or None,
        )


class _Connection(Connection):
    __slots__ = (
        "cids",
        "client",
        "client_handshake",
        "client_packets",
        "client_scid",
        "close",
        "early",
        "handshake_packets",
        "since_close",
        "initial_dcid",
        "keys",
        "largest",
        "opener",
        "original_dcid",
        "retry",
        "server",
        "server_cid",
        "server_packets",
        "streams",
        "tracker",
        "undecryptable",
        "version",
    )

    def __init__(self, client: Endpoint, server: Endpoint, header: Header, timestamp: float) -> None:
        super().__init__(timestamp)
        self.client = client
        self.server = server
        self.version = header.version
        self.original_dcid = header.dcid
        self.initial_dcid = header.dcid  # what Initial keys derive from; a Retry replaces it
        self.keys: dict[tuple[int, bytes], PacketKeys] = {}
        self.largest = {CLIENT: -1, SERVER: -1}  # Initial packet numbers, for decoding them
        self.cids: list[CidKey] = []
        self.server_cid: bytes | None = None
        self.retry = False
        self.client_handshake = False  # the client sent a Handshake packet: its Initial phase is over
        self.client_packets = self.server_packets = self.undecryptable = self.handshake_packets = 0
        self.client_scid = header.scid
        self.close: QuicClose | None = None
        self.since_close = 0  # datagrams after the CONNECTION_CLOSE (keyed: the grace for a reordered flight)
        self.opener: _Opener | None = None  # set once the ServerHello is known and the key log has secrets
        # Handshake/1-RTT packets that came before the opener: (sender, datagram, header or the short
        # header's offset, timestamp), opened when it is made.
        self.early: list[tuple[Sender, bytes, Header | int, float]] = []
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

    def packet_keys(self, version: int, sender: Sender) -> PacketKeys:
        label = CLIENT_IN if sender == CLIENT else SERVER_IN
        cached = self.keys.get((version, label))
        if cached is None:
            cached = self.keys[(version, label)] = initial_keys(version, self.initial_dcid, label)
        return cached

    @property
    def settled(self) -> bool:
        opener = self.opener
        closed = self.close is not None
        if closed and opener is not None and not opener.both_finished:
            # With keys, a flight may have been reordered behind the close: wait a little for it.
            closed = self.since_close > CLOSE_GRACE_DATAGRAMS
        return quic_settled(
            closed=closed,
            progress=self.tracker,
            server_hello_seen=self.tracker.server_hello is not None,
            client_left_initial=self.client_handshake,
            opened=None if opener is None else opener.opened + sum(opener.failures.values()),
            verdict=opener is not None and opener.verdict,
        )

    def closed(self, sender: Sender, packet_type: str, close: ConnectionClose) -> None:
        if self.close is None:
            self.close = QuicClose(
                sender, packet_type, close.error_code, close.frame_type, close.reason, close.application
            )


class QuicTable(ConnectionTable[_Connection]):
    """UDP datagrams in, one report per QUIC connection out."""

    def __init__(
        self,
        emit: Emit,
        stats: RunStats,
        limits: Limits = DEFAULT_LIMITS,
        keys: KeyLog | None = None,
        ports: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(emit, stats, limits)
        self._ports = ports  # when given, only connections to or from these ports are followed
        self._keys = keys
        self._by_cid: dict[CidKey, _Connection] = {}
        self._orphans: deque[tuple[float, bytes, Header, Endpoint, Endpoint]] = deque(maxlen=MAX_ORPHANS)
        # The latest connection on each path, both directions: short headers carry a DCID of unknown
        # length, so a 1-RTT packet is matched against that connection's CIDs.
        self._paths: PathIndex[_Connection] = PathIndex()

    # ----- datagrams -----------------------------------------------------------------------------

    def datagram(self, timestamp: float, segment: Segment) -> bool:
        """Follow one datagram; False when it is not QUIC's (no long header, not on a followed path)."""
        payload = segment.payload
        source: Endpoint = (segment.src, segment.sport)
        destination: Endpoint = (segment.dst, segment.dport)
        touched: _Connection | None = None
        end = 0
        if payload and payload[0] & 0x80:  # a long header
            try:
                packets = parse_datagram(payload)
            except ParseError:
                packets = ()
            for header in packets:
                touched = self._packet(timestamp, payload, header, source, destination) or touched
                end = header.end
        if end < len(payload) and self._paths:  # a short header, alone or after the long ones
            touched = self._one_rtt(timestamp, payload, end, source, destination) or touched
        if touched is not None and touched.close is not None:
            touched.since_close += 1
        if touched is not None and not touched.done and touched.settled:
            self.settle(touched, EndReason.HANDSHAKE_SETTLED)
        return touched is not None or bool(payload and payload[0] & 0x80) or (*source, *destination) in self._paths

    def _one_rtt(
        self, timestamp: float, datagram: bytes, start: int, source: Endpoint, destination: Endpoint
    ) -> _Connection | None:
        connection = self._paths.get((*source, *destination))
        if connection is None or connection.done:
            return None
        sender = CLIENT if source == connection.client else SERVER
        if connection.opener is None:
            if self._hold(connection, sender, datagram, start, timestamp):
                return connection if not self.ended_on_arrival(connection, timestamp) else None
            return None
        dcid = connection.server_cid if sender == CLIENT else connection.client_scid
        header = short_header(datagram, start, connection.version, dcid) if dcid is not None else None
        if header is None or self.ended_on_arrival(connection, timestamp):
            return None
        self._open_protected(connection, sender, datagram, header, timestamp)
        return connection

    @staticmethod
    def _open_protected(
        connection: _Connection, sender: Sender, datagram: bytes, header: Header, timestamp: float
    ) -> None:
        opener = connection.opener
        assert opener is not None
        close = opener.packet(sender, datagram, header, timestamp, connection.version)
        # Peers repeat their CONNECTION_CLOSE in every packet type the other side may read: the first
        # one seen (in an Initial, or opened here) is the connection's one alert.
        if close is not None and connection.close is None:
            connection.closed(sender, header.packet_type or "", close)
            if close.tls_alert is not None:
                opener.alerts.append(AlertFinding(sender, ALERT_FATAL, close.tls_alert, Evidence.DECRYPTED, timestamp))

    def _packet(
        self, timestamp: float, datagram: bytes, header: Header, source: Endpoint, destination: Endpoint
    ) -> _Connection | None:
        if header.packet_type is None or header.version == 0:
            return None  # Version Negotiation, or a version without public Initial keys
        connection = self._by_cid.get((*source, *destination, header.dcid))
        if connection is not None and self.ended_on_arrival(connection, timestamp):
            connection = None
        if connection is None:
            opened = None
            if header.packet_type == INITIAL:
                opened = self._open(timestamp, datagram, header, source, destination)
            if opened is None and header.packet_type in (INITIAL, HANDSHAKE):
                self._orphans.append((timestamp, datagram, header, source, destination))
            return opened
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
            if connection.opener is not None:
                self._open_protected(connection, sender, datagram, header, timestamp)
            else:
                self._hold(connection, sender, datagram, header, timestamp)
        elif header.packet_type == INITIAL:
            self._initial(connection, timestamp, datagram, header, sender)
        return connection

    def _open(
        self, timestamp: float, datagram: bytes, header: Header, client: Endpoint, server: Endpoint
    ) -> _Connection | None:
        """A client Initial for a DCID not seen before: a new connection if it opens with that DCID."""
        if self._ports and client[1] not in self._ports and server[1] not in self._ports:
            return None
        try:
            keys = initial_keys(header.version, header.dcid, CLIENT_IN)
            packet = unprotect(datagram, header, keys)
        except ParseError:
            return None  # a server Initial we lack the start of, a corrupt packet, or not QUIC at all
        connection = _Connection(client, server, header, timestamp)
        connection.keys[(header.version, CLIENT_IN)] = keys  # the same keys and packet it would work out again
        self._admit(connection)
        self._register(connection, (*client, *server, header.dcid))
        self._register(connection, (*server, *client, header.scid))
        self._paths.add(client, server, connection)
        self._initial(connection, timestamp, datagram, header, CLIENT, packet)
        self._adopt(connection)
        return connection

    def _adopt(self, connection: _Connection) -> None:
        """Read the orphaned packets of a new connection's path, in their order (UDP reordered them)."""
        paths = {(*connection.client, *connection.server), (*connection.server, *connection.client)}
        mine = [orphan for orphan in self._orphans if (*orphan[3], *orphan[4]) in paths]
        if not mine:
            return
        self._orphans = deque((orphan for orphan in self._orphans if orphan not in mine), maxlen=MAX_ORPHANS)
        for _ in range(len(mine)):  # a Handshake packet may need the server Initial that came after it
            before = len(mine)
            rest = []
            for orphan in mine:
                timestamp, datagram, header, source, destination = orphan
                if self._by_cid.get((*source, *destination, header.dcid)) is connection:
                    self._packet(timestamp, datagram, header, source, destination)
                else:
                    rest.append(orphan)
            mine = rest
            if not mine or len(mine) == before:
                break

    def _register(self, connection: _Connection, key: CidKey) -> None:
        self._by_cid[key] = connection
        connection.cids.append(key)

    def _initial(
        self,
        connection: _Connection,
        timestamp: float,
        datagram: bytes,
        header: Header,
        sender: Sender,
        packet: Packet | None = None,  # already opened, by _open
    ) -> None:
        try:
            if packet is None:
                packet = unprotect(
                    datagram, header, connection.packet_keys(header.version, sender), connection.largest[sender]
                )
            frames = parse_frames(packet.payload)
        except ParseError:
            connection.undecryptable += 1
            return
        connection.largest[sender] = max(connection.largest[sender], packet.packet_number)
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
            connection.closed(sender, INITIAL, close)
            alert = close.tls_alert
            if alert is not None:
                tracker.alert(AlertFinding(sender, ALERT_FATAL, alert, Evidence.PLAINTEXT, timestamp))
        # An empty key log names no connection: every later Initial would otherwise ask it again.
        if connection.opener is None and tracker.server_hello is not None and self._keys:
            session = tracker.session()
            if session is not None and self._keys.labels(session.client_random):
                connection.opener = _Opener(self._keys, session)
                self._open_held(connection)

    def _hold(
        self, connection: _Connection, sender: Sender, datagram: bytes, header: Header | int, timestamp: float
    ) -> bool:
        """Keep a protected packet that came before the ServerHello, while a key for it may still come."""
        keys = self._keys
        if keys is None or (keys.sealed and not len(keys)) or len(connection.early) >= MAX_EARLY_PACKETS:
            return False
        connection.early.append((sender, datagram, header, timestamp))
        return True

    def _open_held(self, connection: _Connection) -> None:
        held, connection.early = connection.early, []
        for sender, datagram, header, timestamp in held:
            if isinstance(header, int):  # a short header: its DCID is known now
                dcid = connection.server_cid if sender == CLIENT else connection.client_scid
                short = short_header(datagram, header, connection.version, dcid) if dcid is not None else None
                if short is None:
                    continue
                header = short
            self._open_protected(connection, sender, datagram, header, timestamp)

    # ----- lifecycle -----------------------------------------------------------------------------

    def _forget(self, connection: _Connection) -> None:
        for key in connection.cids:
            if self._by_cid.get(key) is connection:
                del self._by_cid[key]
        self._paths.discard(connection.client, connection.server, connection)

    # ----- reports -------------------------------------------------------------------------------

    def _report(self, connection: _Connection, reason: EndReason) -> ConnectionReport:
        tracker = connection.tracker
        notes: list[str] = []
        if any(stream.capped for stream in connection.streams.values()):
            notes.append("quic_crypto_byte_cap_reached")
        parameters = _transport_parameters(tracker, notes)
        quic = QuicSummary(
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
        )
        client, server = connection.client, connection.server
        end = TransportEnd(
            endpoints=Endpoints(client[0], client[1], server[0], server[1], Transport.UDP),
            start=connection.start,
            end=connection.last_seen,
            reason=reason,
            ja4_transport="q",
            missing_hello_detail=": CRYPTO data missing" if connection.streams[CLIENT].pending_bytes else "",
            anomalies=tuple(notes),
            quic=quic,
        )
        return finish_connection(tracker, _decryption(connection), end)


def _transport_parameters(tracker: ConnectionTracker, notes: list[str]) -> tuple[tuple[str, int | bytes], ...]:
    hello = tracker.client_hellos[0] if tracker.client_hellos else None
    data = (
        next((ext.data for ext in hello.extensions if ext.type == QUIC_TRANSPORT_PARAMETERS), None) if hello else None
    )
    if data is None:
        return ()
    try:
        return tuple((parameter.name, parameter.value) for parameter in parse_transport_parameters(data))
    except ParseError as error:
        notes.append(f"client_quic_transport_parameters_malformed: {error.what}")
        return ()


def _decryption(connection: _Connection) -> Decryption:
    if connection.opener is not None:
        return connection.opener.result()
    if connection.tracker.session() is None or not connection.handshake_packets:
        return Decryption(DecryptionStatus.NOT_NEEDED)
    return Decryption(DecryptionStatus.NO_KEYS)
