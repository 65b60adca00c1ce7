"""One state machine per TLS connection: records and handshake messages in, observations out.

The tracker only records what the wire shows; :mod:`helloscope.sniffer.handshake.correlation` draws the
conclusions from its frozen snapshot (:meth:`ConnectionTracker.handshake`) and never writes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.certs import (
    CertificateMessage,
    CertificateRequest,
    chain_sha256,
    parse_certificate,
    parse_certificate_request,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import ClientHello, ServerHello, parse_client_hello, parse_server_hello
from helloscope.parsers.records import HandshakeReader, Record
from helloscope.parsers.registry import (
    ALERT,
    APPLICATION_DATA,
    CERTIFICATE,
    CERTIFICATE_REQUEST,
    CERTIFICATE_VERIFY,
    CHANGE_CIPHER_SPEC,
    CLIENT_HELLO,
    CLIENT_KEY_EXCHANGE,
    HANDSHAKE,
    HANDSHAKE_TYPE_NAMES,
    HELLO_VERIFY_REQUEST,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    SERVER_KEY_EXCHANGE,
    TLS12,
    TLS13,
    tls_equivalent,
)
from helloscope.sniffer.handshake.decryption import ProtectedRecord, Session
from helloscope.sniffer.handshake.settlement import MAX_PROTECTED_BYTES, MAX_TRACED_RECORDS, tls_settled
from helloscope.sniffer.report.model import AlertFinding, Handshake, RecordTrace, ServerCertificateSeen
from helloscope.sniffer.vocabulary import Evidence, Sender

if TYPE_CHECKING:  # the DTLS parsers load with the first DTLS association (startup time, issue 13)
    from helloscope.parsers.dtls import HelloVerifyRequest

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
EARLY_DATA: Final = 42
# Client application records after the handshake past which a silent server is not waited for any more.
CLIENT_RECORDS_BEFORE_RENEGOTIATION: Final = 4
NAMED_CURVE: Final = 3
# The server's leaf certificate is kept as DER until the report summarises it; a larger one (real leaves
# are 1-8 KB) is only fingerprinted, so what a flow holds stays bounded.
MAX_KEPT_LEAF_BYTES: Final = 16384


def server_certificate_seen(message: CertificateMessage) -> ServerCertificateSeen:
    """What the report needs of the server's Certificate message: every certificate's fingerprint, the leaf."""
    certificates = message.certificates
    leaf = certificates[0] if certificates and len(certificates[0]) <= MAX_KEPT_LEAF_BYTES else None
    return ServerCertificateSeen(chain_sha256(certificates), leaf)


class ConnectionTracker:
    """Follows the plaintext part of one TLS handshake (both directions)."""

    __slots__ = (
        "_broken",
        "_ccs",
        "_encrypted_handshake",
        "_follow_after_handshake",
        "_handshake_readers",
        "_held",
        "_renegotiation_ccs",
        "alerts",
        "anomalies",
        "certificate_request",
        "client_certificate",
        "client_flight_seen",
        "client_hellos",
        "dtls",
        "hello_retry_request",
        "hello_verify_request",
        "key_exchange_group",
        "handshake_over",
        "keep_protected",
        "protected",
        "protected_seen",
        "_protected_bytes",
        "records",
        "renegotiation",
        "server_answered",
        "_client_records_after",
        "_settled",
        "server_certificate",
        "server_flight_done",
        "_server_hello",
        "tls13",
    )

    def __init__(self, *, keep_protected: bool = True, dtls: bool = False) -> None:
        self.dtls = dtls  # handshake messages come from DTLS: ClientHellos carry a cookie
        self.client_hellos: list[ClientHello] = []
        self._server_hello: ServerHello | None = None
        self.tls13 = False  # the ServerHello chose TLS 1.3 (kept with it: read for every record)
        self.hello_retry_request: ServerHello | None = None
        self.hello_verify_request: HelloVerifyRequest | None = None  # DTLS 1.0/1.2 cookie exchange
        self.certificate_request: CertificateRequest | None = None
        self.client_certificate: CertificateMessage | None = None
        self.server_certificate: ServerCertificateSeen | None = None
        self.server_flight_done = False
        self.key_exchange_group: int | None = None  # TLS <= 1.2 ECDHE named curve
        self.client_flight_seen = False
        self._ccs = {CLIENT: False, SERVER: False}
        # TLS <= 1.2: protected handshake records after the ChangeCipherSpec (the Finished messages).
        self._encrypted_handshake = {CLIENT: 0, SERVER: 0}
        self._handshake_readers = {CLIENT: HandshakeReader(), SERVER: HandshakeReader()}
        self._broken = {CLIENT: False, SERVER: False}
        self.alerts: list[AlertFinding] = []
        self.records: list[RecordTrace] = []
        # Encrypted records kept for the key log, in arrival order, within MAX_PROTECTED_BYTES; only when
        # a key can arrive (keep_protected). protected_seen tells "none kept" from "none sent".
        self.keep_protected = keep_protected
        self.protected: list[ProtectedRecord] = []
        self.protected_seen = False
        self._protected_bytes = 0
        # Set when a key can read what follows the point where this connection would settle
        # (settlement.keys_can_follow): a TLS <= 1.2 connection is followed past its Finished (later
        # alerts and renegotiations become readable), a TLS 1.3 one past the client's fatal alert
        # (the server's encrypted answer).
        self._follow_after_handshake = False
        # TLS <= 1.2 after both Finished: record headers stay readable without keys. A handshake record
        # then starts a renegotiation (HelloRequest or a new ClientHello), which may request a certificate.
        self.handshake_over = False
        self.renegotiation = False
        self._renegotiation_ccs = {CLIENT: False, SERVER: False}  # a ChangeCipherSpec since it began
        # The server's answer past the handshake: data or an alert, or the end of a renegotiation.
        self.server_answered = False
        # Client application records since both Finished, while the server said nothing (an upload).
        self._client_records_after = 0
        # tls_settled(self) as of the last input: asked at every record and packet, computed once per input.
        self._settled = False
        # Records that came after the report was settled, in the segment that settled it: replayed when
        # a key makes the connection worth following, dropped otherwise (where a segment ends must not
        # change what is reported).
        self._held: list[tuple[Sender, Record, float]] = []
        self.anomalies: list[str] = []

    # ----- derived state -------------------------------------------------------------------------

    @property
    def server_hello(self) -> ServerHello | None:
        return self._server_hello

    @server_hello.setter
    def server_hello(self, hello: ServerHello | None) -> None:
        self._server_hello = hello
        self.tls13 = hello is not None and tls_equivalent(hello.version) >= TLS13

    @property
    def version(self) -> int | None:
        return self._server_hello.version if self._server_hello else None

    @property
    def resumed(self) -> bool | None:
        hello = self.server_hello
        if hello is None:
            return None
        if self.tls13:
            return hello.has_pre_shared_key
        # TLS <= 1.2 abbreviated handshake: the server goes straight from ServerHello to its CCS.
        return self._ccs[SERVER] and not self.server_flight_done

    @property
    def established(self) -> bool | None:
        """Both sides finished (TLS <= 1.2); None where the finish is not visible (TLS 1.3)."""
        if self.server_hello is None:
            return False
        if self.tls13:
            return None
        return all(self._ccs.values()) and all(self._encrypted_handshake.values())

    @property
    def fatal_alert_seen(self) -> bool:
        return bool(self.alerts) and any(alert.fatal for alert in self.alerts)

    @property
    def client_aborted(self) -> bool:
        """The client sent a fatal alert and the server none that the plaintext shows (yet)."""
        fatal = [alert.sender for alert in self.alerts if alert.fatal]
        return CLIENT in fatal and SERVER not in fatal

    @property
    def both_directions_broken(self) -> bool:
        broken = self._broken
        return broken[CLIENT] and broken[SERVER]

    @property
    def traced_records(self) -> int:
        return len(self.records)

    @property
    def protected_bytes(self) -> int:
        return self._protected_bytes

    @property
    def follow_after_handshake(self) -> bool:
        return self._follow_after_handshake

    @follow_after_handshake.setter
    def follow_after_handshake(self, follow: bool) -> None:
        self._follow_after_handshake = follow
        self._settled = tls_settled(self)
        held, self._held = self._held, []
        if follow:
            for sender, record, timestamp in held:
                self.record(sender, record, timestamp)

    @property
    def settled(self) -> bool:
        """Nothing later on this connection can change its report (the rules: handshake.settlement).

        Kept up to date by every input method rather than worked out at each question: the flow table
        asks it for every packet and this tracker for every record.
        """
        return self._settled

    def handshake(self, anomalies: tuple[str, ...] | None = None) -> Handshake:
        """The frozen observations; ``anomalies`` replaces the tracker's own when the transport added some."""
        return Handshake(
            client_hellos=tuple(self.client_hellos),
            server_hello=self.server_hello,
            hello_retry_request=self.hello_retry_request,
            version=self.version,
            established=self.established,
            resumed=self.resumed,
            alerts=tuple(self.alerts),
            records=tuple(self.records),
            key_exchange_group=self.key_exchange_group
            if self.key_exchange_group is not None
            else (self.server_hello.key_share_group if self.server_hello else None),
            anomalies=tuple(self.anomalies) if anomalies is None else anomalies,
            dtls=self.dtls,
            hello_verify_request=self.hello_verify_request is not None,
            certificate_request=self.certificate_request,
            client_certificate=self.client_certificate,
            server_certificate=self.server_certificate,
            server_flight_done=self.server_flight_done,
            client_flight_seen=self.client_flight_seen,
            renegotiation=self.renegotiation,
        )

    # ----- input ---------------------------------------------------------------------------------

    def sslv2_client_hello(self, hello: ClientHello) -> None:
        self.client_hellos.append(hello)

    def note(self, anomaly: str) -> None:
        """Record an anomaly once, however often the wire repeats it."""
        if anomaly not in self.anomalies:
            self.anomalies.append(anomaly)

    def alert(self, finding: AlertFinding) -> None:
        """An alert the transport read outside the record layer (a QUIC CONNECTION_CLOSE's crypto error)."""
        self.alerts.append(finding)
        self._settled = tls_settled(self)

    def stream_broken(self, sender: Sender, reason: str) -> None:
        """The byte stream of one direction can no longer be framed as TLS records."""
        if not self._broken[sender]:
            self._broken[sender] = True
            self.note(f"{sender}_{reason}")
            self._settled = tls_settled(self)

    def handshake_data(self, sender: Sender, data: bytes) -> None:
        """Handshake bytes that arrive without a record layer (QUIC CRYPTO frames), in stream order."""
        if not self._broken[sender]:
            self._handshake_fragment(sender, data)
            self._settled = tls_settled(self)

    def handshake_message(self, sender: Sender, msg_type: int, body: bytes) -> None:
        """A whole handshake message that a transport rebuilt itself (DTLS fragments), in message order."""
        if not self._broken[sender]:
            self._message(sender, msg_type, body)
            self._settled = tls_settled(self)

    def record(self, sender: Sender, record: Record, timestamp: float) -> None:
        if self._broken[sender]:
            return
        if self._settled and not self._follow_after_handshake:
            if self.keep_protected and len(self._held) < MAX_TRACED_RECORDS:
                self._held.append((sender, record, timestamp))
            return
        self._record(sender, record, timestamp)
        self._settled = tls_settled(self)

    def record_all(self, sender: Sender, records: Iterable[Record], timestamp: float) -> None:
        """The records one delivery completed, in order: :meth:`record` for each.

        Keyless TLS 1.3 past the ServerHello is most records of a capture, and there an application_data
        record only lengthens the trace (nothing to keep or parse; only the trace's length can settle
        the connection, every other settle reason needs another kind of input): done here inline.
        """
        traces = self.records
        for record in records:
            if (
                record.content_type == APPLICATION_DATA
                and self.tls13
                and not self.keep_protected
                and not self._settled
                and not self.handshake_over
                and not self._broken[sender]
            ):
                self.protected_seen = True
                traces.append(RecordTrace(sender, APPLICATION_DATA, len(record.payload), timestamp))
                self._settled = len(traces) >= MAX_TRACED_RECORDS
            else:
                self.record(sender, record, timestamp)

    def _record(self, sender: Sender, record: Record, timestamp: float) -> None:
        content_type = record.content_type
        if self._server_hello is not None and len(self.records) < MAX_TRACED_RECORDS:
            self.records.append(RecordTrace(sender, content_type, len(record.payload), timestamp))
        if self.handshake_over:
            self._after_handshake(sender, content_type)
        if content_type == CHANGE_CIPHER_SPEC:
            if not self.tls13 and self._protected(sender):
                # A renegotiation's ChangeCipherSpec travels under the old keys: decryption switches keys there.
                self.protected_seen = True
                if self.keep_protected:
                    self._keep(sender, record, timestamp)
            self._ccs[sender] = True
            return
        protected = (
            self.tls13 or self._protected(sender) or (content_type == APPLICATION_DATA and self._early_data(sender))
        )
        if protected:
            self.protected_seen = True
            if self.keep_protected:
                self._keep(sender, record, timestamp)
        if content_type == HANDSHAKE:
            if protected:
                self._encrypted_handshake[sender] += 1
            else:
                self._handshake_fragment(sender, record.payload)
        elif content_type == ALERT:
            self._alert(sender, record.payload, timestamp)
        elif content_type == APPLICATION_DATA and not protected:
            self.note(f"{sender}_application_data_before_server_hello")
        if not self.handshake_over and not self.tls13 and not self.dtls and self.established:
            self.handshake_over = True

    def _after_handshake(self, sender: Sender, content_type: int) -> None:
        """TLS <= 1.2 past both Finished, from the record headers alone: a renegotiation, the server's answer."""
        if content_type == HANDSHAKE:
            if not self.renegotiation:
                self.renegotiation = True
            elif sender == SERVER and self._renegotiation_ccs[SERVER]:
                self.server_answered = True  # the server finished the renegotiation: it accepted
        elif content_type == CHANGE_CIPHER_SPEC:
            if self.renegotiation:
                self._renegotiation_ccs[sender] = True
        elif sender == SERVER and (content_type == ALERT or not self.renegotiation):
            self.server_answered = True
        elif sender == CLIENT and not self.renegotiation:
            self._client_records_after += 1

    @property
    def renegotiation_window_over(self) -> bool:
        """The client has sent a request's worth of records with no renegotiation in sight.

        A server that wants a certificate for a request asks once it has read the request (IIS does,
        after the headers): past the client's first records of an upload the server would have asked.
        """
        return self._client_records_after >= CLIENT_RECORDS_BEFORE_RENEGOTIATION

    def _early_data(self, sender: Sender) -> bool:
        """Application data sent with the ClientHello (0-RTT) when the hello offered early_data."""
        return (
            sender == CLIENT
            and self.server_hello is None
            and any(EARLY_DATA in hello.extension_types for hello in self.client_hellos)
        )

    def _keep(self, sender: Sender, record: Record, timestamp: float) -> None:
        size = len(record.payload)
        if self._protected_bytes + size > MAX_PROTECTED_BYTES:
            return
        self._protected_bytes += size
        self.protected.append(ProtectedRecord(sender, record.content_type, record.version, record.payload, timestamp))

    def session(self) -> Session | None:
        """The parameters decryption needs, once both hellos are known.

        The ServerHello answers the last ClientHello; after a HelloRetryRequest some clients (scapy) send
        a new random, and key logs name the connection by the random of the hello that was answered.
        """
        hello, server = (self.client_hellos[-1] if self.client_hellos else None), self.server_hello
        if hello is None or server is None:
            return None
        return Session(hello.random, server.random, server.cipher_suite, server.version, server.compression_method)

    def _protected(self, sender: Sender) -> bool:
        """Whether this direction's records are encrypted by now, judged from the plaintext seen."""
        if self.tls13:
            # After a TLS 1.3 ServerHello both sides switch to handshake keys; only CCS stays clear.
            return True
        retry = self.hello_retry_request
        if self.server_hello is None or (retry is not None and tls_equivalent(retry.version) >= TLS13):
            # Before a ServerHello, or around a HelloRetryRequest, a ChangeCipherSpec is TLS 1.3's
            # middlebox-compatibility noise: no keys exist yet.
            return False
        return self._ccs[sender]

    def _alert(self, sender: Sender, payload: bytes, timestamp: float) -> None:
        if self._protected(sender) and len(payload) != 2:
            self.alerts.append(AlertFinding(sender, None, None, Evidence.PLAINTEXT, timestamp))
            return
        try:
            alerts = parse_alerts(payload)
        except ParseError as error:
            self.note(f"{sender}_alert_malformed: {error.what}")
            return
        self.alerts.extend(
            AlertFinding(sender, alert.level, alert.description, Evidence.PLAINTEXT, timestamp) for alert in alerts
        )

    def _handshake_fragment(self, sender: Sender, fragment: bytes) -> None:
        try:
            messages = self._handshake_readers[sender].feed(fragment)
        except ParseError as error:
            self.stream_broken(sender, f"handshake_framing: {error.what}")
            return
        for message in messages:
            self._message(sender, message.msg_type, message.body)

    def _message(self, sender: Sender, msg_type: int, body: bytes) -> None:
        try:
            if sender == CLIENT:
                self._client_message(msg_type, body)
            else:
                self._server_message(msg_type, body)
        except ParseError as error:
            name = HANDSHAKE_TYPE_NAMES.get(msg_type, f"handshake_{msg_type}")
            self.note(f"{sender}_{name}_malformed: {error.what}")

    def _client_message(self, msg_type: int, body: bytes) -> None:
        if msg_type == CLIENT_HELLO:
            hello = parse_client_hello(body, dtls=self.dtls)
            if self.hello_verify_request is not None and len(self.client_hellos) == 1 and hello.cookie:
                # The hello the cookie exchange asked for replaces the first: it is the one answered.
                self.client_hellos[0] = hello
            else:
                self.client_hellos.append(hello)
        elif msg_type == CERTIFICATE:
            self.client_flight_seen = True
            self.client_certificate = parse_certificate(body, tls13=self.tls13)
        elif msg_type in (CLIENT_KEY_EXCHANGE, CERTIFICATE_VERIFY):
            self.client_flight_seen = True

    def _server_message(self, msg_type: int, body: bytes) -> None:
        if msg_type == SERVER_HELLO:
            hello = parse_server_hello(body)
            if hello.is_hello_retry_request:
                self.hello_retry_request = hello
            else:
                self.server_hello = hello
        elif msg_type == HELLO_VERIFY_REQUEST and self.dtls:
            from helloscope.parsers.dtls import parse_hello_verify_request

            self.hello_verify_request = parse_hello_verify_request(body)
        elif msg_type == CERTIFICATE and self.server_certificate is None:
            self.server_certificate = server_certificate_seen(parse_certificate(body, tls13=self.tls13))
        elif msg_type == CERTIFICATE_REQUEST:
            version = tls_equivalent(self.version) if self.version else TLS12
            self.certificate_request = parse_certificate_request(body, tls13=version >= TLS13, tls12=version == TLS12)
        elif msg_type == SERVER_KEY_EXCHANGE:
            # ECDHE parameters start with curve_type named_curve (3) and the group (RFC 8422 5.4).
            if len(body) >= 3 and body[0] == NAMED_CURVE:
                self.key_exchange_group = body[1] << 8 | body[2]
        elif msg_type == SERVER_HELLO_DONE:
            self.server_flight_done = True
