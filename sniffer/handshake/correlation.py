"""From observations to conclusions: the CertificateRequest, the client certificate, the outcomes.

Observations come from the plaintext handshake (the tracker) and, where a key log opens the protected
records, from :mod:`helloscope.sniffer.handshake.decryption`. Every conclusion carries the weakest evidence it rests on.
Where TLS 1.3 hides a fact and nothing decrypts it, the answer is ``None`` with evidence ``unknown`` (or
``decrypt_failed``) — never a default that looks like an observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from helloscope.parsers.certs import (
    CertificateMessage,
    CertificateRequest,
    X509Summary,
    parse_certificate,
    parse_certificate_request,
    summarize_x509,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.registry import CERTIFICATE, CERTIFICATE_REJECTION_ALERTS, CERTIFICATE_REQUEST, FINISHED
from helloscope.sniffer.handshake.decryption import APPLICATION, DECRYPT_FAILED, DONE, HANDSHAKE_PHASE, DecryptedMessage, Decryption
from helloscope.sniffer.handshake.inference import ACCEPTED, ALERT_AND_CLOSE, Guess, infer
from helloscope.sniffer.report.model import (
    ABSENT,
    AUTHENTICATED,
    CLIENT,
    DECLINED,
    DECRYPTED,
    EMPTY,
    FAILED,
    HONORED,
    IGNORED,
    INCOMPLETE,
    INFERRED,
    NONE,
    NOT_REQUESTED,
    PLAINTEXT,
    PRESENTED,
    REJECTED,
    SERVER,
    UNKNOWN,
    UNSOLICITED,
    AlertFinding,
    CertificateRequestFinding,
    ClientCertificateFinding,
    Handshake,
)
from helloscope.sniffer.handshake.tracker import TLS12, TLS13, ConnectionTracker


@dataclass(frozen=True, slots=True)
class Conclusion:
    certificate_request: CertificateRequestFinding
    client_certificate: ClientCertificateFinding
    alerts: tuple[AlertFinding, ...]
    established: bool | None
    outcome: str
    outcome_evidence: str
    flag_outcome: str
    flag_outcome_evidence: str
    outcome_confidence: str | None = None
    outcome_basis: str | None = None


def conclude(
    tracker: ConnectionTracker, handshake: Handshake, decryption: Decryption, server_closed: bool = False
) -> Conclusion:
    if decryption.status == DONE:
        request, certificate, alerts, established = _decrypted_view(tracker, handshake, decryption)
    else:
        request = certificate_request_finding(tracker)
        certificate = client_certificate_finding(tracker, request)
        alerts, established = handshake.alerts, handshake.established
        if tracker.tls13 and decryption.status == DECRYPT_FAILED:
            request = CertificateRequestFinding(None, DECRYPT_FAILED)
            certificate = ClientCertificateFinding(None, DECRYPT_FAILED)
        elif tracker.tls13:
            return _inferred_view(handshake, request, certificate, server_closed)
    outcome, outcome_evidence = connection_outcome(handshake, alerts, established, request, certificate)
    flag_outcome, flag_evidence = flag_outcome_of(handshake, request)
    return Conclusion(request, certificate, alerts, established, outcome, outcome_evidence, flag_outcome, flag_evidence)


# ----- plaintext ---------------------------------------------------------------------------------


def certificate_request_finding(tracker: ConnectionTracker) -> CertificateRequestFinding:
    if tracker.certificate_request is not None:
        return CertificateRequestFinding(True, PLAINTEXT, tracker.certificate_request)
    server_fatal = any(alert.fatal and alert.sender == SERVER for alert in tracker.alerts)
    if tracker.server_hello is None:
        # A server that answers the ClientHello with an alert has visibly sent no CertificateRequest.
        return CertificateRequestFinding(False if server_fatal else None, PLAINTEXT if server_fatal else UNKNOWN)
    if tracker.tls13:
        return CertificateRequestFinding(None, UNKNOWN)
    if tracker.server_flight_done or tracker.resumed or server_fatal:
        return CertificateRequestFinding(False, PLAINTEXT)
    return CertificateRequestFinding(None, UNKNOWN)


def client_certificate_finding(
    tracker: ConnectionTracker, request: CertificateRequestFinding
) -> ClientCertificateFinding:
    message = tracker.client_certificate
    if message is not None:
        return _readable_certificate(message, PLAINTEXT)
    if tracker.tls13:
        return ClientCertificateFinding(None, UNKNOWN)
    if request.seen is False or (request.seen and tracker.client_flight_seen):
        return ClientCertificateFinding(ABSENT, PLAINTEXT)
    return ClientCertificateFinding(None, UNKNOWN)


def _readable_certificate(message: CertificateMessage, evidence: str) -> ClientCertificateFinding:
    if message.empty:
        return ClientCertificateFinding(EMPTY, evidence)
    chain: list[X509Summary] = []
    unreadable: list[str] = []
    for position, der in enumerate(message.certificates):
        try:
            chain.append(summarize_x509(der))
        except ParseError as error:
            unreadable.append(f"certificate {position}: {error.what}")
    return ClientCertificateFinding(PRESENTED, evidence, tuple(chain), len(message.certificates), tuple(unreadable))


# ----- decrypted ---------------------------------------------------------------------------------


def _decrypted_view(
    tracker: ConnectionTracker, handshake: Handshake, decryption: Decryption
) -> tuple[CertificateRequestFinding, ClientCertificateFinding, tuple[AlertFinding, ...], bool | None]:
    """Findings once the protected records were opened: TLS 1.3 handshakes, TLS 1.2 renegotiations."""
    messages = decryption.messages
    # Decrypted alerts replace the placeholders the tracker kept for alert records it could not read.
    alerts = tuple(
        sorted(
            [alert for alert in handshake.alerts if alert.level is not None] + list(decryption.alerts),
            key=lambda alert: alert.timestamp,
        )
    )
    version = handshake.version or TLS12
    tls13 = version >= TLS13
    # TLS 1.3 sends the CertificateRequest in the handshake; TLS 1.2 can only hide one in a renegotiation.
    request_phase = HANDSHAKE_PHASE if tls13 else APPLICATION
    request_message = _first(messages, SERVER, CERTIFICATE_REQUEST, request_phase)
    server_finished = _first(messages, SERVER, FINISHED, HANDSHAKE_PHASE)
    client_finished = _first(messages, CLIENT, FINISHED, HANDSHAKE_PHASE)

    if request_message is not None:
        try:
            parsed: CertificateRequest | None = parse_certificate_request(
                request_message.body, tls13=tls13, tls12=version == TLS12
            )
        except ParseError as error:
            tracker.note(f"server_certificate_request_malformed: {error.what}")
            parsed = None
        request = CertificateRequestFinding(True, DECRYPTED, parsed)
    elif not tls13:
        request = certificate_request_finding(tracker)
    elif server_finished is not None:
        request = CertificateRequestFinding(False, DECRYPTED)
    else:
        request = CertificateRequestFinding(None, UNKNOWN)

    certificate_message = _first(messages, CLIENT, CERTIFICATE, HANDSHAKE_PHASE if tls13 else APPLICATION)
    if certificate_message is not None:
        try:
            certificate = _readable_certificate(parse_certificate(certificate_message.body, tls13=tls13), DECRYPTED)
        except ParseError as error:
            tracker.note(f"client_certificate_malformed: {error.what}")
            certificate = ClientCertificateFinding(None, UNKNOWN)
    elif not tls13:
        certificate = client_certificate_finding(tracker, request)
    elif client_finished is not None:
        certificate = ClientCertificateFinding(ABSENT, DECRYPTED)
    else:
        certificate = ClientCertificateFinding(None, UNKNOWN)

    established = handshake.established
    if tls13:
        established = _tls13_established(alerts, client_finished, decryption)
    return request, certificate, alerts, established


def _first(messages: tuple[DecryptedMessage, ...], sender: str, msg_type: int, phase: str) -> DecryptedMessage | None:
    return next(
        (item for item in messages if item.sender == sender and item.msg_type == msg_type and item.phase == phase),
        None,
    )


def _tls13_established(
    alerts: tuple[AlertFinding, ...], client_finished: DecryptedMessage | None, decryption: Decryption
) -> bool | None:
    """The server carried on after the client's Finished: a ticket, data or a graceful close, no fatal alert."""
    if client_finished is None:
        return None
    if any(alert.fatal and alert.sender == SERVER for alert in alerts):
        return False
    after = client_finished.timestamp
    went_on = (
        any(sender == SERVER and timestamp >= after for sender, timestamp in decryption.application_records)
        or any(message.sender == SERVER and message.phase == APPLICATION for message in decryption.messages)
        or any(alert.sender == SERVER and alert.timestamp >= after for alert in decryption.alerts)
    )
    return True if went_on else None


# ----- inferred ----------------------------------------------------------------------------------


def _inferred_view(
    handshake: Handshake,
    request: CertificateRequestFinding,
    certificate: ClientCertificateFinding,
    server_closed: bool,
) -> Conclusion:
    """TLS 1.3 without keys: plaintext facts first, then what the record sizes support."""
    assert handshake.server_hello is not None
    alerts = handshake.alerts
    guess = infer(handshake.records, handshake.server_hello.cipher_suite, bool(handshake.resumed), server_closed)
    if guess.certificate_request is not None:
        request = CertificateRequestFinding(
            bool(guess.certificate_request.value),
            INFERRED,
            confidence=guess.certificate_request.confidence,
            basis=guess.certificate_request.basis,
        )
    if guess.client_certificate is not None:
        certificate = ClientCertificateFinding(
            str(guess.client_certificate.value),
            INFERRED,
            confidence=guess.client_certificate.confidence,
            basis=guess.client_certificate.basis,
        )
    verdict = guess.server_verdict
    established: bool | None = None
    if verdict is not None:
        established = verdict.value == ACCEPTED
        if verdict.value == ALERT_AND_CLOSE:
            last = next(record for record in reversed(handshake.records) if record.sender == SERVER)
            alerts = (*alerts, AlertFinding(SERVER, None, None, INFERRED, last.timestamp))
    flag_outcome, flag_evidence = flag_outcome_of(handshake, request)
    outcome, confidence, basis = _inferred_outcome(handshake, guess.outcome)
    return Conclusion(
        request,
        certificate,
        alerts,
        established,
        outcome,
        INFERRED if confidence else UNKNOWN,
        flag_outcome,
        flag_evidence,
        confidence,
        basis,
    )


def _inferred_outcome(handshake: Handshake, outcome: Guess | None) -> tuple[str, str | None, str | None]:
    """A plaintext fatal alert first; then the outcome the record pattern earned (inference.CALIBRATION).

    The outcome is judged as a whole (a client's own alert after a resumption is ``failed``, not
    ``not_requested``), not composed from the CertificateRequest and a server verdict.
    """
    if any(alert.fatal for alert in handshake.alerts):
        return FAILED, None, None
    if outcome is None:
        return UNKNOWN, None, None
    return str(outcome.value), outcome.confidence, outcome.basis


# ----- outcomes ----------------------------------------------------------------------------------


def connection_outcome(
    handshake: Handshake,
    alerts: tuple[AlertFinding, ...],
    established: bool | None,
    request: CertificateRequestFinding,
    certificate: ClientCertificateFinding,
) -> tuple[str, str]:
    fatal = [alert for alert in alerts if alert.fatal]
    server_fatal = next((alert for alert in fatal if alert.sender == SERVER), None)
    certificate_flight = certificate.state is not None and request.seen is not False
    if server_fatal is not None and server_fatal.description in CERTIFICATE_REJECTION_ALERTS and certificate_flight:
        return REJECTED, _weakest(server_fatal.evidence, certificate.evidence)
    if fatal:
        return FAILED, fatal[0].evidence
    if handshake.server_hello is None:
        return INCOMPLETE, PLAINTEXT
    if request.seen is None:
        return UNKNOWN, request.evidence
    if request.seen is False:
        return NOT_REQUESTED, request.evidence
    if not established:
        return UNKNOWN, UNKNOWN
    if certificate.state == PRESENTED:
        return AUTHENTICATED, _weakest(request.evidence, certificate.evidence)
    if certificate.state in (EMPTY, ABSENT):
        return DECLINED, _weakest(request.evidence, certificate.evidence)
    return UNKNOWN, UNKNOWN


def flag_outcome_of(handshake: Handshake, request: CertificateRequestFinding) -> tuple[str, str]:
    if request.seen is None:
        return UNKNOWN, request.evidence
    flagged = any(hello.request_mtls for hello in handshake.client_hellos)
    if flagged:
        return (HONORED if request.seen else IGNORED), request.evidence
    return (UNSOLICITED if request.seen else NONE), request.evidence


# From the strongest to the weakest claim.
_EVIDENCE_ORDER = (PLAINTEXT, DECRYPTED, INFERRED, DECRYPT_FAILED, UNKNOWN)


def _weakest(*evidence: str) -> str:
    return max(evidence, key=lambda item: _EVIDENCE_ORDER.index(item) if item in _EVIDENCE_ORDER else 0)
