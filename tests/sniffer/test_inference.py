"""Size-based TLS 1.3 inference: the sizes it relies on, and the cases where it must not answer."""

from __future__ import annotations

import pytest

from helloscope.sniffer.handshake.inference import Sizes, infer
from helloscope.sniffer.report.model import RecordTrace
from helloscope.sniffer.vocabulary import CertificateState, Confidence, Sender, Verdict

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
HIGH, MEDIUM = Confidence.HIGH, Confidence.MEDIUM
EMPTY, PRESENTED = CertificateState.EMPTY, CertificateState.PRESENTED
ACCEPTED, ALERT_AND_CLOSE = Verdict.ACCEPTED, Verdict.ALERT_AND_CLOSE

AES_128_GCM, AES_256_GCM, CCM_8 = 0x1301, 0x1302, 0x1305


@pytest.mark.parametrize(
    ("suite", "finished", "empty", "both", "alert"),
    [
        (AES_128_GCM, 53, 25, 61, 19),  # PROTOCOL.md: SHA-256 suites, 16-byte tag
        (AES_256_GCM, 69, 25, 77, 19),  # SHA-384
        (CCM_8, 45, 17, 53, 11),  # 8-byte tag
    ],
)
def test_sizes_match_the_protocol_facts(suite, finished, empty, both, alert):
    sizes = Sizes.for_suite(suite)
    assert (sizes.finished, sizes.empty_certificate, sizes.empty_certificate_and_finished, sizes.alert) == (
        finished,
        empty,
        both,
        alert,
    )


def _trace(*records: tuple[str, int]) -> tuple[RecordTrace, ...]:
    return tuple(RecordTrace(sender, 23, length, float(index)) for index, (sender, length) in enumerate(records))


SERVER_FLIGHT = ((SERVER, 40), (SERVER, 62), (SERVER, 900), (SERVER, 280), (SERVER, 53))


def test_finished_only_means_no_certificate_request():
    guess = infer(_trace(*SERVER_FLIGHT, (CLIENT, 53), (SERVER, 250)), AES_128_GCM, False, False)
    assert guess.certificate_request.value is False and guess.certificate_request.confidence == HIGH
    assert guess.certificate_request.basis == "client_flight=53"


def test_empty_certificate_then_alert_and_close_is_a_rejection_at_medium_confidence():
    guess = infer(_trace(*SERVER_FLIGHT, (CLIENT, 25), (CLIENT, 53), (SERVER, 19)), AES_128_GCM, False, True)
    assert guess.client_certificate.value == EMPTY and guess.client_certificate.confidence == HIGH
    assert guess.server_verdict.value == ALERT_AND_CLOSE and guess.server_verdict.confidence == MEDIUM


def test_certificate_verify_finished_pattern_is_a_presented_certificate():
    guess = infer(
        _trace(*SERVER_FLIGHT, (CLIENT, 1500), (CLIENT, 281), (CLIENT, 53), (SERVER, 250)), AES_128_GCM, False, False
    )
    assert guess.client_certificate.value == PRESENTED and guess.client_certificate.confidence == HIGH
    assert guess.server_verdict.value == ACCEPTED


def test_padded_records_give_no_answer():
    padded = _trace(*SERVER_FLIGHT, (CLIENT, 512 + 16), (CLIENT, 512 + 16), (CLIENT, 512 + 16))
    guess = infer(padded, AES_128_GCM, False, False)
    assert guess.certificate_request is None and guess.client_certificate is None


def test_psk_resumption_cannot_carry_a_certificate_request():
    guess = infer(_trace((SERVER, 40), (SERVER, 53), (CLIENT, 53)), AES_128_GCM, True, False)
    assert guess.certificate_request.value is False and guess.certificate_request.basis == "psk_resumption"


def test_unknown_sizes_give_no_answer():
    guess = infer(_trace(*SERVER_FLIGHT, (CLIENT, 40)), AES_128_GCM, False, False)
    assert guess.certificate_request is None
