"""TLS 1.3 without keys: what record sizes, record order and TCP teardown say about client auth.

After the server's flight the client answers with its own: only a Finished when no CertificateRequest
was sent; an empty Certificate and a Finished when it was declined; a Certificate, a CertificateVerify
and a Finished when a certificate was presented. Under an AEAD each of those has a length that the
cipher suite fixes exactly (PROTOCOL.md). What the server sends next — a ticket or data, or an
alert-sized record followed by a close — tells whether it accepted the flight.

Every answer carries a confidence and a short ``basis`` naming the sizes it rests on. ``high`` is kept
for exact, unambiguous size patterns; record padding, coalesced messages or a missing verdict lower
it, and a pattern that fits nothing gives no answer at all rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from helloscope.parsers.registry import APPLICATION_DATA
from helloscope.sniffer.report.model import RecordTrace
from helloscope.sniffer.vocabulary import CertificateState, Confidence, Sender, Verdict

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
ABSENT, EMPTY, PRESENTED = CertificateState.ABSENT, CertificateState.EMPTY, CertificateState.PRESENTED
ACCEPTED, ALERT_AND_CLOSE = Verdict.ACCEPTED, Verdict.ALERT_AND_CLOSE
_STRENGTH: Final = {confidence: rank for rank, confidence in enumerate(reversed(Confidence))}
_Value = TypeVar("_Value", bool, CertificateState, Verdict)

_SHA384_SUITES: Final = frozenset({0x1302})
_SHORT_TAG_SUITES: Final = frozenset({0x1305})  # AES-128-CCM-8: 8-byte tag
_EMPTY_CERTIFICATE: Final = 4 + 1 + 3  # header, empty request context, empty certificate_list
_ALERT: Final = 2
_INNER_TYPE: Final = 1
# Record padding rounds the inner plaintext up to a block; lengths that are all multiples of this,
# with a Finished that is not its exact size, are taken as padded.
_PADDING_BLOCK: Final = 32


@dataclass(frozen=True, slots=True)
class Sizes:
    """Ciphertext lengths of the messages that tell the flights apart, for one cipher suite."""

    finished: int
    empty_certificate: int
    empty_certificate_and_finished: int
    alert: int
    tag: int

    @classmethod
    def for_suite(cls, cipher_suite: int) -> Sizes:
        tag = 8 if cipher_suite in _SHORT_TAG_SUITES else 16
        finished_body = 4 + (48 if cipher_suite in _SHA384_SUITES else 32)
        overhead = _INNER_TYPE + tag
        return cls(
            finished=finished_body + overhead,
            empty_certificate=_EMPTY_CERTIFICATE + overhead,
            empty_certificate_and_finished=_EMPTY_CERTIFICATE + finished_body + overhead,
            alert=_ALERT + overhead,
            tag=tag,
        )


@dataclass(frozen=True, slots=True)
class Guess(Generic[_Value]):
    value: _Value
    confidence: Confidence
    basis: str


@dataclass(frozen=True, slots=True)
class Inference:
    certificate_request: Guess[bool] | None
    client_certificate: Guess[CertificateState] | None
    server_verdict: Guess[Verdict] | None


def weakest(*confidences: Confidence) -> Confidence:
    return min(confidences, key=_STRENGTH.__getitem__)


def infer(records: tuple[RecordTrace, ...], cipher_suite: int, resumed: bool, server_closed: bool) -> Inference:
    """Guesses for one TLS 1.3 connection from the records after its ServerHello."""
    sizes = Sizes.for_suite(cipher_suite)
    protected = [record for record in records if record.content_type == APPLICATION_DATA]
    start = next((index for index, record in enumerate(protected) if record.sender == CLIENT), None)
    if start is None:
        request, certificate = _flight_guesses([], sizes, resumed)
        return Inference(request, certificate, None)
    end = start
    while end < len(protected) and protected[end].sender == CLIENT:
        end += 1
    flight = [record.length for record in protected[start:end]]
    request, certificate = _flight_guesses(flight, sizes, resumed)
    server_flight = [record.length for record in protected[:start] if record.sender == SERVER]
    verdict = None if _padded(server_flight, sizes) else _server_verdict(protected[start:], sizes, server_closed)
    return Inference(request, certificate, verdict)


def _flight_guesses(
    flight: list[int], sizes: Sizes, resumed: bool
) -> tuple[Guess[bool] | None, Guess[CertificateState] | None]:
    if resumed:
        # RFC 8446 4.3.2: a server authenticating with a PSK does not send a CertificateRequest.
        return Guess(False, HIGH, "psk_resumption"), Guess(ABSENT, HIGH, "psk_resumption")
    if not flight or _padded(flight, sizes):
        return None, None
    basis = "client_flight=" + "+".join(map(str, flight[:4]))
    first = flight[0]
    if first == sizes.finished:
        return Guess(False, HIGH, basis), Guess(ABSENT, HIGH, basis)
    if first == sizes.empty_certificate_and_finished:
        return Guess(True, HIGH, basis), Guess(EMPTY, HIGH, basis)
    if first == sizes.empty_certificate:
        confidence = HIGH if len(flight) > 1 and flight[1] == sizes.finished else MEDIUM
        return Guess(True, confidence, basis), Guess(EMPTY, confidence, basis)
    if first > sizes.empty_certificate_and_finished:
        # A certificate chain: Certificate, CertificateVerify, Finished, one record each when exact.
        exact = len(flight) >= 3 and flight[2] == sizes.finished and flight[1] < first
        confidence = HIGH if exact else LOW
        return Guess(True, confidence, basis), Guess(PRESENTED, confidence, basis)
    return None, None


def _padded(lengths: list[int], sizes: Sizes) -> bool:
    """Every record a multiple of the padding block and no exact Finished: sizes say nothing."""
    return (
        bool(lengths)
        and sizes.finished not in lengths
        and all((length - sizes.tag) % _PADDING_BLOCK == 0 for length in lengths)
    )


def _server_verdict(after_flight: list[RecordTrace], sizes: Sizes, server_closed: bool) -> Guess[Verdict] | None:
    """Whether the server carried on after the client's flight, from what both sides sent next.

    A close_notify is as long as a fatal alert, and some servers send tickets before rejecting, so an
    alert-sized last record only means a rejection when the client had not started closing first.
    """
    server = [record for record in after_flight if record.sender == SERVER]
    if not server:
        return None
    basis = "server_after_flight=" + "+".join(str(record.length) for record in server[:3])
    basis += ",server_closed" if server_closed else ""
    last = server[-1]
    ends_with_alert = last.length == sizes.alert and server_closed
    if not ends_with_alert:
        if any(record.length == sizes.alert for record in server):
            return None  # an alert-sized record, then more: a warning or a key update, not a verdict
        return Guess(ACCEPTED, HIGH, basis)
    client_closed_first = any(
        record.sender == CLIENT and record.length == sizes.alert and record.timestamp <= last.timestamp
        for record in after_flight
    )
    if client_closed_first:
        # The server's alert answers the client's close_notify: it had carried on.
        return Guess(ACCEPTED, MEDIUM, basis + ",client_closed_first")
    if len(server) > 1:
        return None  # tickets or data, then an alert: a graceful close or a late rejection
    return Guess(ALERT_AND_CLOSE, MEDIUM, basis)
