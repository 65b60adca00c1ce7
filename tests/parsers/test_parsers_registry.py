"""Name tables and GREASE recognition (RFC 8701, IANA TLS registries)."""

from __future__ import annotations

import pytest
from helloscope.parsers import registry
from helloscope.parsers.registry import (
    ALERT_NAMES,
    CERTIFICATE_REJECTION_ALERTS,
    CIPHER_SUITE_NAMES,
    EXTENSION_NAMES,
    GREASE_PSK_MODES,
    GROUP_NAMES,
    HANDSHAKE_TYPE_NAMES,
    is_grease,
    is_grease_psk_mode,
    version_text,
)


def test_grease_values_are_exactly_the_sixteen_of_rfc8701() -> None:
    expected = {0x0A0A + 0x1010 * i for i in range(16)}
    assert {v for v in range(1 << 16) if is_grease(v)} == expected


def test_grease_psk_modes_are_the_rfc8701_sequence() -> None:
    assert {0x0B + 0x1F * i for i in range(8)} == GREASE_PSK_MODES
    assert [v for v in range(256) if is_grease_psk_mode(v)] == sorted(GREASE_PSK_MODES)


def test_alert_names_cover_the_registry() -> None:
    expected = {
        0: "close_notify",
        10: "unexpected_message",
        20: "bad_record_mac",
        22: "record_overflow",
        40: "handshake_failure",
        41: "no_certificate",
        42: "bad_certificate",
        43: "unsupported_certificate",
        44: "certificate_revoked",
        45: "certificate_expired",
        46: "certificate_unknown",
        47: "illegal_parameter",
        48: "unknown_ca",
        49: "access_denied",
        50: "decode_error",
        51: "decrypt_error",
        70: "protocol_version",
        71: "insufficient_security",
        80: "internal_error",
        86: "inappropriate_fallback",
        90: "user_canceled",
        100: "no_renegotiation",
        109: "missing_extension",
        110: "unsupported_extension",
        112: "unrecognized_name",
        115: "unknown_psk_identity",
        116: "certificate_required",
        120: "no_application_protocol",
        121: "ech_required",
    }
    assert {code: ALERT_NAMES[code] for code in expected} == expected
    assert {21, 30, 60, 111, 113, 114} <= ALERT_NAMES.keys()


def test_certificate_rejection_alerts() -> None:
    assert frozenset({40, 42, 43, 44, 45, 46, 48, 49, 51, 116}) == CERTIFICATE_REJECTION_ALERTS
    assert ALERT_NAMES.keys() >= CERTIFICATE_REJECTION_ALERTS


def test_group_names_include_post_quantum_hybrids() -> None:
    assert GROUP_NAMES[29] == "x25519"
    assert GROUP_NAMES[23] == "secp256r1"
    assert GROUP_NAMES[256] == "ffdhe2048"
    assert GROUP_NAMES[0x11EC] == "X25519MLKEM768"
    assert GROUP_NAMES[0x11EB] == "SecP256r1MLKEM768"
    assert GROUP_NAMES[0x11ED] == "SecP384r1MLKEM1024"
    assert GROUP_NAMES[0x6399] == "X25519Kyber768Draft00"


def test_names_for_codepoints_the_parsers_decode() -> None:
    assert EXTENSION_NAMES[62] == "tls_flags"
    assert EXTENSION_NAMES[0xFE0D] == "encrypted_client_hello"
    assert EXTENSION_NAMES[49] == "post_handshake_auth"
    assert HANDSHAKE_TYPE_NAMES[13] == "certificate_request"
    assert CIPHER_SUITE_NAMES[0x1301] == "TLS_AES_128_GCM_SHA256"
    assert CIPHER_SUITE_NAMES[0xC02F] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_handshake_and_content_type_constants() -> None:
    assert (
        registry.CLIENT_HELLO,
        registry.SERVER_HELLO,
        registry.CERTIFICATE,
        registry.CERTIFICATE_REQUEST,
        registry.FINISHED,
        registry.MESSAGE_HASH,
    ) == (1, 2, 11, 13, 20, 254)
    assert (
        registry.CHANGE_CIPHER_SPEC,
        registry.ALERT,
        registry.HANDSHAKE,
        registry.APPLICATION_DATA,
        registry.HEARTBEAT,
    ) == (20, 21, 22, 23, 24)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (0x0304, ("1.3", "tls")),
        (0x0303, ("1.2", "tls")),
        (0x0302, ("1.1", "tls")),
        (0x0301, ("1.0", "tls")),
        (0x0300, ("3.0", "ssl")),
        (0x0002, ("2.0", "ssl")),
        (0x7F1C, ("1.3-draft-28", "tls")),
        (0xFB1A, ("1.3-fb-draft-26", "tls")),
        (0x0A0A, ("0x0a0a", "unknown")),
    ],
)
def test_version_text(version: int, expected: tuple[str, str]) -> None:
    assert version_text(version) == expected
