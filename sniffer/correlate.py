"""From observations to conclusions: the CertificateRequest, the client certificate, the outcomes.

Every conclusion carries the weakest evidence it rests on. Where TLS 1.3 hides a fact and nothing
decrypts or infers it, the answer is ``None`` with evidence ``unknown`` — never a default that looks
like an observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from parsers.certs import CertificateMessage, X509Summary, summarize_x509
from parsers.errors import ParseError
from parsers.registry import CERTIFICATE_REJECTION_ALERTS
from sniffer.report import (
    ABSENT,
    AUTHENTICATED,
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
    CertificateRequestFinding,
    ClientCertificateFinding,
    Handshake,
)
from sniffer.tracker import ConnectionTracker


@dataclass(frozen=True, slots=True)
class Conclusion:
    certificate_request: CertificateRequestFinding
    client_certificate: ClientCertificateFinding
    outcome: str
    outcome_evidence: str
    flag_outcome: str
    flag_outcome_evidence: str


def conclude(tracker: ConnectionTracker, handshake: Handshake) -> Conclusion:
    request = certificate_request_finding(tracker)
    certificate = client_certificate_finding(tracker, request)
    outcome, outcome_evidence = connection_outcome(handshake, request, certificate)
    flag_outcome, flag_evidence = flag_outcome_of(handshake, request)
    return Conclusion(request, certificate, outcome, outcome_evidence, flag_outcome, flag_evidence)


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
        return _readable_certificate(message)
    if tracker.tls13:
        return ClientCertificateFinding(None, UNKNOWN)
    if request.seen is False:
        return ClientCertificateFinding(ABSENT, PLAINTEXT)
    if request.seen and tracker.client_flight_seen:
        return ClientCertificateFinding(ABSENT, PLAINTEXT)
    return ClientCertificateFinding(None, UNKNOWN)


def _readable_certificate(message: CertificateMessage) -> ClientCertificateFinding:
    if message.empty:
        return ClientCertificateFinding(EMPTY, PLAINTEXT)
    chain: list[X509Summary] = []
    unreadable: list[str] = []
    for position, der in enumerate(message.certificates):
        try:
            chain.append(summarize_x509(der))
        except ParseError as error:
            unreadable.append(f"certificate {position}: {error.what}")
    return ClientCertificateFinding(PRESENTED, PLAINTEXT, tuple(chain), len(message.certificates), tuple(unreadable))


def connection_outcome(
    handshake: Handshake, request: CertificateRequestFinding, certificate: ClientCertificateFinding
) -> tuple[str, str]:
    fatal = [alert for alert in handshake.alerts if alert.fatal]
    server_fatal = next((alert for alert in fatal if alert.sender == SERVER), None)
    certificate_flight = certificate.state is not None and request.seen is not False
    if server_fatal is not None and server_fatal.description in CERTIFICATE_REJECTION_ALERTS and certificate_flight:
        return REJECTED, _weakest(server_fatal.evidence, certificate.evidence)
    if fatal:
        return FAILED, fatal[0].evidence
    if handshake.server_hello is None:
        return INCOMPLETE, PLAINTEXT
    if request.seen is None:
        return UNKNOWN, UNKNOWN
    if request.seen is False:
        return NOT_REQUESTED, request.evidence
    if not handshake.established:
        return UNKNOWN, UNKNOWN
    if certificate.state == PRESENTED:
        return AUTHENTICATED, _weakest(request.evidence, certificate.evidence)
    if certificate.state in (EMPTY, ABSENT):
        return DECLINED, _weakest(request.evidence, certificate.evidence)
    return UNKNOWN, UNKNOWN


def flag_outcome_of(handshake: Handshake, request: CertificateRequestFinding) -> tuple[str, str]:
    if request.seen is None:
        return UNKNOWN, UNKNOWN
    flagged = any(hello.request_mtls for hello in handshake.client_hellos)
    if flagged:
        return (HONORED if request.seen else IGNORED), request.evidence
    return (UNSOLICITED if request.seen else NONE), request.evidence


# From the strongest to the weakest claim.
_EVIDENCE_ORDER = (PLAINTEXT, DECRYPTED, INFERRED, UNKNOWN)


def _weakest(*evidence: str) -> str:
    return max(evidence, key=lambda item: _EVIDENCE_ORDER.index(item) if item in _EVIDENCE_ORDER else 0)
