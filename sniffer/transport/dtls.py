"""The DTLS association table: UDP datagrams in, one :class:`ConnectionReport` per DTLS handshake out.

DTLS (RFC 6347, RFC 9147) is TLS over datagrams: whole records, several per datagram, each with an
epoch and a sequence number, and handshake messages cut into fragments that may arrive in any order,
twice, or overlapping after a retransmission. An association is keyed by its 4-tuple (both directions)
and opened only by a datagram whose first record is a plaintext handshake record, so stray UDP that
happens to look like a record header opens nothing.

Each direction's epoch-0 handshake fragments are rebuilt by :class:`HandshakeReassembler` and handed to
the same :class:`ConnectionTracker` as TCP, framed as TLS handshake messages, so ClientHello (with its
cookie), ServerHello, CertificateRequest, the client's Certificate and the alerts give the same report.
Every other record (ChangeCipherSpec, alerts, the encrypted Finished, application data, DTLS 1.3's
unified-header records) goes to the tracker as a record, which is what settles a DTLS 1.2 handshake
and what a DTLS 1.3 report shows as protected traffic.

A HelloVerifyRequest (DTLS 1.0/1.2's stateless cookie exchange) makes the client send its ClientHello
again with the cookie; the report shows that second hello, and says the exchange took place.

While a key can arrive (a key log, or secrets a capture may still carry), the protected records (epoch 1
and later, and every unified-header record) are kept as framed, within ``MAX_PROTECTED_BYTES``, and
opened at report time by :mod:`helloscope.sniffer.handshake.dtls_decryption`. A DTLS 1.2 association
whose master secret is logged is followed past both Finished, as TCP is, so the encrypted alerts and
data that follow are read; it then ends at the idle timeout, the end of input, a fatal alert or when
the kept bytes reach the budget.
"""

from __future__ import annotations

from typing import Final

from helloscope.parsers.dtls import (
    DtlsRecord,
    HandshakeReassembler,
    iter_records,
    looks_like_dtls,
    parse_handshake_fragments,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.records import Record
from helloscope.parsers.registry import ACK, APPLICATION_DATA, CLIENT_HELLO, HANDSHAKE
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.handshake.decryption import Decryption
from helloscope.sniffer.handshake.dtls_decryption import DtlsProtectedRecord, dtls_decryption_of
from helloscope.sniffer.handshake.finish import TransportEnd, finish_connection
from helloscope.sniffer.handshake.settlement import MAX_PROTECTED_BYTES, keys_can_follow
from helloscope.sniffer.handshake.tracker import ConnectionTracker
from helloscope.sniffer.report.model import ConnectionReport, DtlsSummary, Endpoints
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import (
    DEFAULT_LIMITS,
    Connection,
    ConnectionTable,
    Emit,
    Endpoint,
    Limits,
    Path,
    PathIndex,
)
from helloscope.sniffer.vocabulary import EndReason, Sender, Transport

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
# Byte 13 of a datagram that opens an association: the msg_type of its first handshake fragment.
_FIRST_MSG_TYPE: Final = 13
# CAPWAP control (RFC 5415 4.1): a 4-byte "CAPWAP DTLS header" (preamble type 1, then reserved) in
# front of every DTLS record: how enterprise access points authenticate to their controllers.
_CAPWAP_CONTROL: Final = 5246
_CAPWAP_DTLS_PREAMBLE: Final = 0x01
_CAPWAP_DTLS_HEADER: Final = 4
# DTLS 1.3 protected records hide their content type; inference and the tracker see them as TLS 1.3's
# opaque application_data records.
_OPAQUE: Final = APPLICATION_DATA


class _Association(Connection):
    __slots__ = (
        "client",
        "datagrams",
        "keep_protected",
        "malformed",
        "protected",
        "protected_bytes",
        "protected_full",
        "reassemblers",
        "server",
        "tracker",
        "unified_records",
    )

    def __init__(self, client: Endpoint, server: Endpoint, timestamp: float, keep_protected: bool) -> None:
        super().__init__(timestamp)
        self.client = client
        self.server = server
        # The tracker keeps no protected records: DTLS decryption needs them as framed (epoch, sequence
        # number, header), so the association keeps them itself.
        self.tracker = ConnectionTracker(keep_protected=False, dtls=True)
        self.reassemblers = {CLIENT: HandshakeReassembler(), SERVER: HandshakeReassembler()}
        self.datagrams = {CLIENT: 0, SERVER: 0}
        self.unified_records = 0
        self.malformed = 0
        self.keep_protected = keep_protected  # a key can arrive: protected records are kept for it
        self.protected: list[DtlsProtectedRecord] = []
        self.protected_bytes = 0
        self.protected_full = False  # a record did not fit in MAX_PROTECTED_BYTES


class DtlsTable(ConnectionTable[_Association]):
    """UDP datagrams in, one report per DTLS association out."""

    def __init__(
        self,
        emit: Emit,
        stats: RunStats,
        limits: Limits = DEFAULT_LIMITS,
        keys: KeyLog | None = None,
        ports: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(emit, stats, limits)
        self._keys = keys
        self._ports = ports
        self._paths: PathIndex[_Association] = PathIndex()

    def datagram(self, timestamp: float, segment: Segment) -> bool:
        """Follow one datagram if it belongs to a DTLS association or opens one; False if it is not DTLS."""
        path = (segment.src, segment.sport, segment.dst, segment.dport)
        association = self._paths.get(path)
        if association is not None and self.ended_on_arrival(association, timestamp):
            association = None
        payload = segment.payload
        if _CAPWAP_CONTROL in (segment.sport, segment.dport) and payload[:1] == bytes((_CAPWAP_DTLS_PREAMBLE,)):
            payload = payload[_CAPWAP_DTLS_HEADER:]
        if association is None:
            if not _opens_association(payload):
                return False
            if self._ports and segment.sport not in self._ports and segment.dport not in self._ports:
                return False
            association = self._open(path, timestamp)
        if association.done:
            return True
        sender = CLIENT if path[:2] == association.client else SERVER
        association.datagrams[sender] += 1
        tracker = association.tracker
        try:
            for record in iter_records(payload):
                self._record(association, sender, record, timestamp)
        except ParseError as error:
            # A receiver drops the rest of a datagram it cannot frame; the records before stand.
            association.malformed += 1
            tracker.note(f"{sender}_dtls_record_malformed: {error.what}")
        if tracker.follow_after_handshake:
            # Followed with keys: until a fatal alert, or the kept records fill their budget.
            if tracker.settled or association.protected_full:
                self.settle(association, EndReason.HANDSHAKE_SETTLED)
        elif tracker.settled and not self._follow_with_keys(association):
            self.settle(association, EndReason.HANDSHAKE_SETTLED)
        return True

    def _keys_can_open(self) -> bool:
        """Whether a new association's protected records are worth keeping (as TCP decides it)."""
        keys = self._keys
        return not self._limits.fast_path or (keys is not None and (not keys.sealed or len(keys) > 0))

    def _follow_with_keys(self, association: _Association) -> bool:
        """Keep a finished DTLS 1.2 association open when the key log can read what follows."""
        tracker = association.tracker
        if not association.keep_protected:
            return False
        session = tracker.session()
        if not keys_can_follow(tracker, session.client_random if session else None, self._keys):
            return False
        tracker.follow_after_handshake = True
        return True

    def _open(self, path: Path, timestamp: float) -> _Association:
        client, server = (path[0], path[1]), (path[2], path[3])
        association = _Association(client, server, timestamp, self._keys_can_open())
        self._admit(association)
        self._paths.add(client, server, association)
        return association

    def _record(self, association: _Association, sender: Sender, record: DtlsRecord, timestamp: float) -> None:
        tracker = association.tracker
        if association.keep_protected and (record.unified or record.epoch > 0):
            self._keep(association, sender, record, timestamp)
        if record.unified:
            association.unified_records += 1
            tracker.record(sender, Record(_OPAQUE, record.version or 0, record.payload, record.offset), timestamp)
        elif record.content_type == HANDSHAKE and record.epoch == 0:
            reassembler = association.reassemblers[sender]
            for fragment in parse_handshake_fragments(record.payload):
                for message in reassembler.feed(fragment):
                    if sender == SERVER and message.msg_type == CLIENT_HELLO:
                        # Both peers opened (a WebRTC role conflict): the first hello's handshake is followed.
                        tracker.note("server_sent_client_hello")
                    tracker.handshake_message(sender, message.msg_type, message.body)
        elif record.content_type != ACK:
            assert record.content_type is not None and record.version is not None
            framed = Record(record.content_type, record.version, record.payload, record.offset)
            tracker.record(sender, framed, timestamp)

    @staticmethod
    def _keep(association: _Association, sender: Sender, record: DtlsRecord, timestamp: float) -> None:
        size = len(record.payload)
        if association.protected_bytes + size > MAX_PROTECTED_BYTES:
            association.protected_full = True
            return
        association.protected_bytes += size
        association.protected.append(DtlsProtectedRecord(sender, record, timestamp))

    def _forget(self, association: _Association) -> None:
        self._paths.discard(association.client, association.server, association)

    def _report(self, association: _Association, reason: EndReason) -> ConnectionReport:
        tracker = association.tracker
        stats = {sender: reassembler.stats for sender, reassembler in association.reassemblers.items()}
        dtls = DtlsSummary(
            client_datagrams=association.datagrams[CLIENT],
            server_datagrams=association.datagrams[SERVER],
            hello_verify_request=tracker.hello_verify_request is not None,
            retransmitted_fragments=sum(item.retransmitted + item.duplicates for item in stats.values()),
            conflicting_fragments=sum(item.conflicts for item in stats.values()),
            unified_records=association.unified_records,
            malformed_datagrams=association.malformed,
        )
        notes = tuple(f"{sender}_dtls_handshake_budget_exceeded" for sender, item in stats.items() if item.overflows)
        client, server = association.client, association.server
        end = TransportEnd(
            endpoints=Endpoints(client[0], client[1], server[0], server[1], Transport.UDP),
            start=association.start,
            end=association.last_seen,
            reason=reason,
            ja4_transport="d",
            missing_hello_detail=": fragments missing" if association.reassemblers[CLIENT].stats.buffered else "",
            anomalies=notes,
            dtls=dtls,
        )
        return finish_connection(tracker, self._decryption(association), end)

    def _decryption(self, association: _Association) -> Decryption:
        tracker = association.tracker
        records = association.protected if association.keep_protected else None
        next_seq = {sender: reassembler.next_seq for sender, reassembler in association.reassemblers.items()}
        return dtls_decryption_of(tracker.session(), tracker.protected_seen, records, self._keys, next_seq)


def _opens_association(payload: bytes) -> bool:
    """A plaintext handshake record carrying the start of a ClientHello: only clients open associations."""
    return (
        len(payload) > _FIRST_MSG_TYPE
        and payload[0] == HANDSHAKE
        and payload[_FIRST_MSG_TYPE] == CLIENT_HELLO
        and looks_like_dtls(payload, unified=False)
    )
