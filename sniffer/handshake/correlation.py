"""From observations to conclusions: the CertificateRequest, the client certificate, the outcomes.

Observations come from the plaintext handshake (the tracker's frozen :class:`Handshake`) and, where a
key log opens the protected records, from :mod:`helloscope.sniffer.handshake.decryption`. Every
conclusion carries the weakest evidence it rests on. Where TLS 1.3 hides a fact and nothing decrypts it,
the answer is ``None`` with evidence ``unknown`` (or ``decrypt_failed``) — never a default that looks
like an observation. Nothing here writes back into the observations: what concluding finds worth noting
travels in :attr:`Conclusion.anomalies`.
"""

from __future__ import annotations

from helloscope.parsers.certs import (
    CertificateMessage,
    CertificateRequest,
    X509Summary,
    parse_certificate,
    parse_certificate_request,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.registry import (
    CERTIFICATE,
    CERTIFICATE_REJECTION_ALERTS,
    CERTIFICATE_REQUEST,
    FINISHED,
    TLS12,
    TLS13,
    tls_equivalent,
)
from helloscope.sniffer.handshake.decryption import DecryptedMessage, Decryption
from helloscope.sniffer.handshake.inference import Guess, infer
from helloscope.sniffer.handshake.settlement import server_went_on
from helloscope.sniffer.memo import repeated
from helloscope.sniffer.report.model import (
    AlertFinding,
    CertificateRequestFinding,
    ClientCertificateFinding,
    Conclusion,
    Handshake,
)
from helloscope.sniffer.vocabulary import (
    CertificateState,
    Confidence,
    DecryptionStatus,
    Evidence,
    FlagOutcome,
    Outcome,
    Phase,
    Sender,
    Verdict,
)

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER


def conclude(handshake: Handshake, decryption: Decryption, server_closed: bool = False) -> Conclusion:
    notes: list[str] = []
    if decryption.status == DecryptionStatus.DECRYPTED:
        request, certificate, alerts, established = _decrypted_view(handshake, decryption, notes)
    else:
        request = certificate_request_finding(handshake)
        certificate = client_certificate_finding(handshake, request)
        alerts, established = handshake.alerts, handshake.established
        if handshake.tls13 and decryption.status == DecryptionStatus.DECRYPT_FAILED:
            request = CertificateRequestFinding(None, Evidence.DECRYPT_FAILED)
            certificate = ClientCertificateFinding(None, Evidence.DECRYPT_FAILED)
        elif handshake.tls13 and not handshake.dtls:
            # The size rules were measured on TLS over TCP only; DTLS 1.3 without keys says unknown.
            return _inferred_view(handshake, request, certificate, server_closed)
    unread = _unread_renegotiation(handshake, decryption)
    if unread is not None:
        request, certificate = _renegotiated(request, unread), _renegotiated_certificate(certificate, unread)
    outcome, outcome_evidence = connection_outcome(handshake, alerts, established, request, certificate)
    if unread is not None and outcome not in (Outcome.FAILED, Outcome.REJECTED):
        # Whatever the first handshake showed, the renegotiation had the last word, unread.
        outcome, outcome_evidence = Outcome.UNKNOWN, unread
    flag_outcome, flag_evidence = flag_outcome_of(handshake, request)
    anomalies = tuple(note for note in dict.fromkeys(notes) if note not in handshake.anomalies)
    return Conclusion(
        request,
        certificate,
        alerts,
        established,
        outcome,
        outcome_evidence,
        flag_outcome,
        flag_evidence,
        anomalies=anomalies,
    )


# ----- renegotiation -----------------------------------------------------------------------------


def _unread_renegotiation(handshake: Handshake, decryption: Decryption) -> Evidence | None:
    """TLS <= 1.2 renegotiated and nothing opened the renegotiation: why its content is not known.

    The record headers show that it took place (Handshake.renegotiation); its messages, among them a
    CertificateRequest and the client's Certificate, are encrypted under the first handshake's keys.
    """
    if not handshake.renegotiation or handshake.tls13 or decryption.status == DecryptionStatus.DECRYPTED:
        return None
    return Evidence.DECRYPT_FAILED if decryption.status == DecryptionStatus.DECRYPT_FAILED else Evidence.UNKNOWN


def _renegotiated(request: CertificateRequestFinding, unread: Evidence) -> CertificateRequestFinding:
    """A CertificateRequest seen in the first handshake stands; "none" does not: the renegotiation may hold one."""
    return request if request.seen else CertificateRequestFinding(None, unread)


def _renegotiated_certificate(certificate: ClientCertificateFinding, unread: Evidence) -> ClientCertificateFinding:
    """A certificate the client presented stands; "none" does not: it may present one in the renegotiation."""
    if certificate.state == CertificateState.PRESENTED:
        return certificate
    return ClientCertificateFinding(None, unread)


# ----- plaintext ---------------------------------------------------------------------------------


def certificate_request_finding(handshake: Handshake) -> CertificateRequestFinding:
    if handshake.certificate_request is not None:
        return CertificateRequestFinding(True, Evidence.PLAINTEXT, handshake.certificate_request)
    server_fatal = any(alert.fatal and alert.sender == SERVER for alert in handshake.alerts)
    if handshake.server_hello is None:
        # A server that answers the ClientHello with an alert has visibly sent no CertificateRequest.
        if server_fatal:
            return CertificateRequestFinding(False, Evidence.PLAINTEXT)
        return CertificateRequestFinding(None, Evidence.UNKNOWN)
    if handshake.tls13:
        return CertificateRequestFinding(None, Evidence.UNKNOWN)
    if handshake.server_flight_done or handshake.resumed or server_fatal:
        return CertificateRequestFinding(False, Evidence.PLAINTEXT)
    return CertificateRequestFinding(None, Evidence.UNKNOWN)


def client_certificate_finding(handshake: Handshake, request: CertificateRequestFinding) -> ClientCertificateFinding:
    message = handshake.client_certificate
    if message is not None:
        return _readable_certificate(message, Evidence.PLAINTEXT)
    if handshake.tls13:
        return ClientCertificateFinding(None, Evidence.UNKNOWN)
    if request.seen is False or (request.seen and handshake.client_flight_seen):
        return ClientCertificateFinding(CertificateState.ABSENT, Evidence.PLAINTEXT)
    return ClientCertificateFinding(None, Evidence.UNKNOWN)


@repeated(4096, 16384)  # real certificates are 1-8 KB
def certificate_summary(der: bytes) -> X509Summary:
    """parsers.x509.summarize_x509, once per distinct certificate: a server's certificate comes back on
    every connection to it, and reading one costs more than the rest of a connection's report. An
    unreadable one raises ParseError each time (errors are not kept)."""
    from helloscope.parsers.x509 import summarize_x509  # cryptography loads with the first certificate

    return summarize_x509(der)


def _readable_certificate(message: CertificateMessage, evidence: Evidence) -> ClientCertificateFinding:
    if message.empty:
        return ClientCertificateFinding(CertificateState.EMPTY, evidence)
    chain: list[X509Summary] = []
    unreadable: list[str] = []
    for position, der in enumerate(message.certificates):
        try:
            chain.append(certificate_summary(der))
        except ParseError as error:
            unreadable.append(f"certificate {position}: {error.what}")
    return ClientCertificateFinding(
        CertificateState.PRESENTED, evidence, tuple(chain), len(message.certificates), tuple(unreadable)
    )


# ----- decrypted ---------------------------------------------------------------------------------


def _decrypted_view(
    handshake: Handshake, decryption: Decryption, notes: list[str]
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
    version = tls_equivalent(handshake.version) if handshake.version else TLS12
    tls13 = version >= TLS13
    # TLS 1.3 sends the CertificateRequest in the handshake; TLS 1.2 can only hide one in a renegotiation.
    request_phase = Phase.HANDSHAKE if tls13 else Phase.APPLICATION
    request_message = _first(messages, SERVER, CERTIFICATE_REQUEST, request_phase)
    server_finished = _first(messages, SERVER, FINISHED, Phase.HANDSHAKE)
    client_finished = _first(messages, CLIENT, FINISHED, Phase.HANDSHAKE)

    if request_message is not None:
        try:
            parsed: CertificateRequest | None = parse_certificate_request(
                request_message.body, tls13=tls13, tls12=version == TLS12
            )
        except ParseError as error:
            notes.append(f"server_certificate_request_malformed: {error.what}")
            parsed = None
        request = CertificateRequestFinding(True, Evidence.DECRYPTED, parsed)
    elif not tls13:
        request = certificate_request_finding(handshake)
    elif server_finished is not None:
        request = CertificateRequestFinding(False, Evidence.DECRYPTED)
    else:
        request = CertificateRequestFinding(None, Evidence.UNKNOWN)

    certificate_message = _first(messages, CLIENT, CERTIFICATE, request_phase)
    if certificate_message is not None:
        try:
            certificate = _readable_certificate(
                parse_certificate(certificate_message.body, tls13=tls13), Evidence.DECRYPTED
            )
        except ParseError as error:
            notes.append(f"client_certificate_malformed: {error.what}")
            certificate = ClientCertificateFinding(None, Evidence.UNKNOWN)
    elif not tls13:
        certificate = client_certificate_finding(handshake, request)
    elif client_finished is not None:
        certificate = ClientCertificateFinding(CertificateState.ABSENT, Evidence.DECRYPTED)
    else:
        certificate = ClientCertificateFinding(None, Evidence.UNKNOWN)

    established = handshake.established
    if tls13:
        established = _tls13_established(alerts, client_finished, decryption)
    return request, certificate, alerts, established


def _first(
    messages: tuple[DecryptedMessage, ...], sender: Sender, msg_type: int, phase: Phase
) -> DecryptedMessage | None:
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
    return True if server_went_on(decryption, client_finished.timestamp) else None


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
            guess.certificate_request.value,
            Evidence.INFERRED,
            confidence=guess.certificate_request.confidence,
            basis=guess.certificate_request.basis,
        )
    if guess.client_certificate is not None:
        certificate = ClientCertificateFinding(
            guess.client_certificate.value,
            Evidence.INFERRED,
            confidence=guess.client_certificate.confidence,
            basis=guess.client_certificate.basis,
        )
    verdict = guess.server_verdict
    established: bool | None = None
    if verdict is not None:
        established = verdict.value == Verdict.ACCEPTED
        if verdict.value == Verdict.ALERT_AND_CLOSE:
            last = next(record for record in reversed(handshake.records) if record.sender == SERVER)
            alerts = (*alerts, AlertFinding(SERVER, None, None, Evidence.INFERRED, last.timestamp))
    flag_outcome, flag_evidence = flag_outcome_of(handshake, request)
    outcome, confidence, basis = _inferred_outcome(handshake, guess.outcome)
    return Conclusion(
        request,
        certificate,
        alerts,
        established,
        outcome,
        Evidence.INFERRED if confidence else Evidence.UNKNOWN,
        flag_outcome,
        flag_evidence,
        confidence,
        basis,
    )


def _inferred_outcome(
    handshake: Handshake, outcome: Guess[Outcome] | None
) -> tuple[Outcome, Confidence | None, str | None]:
    """A plaintext fatal alert first; then the outcome the record pattern earned (inference.CALIBRATION).

    The outcome is judged as a whole (a client's own alert after a resumption is ``failed``, not
    ``not_requested``), not composed from the CertificateRequest and a server verdict.
    """
    if any(alert.fatal for alert in handshake.alerts):
        return Outcome.FAILED, None, None
    if outcome is None:
        return Outcome.UNKNOWN, None, None
    return outcome.value, outcome.confidence, outcome.basis


# ----- outcomes ----------------------------------------------------------------------------------


def connection_outcome(
    handshake: Handshake,
    alerts: tuple[AlertFinding, ...],
    established: bool | None,
    request: CertificateRequestFinding,
    certificate: ClientCertificateFinding,
) -> tuple[Outcome, Evidence]:
    fatal = [alert for alert in alerts if alert.fatal]
    server_fatal = next((alert for alert in fatal if alert.sender == SERVER), None)
    certificate_flight = certificate.state is not None and request.seen is not False
    if server_fatal is not None and server_fatal.description in CERTIFICATE_REJECTION_ALERTS and certificate_flight:
        return Outcome.REJECTED, weakest_evidence(server_fatal.evidence, certificate.evidence)
    if fatal:
        return Outcome.FAILED, fatal[0].evidence
    if handshake.server_hello is None:
        return Outcome.INCOMPLETE, Evidence.PLAINTEXT
    if request.seen is None:
        return Outcome.UNKNOWN, request.evidence
    if request.seen is False:
        return Outcome.NOT_REQUESTED, request.evidence
    if not established:
        return Outcome.UNKNOWN, Evidence.UNKNOWN
    if certificate.state == CertificateState.PRESENTED:
        return Outcome.AUTHENTICATED, weakest_evidence(request.evidence, certificate.evidence)
    if certificate.state in (CertificateState.EMPTY, CertificateState.ABSENT):
        return Outcome.DECLINED, weakest_evidence(request.evidence, certificate.evidence)
    return Outcome.UNKNOWN, Evidence.UNKNOWN


def flag_outcome_of(handshake: Handshake, request: CertificateRequestFinding) -> tuple[FlagOutcome, Evidence]:
    if request.seen is None:
        return FlagOutcome.UNKNOWN, request.evidence
    flagged = any(hello.request_mtls for hello in handshake.client_hellos)
    if flagged:
        return (FlagOutcome.HONORED if request.seen else FlagOutcome.IGNORED), request.evidence
    return (FlagOutcome.UNSOLICITED if request.seen else FlagOutcome.NONE), request.evidence


_EVIDENCE_STRENGTH = {evidence: rank for rank, evidence in enumerate(Evidence)}


def weakest_evidence(*evidence: Evidence) -> Evidence:
    """The weakest of some evidence: a conclusion is no stronger than what it rests on."""
    return max(evidence, key=_EVIDENCE_STRENGTH.__getitem__)
