"""IANA TLS registries in one place: codepoint constants, name tables and GREASE recognition.

Names follow the IANA registries (TLS Parameters, TLS ExtensionType Values, TLS Supported Groups) so
reports use the same words as Wireshark and the RFCs. Parsers never need a name to work: an unknown
codepoint is data, not an error, and presentation falls back to the number.
"""

from __future__ import annotations

from typing import Final

# Protocol versions as the wire carries them (RFC 8446 4.1.2, RFC 5246 A.1).
TLS12: Final = 0x0303
TLS13: Final = 0x0304

# QUIC versions (RFC 9000 15, RFC 9369 3.1), and the names events give them.
QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF
QUIC_VERSION_NAMES: Final = {QUIC_V1: "v1", QUIC_V2: "v2"}

# IP protocol numbers (IANA Assigned Internet Protocol Numbers): network.transport, the Community ID.
IP_PROTOCOL_TCP: Final = 6
IP_PROTOCOL_UDP: Final = 17

# Content types (RFC 8446 5.1, RFC 6520 for heartbeat).
CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23
HEARTBEAT: Final = 24
TLS12_CID: Final = 25  # DTLS 1.2 record with a connection ID (RFC 9146)
ACK: Final = 26  # DTLS 1.3 (RFC 9147 7)

CONTENT_TYPE_NAMES: Final[dict[int, str]] = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
    TLS12_CID: "tls12_cid",
    ACK: "ack",
}

# Handshake message types (RFC 8446 4, RFC 5246 7.4, RFC 6066, RFC 8879).
HELLO_REQUEST: Final = 0
CLIENT_HELLO: Final = 1
SERVER_HELLO: Final = 2
HELLO_VERIFY_REQUEST: Final = 3  # DTLS 1.0/1.2 only (RFC 6347 4.2.1)
NEW_SESSION_TICKET: Final = 4
END_OF_EARLY_DATA: Final = 5
ENCRYPTED_EXTENSIONS: Final = 8
CERTIFICATE: Final = 11
SERVER_KEY_EXCHANGE: Final = 12
CERTIFICATE_REQUEST: Final = 13
SERVER_HELLO_DONE: Final = 14
CERTIFICATE_VERIFY: Final = 15
CLIENT_KEY_EXCHANGE: Final = 16
FINISHED: Final = 20
KEY_UPDATE: Final = 24
MESSAGE_HASH: Final = 254

HANDSHAKE_TYPE_NAMES: Final[dict[int, str]] = {
    HELLO_REQUEST: "hello_request",
    CLIENT_HELLO: "client_hello",
    SERVER_HELLO: "server_hello",
    HELLO_VERIFY_REQUEST: "hello_verify_request",
    NEW_SESSION_TICKET: "new_session_ticket",
    END_OF_EARLY_DATA: "end_of_early_data",
    6: "hello_retry_request",
    ENCRYPTED_EXTENSIONS: "encrypted_extensions",
    9: "request_connection_id",
    10: "new_connection_id",
    CERTIFICATE: "certificate",
    SERVER_KEY_EXCHANGE: "server_key_exchange",
    CERTIFICATE_REQUEST: "certificate_request",
    SERVER_HELLO_DONE: "server_hello_done",
    CERTIFICATE_VERIFY: "certificate_verify",
    CLIENT_KEY_EXCHANGE: "client_key_exchange",
    17: "client_certificate_request",
    FINISHED: "finished",
    21: "certificate_url",
    22: "certificate_status",
    23: "supplemental_data",
    KEY_UPDATE: "key_update",
    25: "compressed_certificate",
    26: "ekt_key",
    67: "next_protocol",
    MESSAGE_HASH: "message_hash",
}

# Alert descriptions (RFC 8446 6, RFC 5246 7.2, RFC 7301, RFC 8701, ECH RFC 9849). Codes reserved by
# TLS 1.3 (21, 30, 41, 60) are kept: old stacks still send them.
ALERT_NAMES: Final[dict[int, str]] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
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
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    117: "general_error",
    120: "no_application_protocol",
    121: "ech_required",
}

# Alert levels (RFC 5246 7.2): TLS 1.3 sends every alert but close_notify and user_canceled as fatal.
ALERT_WARNING: Final = 1
ALERT_FATAL: Final = 2
ALERT_LEVEL_NAMES: Final[dict[int, str]] = {ALERT_WARNING: "warning", ALERT_FATAL: "fatal"}

# Fatal alerts that mean "your certificate (or its absence) was refused" (see PROTOCOL.md).
CERTIFICATE_REJECTION_ALERTS: Final = frozenset({40, 42, 43, 44, 45, 46, 48, 49, 51, 116})

# Extension types we decode, plus the ones common enough on the wire to be worth a name.
SERVER_NAME: Final = 0
STATUS_REQUEST: Final = 5
SUPPORTED_GROUPS: Final = 10
EC_POINT_FORMATS: Final = 11
SIGNATURE_ALGORITHMS: Final = 13
ALPN: Final = 16
PADDING: Final = 21
PRE_SHARED_KEY: Final = 41
EARLY_DATA: Final = 42
SUPPORTED_VERSIONS: Final = 43
COOKIE: Final = 44
PSK_KEY_EXCHANGE_MODES: Final = 45
CERTIFICATE_AUTHORITIES: Final = 47
POST_HANDSHAKE_AUTH: Final = 49
KEY_SHARE: Final = 51
TLS_FLAGS: Final = 62
TLS_FLAGS_EXPERIMENTAL: Final = 0xFE01
ENCRYPTED_CLIENT_HELLO: Final = 0xFE0D
RENEGOTIATION_INFO: Final = 0xFF01

EXTENSION_NAMES: Final[dict[int, str]] = {
    SERVER_NAME: "server_name",
    1: "max_fragment_length",
    2: "client_certificate_url",
    3: "trusted_ca_keys",
    4: "truncated_hmac",
    STATUS_REQUEST: "status_request",
    6: "user_mapping",
    7: "client_authz",
    8: "server_authz",
    9: "cert_type",
    SUPPORTED_GROUPS: "supported_groups",
    EC_POINT_FORMATS: "ec_point_formats",
    12: "srp",
    SIGNATURE_ALGORITHMS: "signature_algorithms",
    14: "use_srtp",
    15: "heartbeat",
    ALPN: "application_layer_protocol_negotiation",
    17: "status_request_v2",
    18: "signed_certificate_timestamp",
    19: "client_certificate_type",
    20: "server_certificate_type",
    PADDING: "padding",
    22: "encrypt_then_mac",
    23: "extended_master_secret",
    24: "token_binding",
    25: "cached_info",
    26: "tls_lts",
    27: "compress_certificate",
    28: "record_size_limit",
    29: "pwd_protect",
    30: "pwd_clear",
    31: "password_salt",
    32: "ticket_pinning",
    33: "tls_cert_with_extern_psk",
    34: "delegated_credential",
    35: "session_ticket",
    36: "TLMSP",
    37: "TLMSP_proxying",
    38: "TLMSP_delegate",
    39: "supported_ekt_ciphers",
    PRE_SHARED_KEY: "pre_shared_key",
    EARLY_DATA: "early_data",
    SUPPORTED_VERSIONS: "supported_versions",
    COOKIE: "cookie",
    PSK_KEY_EXCHANGE_MODES: "psk_key_exchange_modes",
    CERTIFICATE_AUTHORITIES: "certificate_authorities",
    48: "oid_filters",
    POST_HANDSHAKE_AUTH: "post_handshake_auth",
    50: "signature_algorithms_cert",
    KEY_SHARE: "key_share",
    52: "transparency_info",
    53: "connection_id_deprecated",
    54: "connection_id",
    55: "external_id_hash",
    56: "external_session_id",
    57: "quic_transport_parameters",
    58: "ticket_request",
    59: "dnssec_chain",
    60: "sequence_number_encryption_algorithms",
    61: "rrc",
    TLS_FLAGS: "tls_flags",
    0x3374: "next_protocol_negotiation",
    0x4469: "application_settings_old",
    0x44CD: "application_settings",
    0x7550: "channel_id",
    0xFD00: "ech_outer_extensions",
    TLS_FLAGS_EXPERIMENTAL: "tls_flags_experimental",
    ENCRYPTED_CLIENT_HELLO: "encrypted_client_hello",
    0xFFA5: "quic_transport_parameters_draft",
    0xFFCE: "encrypted_server_name",
    RENEGOTIATION_INFO: "renegotiation_info",
}

GROUP_NAMES: Final[dict[int, str]] = {
    1: "sect163k1",
    2: "sect163r1",
    3: "sect163r2",
    4: "sect193r1",
    5: "sect193r2",
    6: "sect233k1",
    7: "sect233r1",
    8: "sect239k1",
    9: "sect283k1",
    10: "sect283r1",
    11: "sect409k1",
    12: "sect409r1",
    13: "sect571k1",
    14: "sect571r1",
    15: "secp160k1",
    16: "secp160r1",
    17: "secp160r2",
    18: "secp192k1",
    19: "secp192r1",
    20: "secp224k1",
    21: "secp224r1",
    22: "secp256k1",
    23: "secp256r1",
    24: "secp384r1",
    25: "secp521r1",
    26: "brainpoolP256r1",
    27: "brainpoolP384r1",
    28: "brainpoolP512r1",
    29: "x25519",
    30: "x448",
    31: "brainpoolP256r1tls13",
    32: "brainpoolP384r1tls13",
    33: "brainpoolP512r1tls13",
    256: "ffdhe2048",
    257: "ffdhe3072",
    258: "ffdhe4096",
    259: "ffdhe6144",
    260: "ffdhe8192",
    512: "MLKEM512",
    513: "MLKEM768",
    514: "MLKEM1024",
    0x11EB: "SecP256r1MLKEM768",
    0x11EC: "X25519MLKEM768",
    0x11ED: "SecP384r1MLKEM1024",
    0x6399: "X25519Kyber768Draft00",
    0x639A: "SecP256r1Kyber768Draft00",
    0xFF01: "arbitrary_explicit_prime_curves",
    0xFF02: "arbitrary_explicit_char2_curves",
}

CIPHER_SUITE_NAMES: Final[dict[int, str]] = {
    0x0000: "TLS_NULL_WITH_NULL_NULL",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

# DTLS versions count down: 1.0 is 0xFEFF (there is no DTLS 1.1), 1.2 0xFEFD, 1.3 0xFEFC (RFC 9147 5.3).
DTLS_1_0: Final = 0xFEFF
DTLS_1_2: Final = 0xFEFD
DTLS_1_3: Final = 0xFEFC
DTLS_VERSIONS: Final = frozenset({DTLS_1_0, DTLS_1_2, DTLS_1_3})
# OpenSSL's DTLS before 0.9.8f (DTLS1_BAD_VER); Cisco AnyConnect and OpenConnect still speak it.
DTLS_BAD_VER: Final = 0x0100


def is_dtls_version(version: int) -> bool:
    return version in DTLS_VERSIONS


# RFC 8701 reserves these single-byte psk_key_exchange_modes values for GREASE.
GREASE_PSK_MODES: Final = frozenset({0x0B, 0x2A, 0x49, 0x68, 0x87, 0xA6, 0xC5, 0xE4})


def is_grease(value: int) -> bool:
    """A 16-bit GREASE value (RFC 8701): 0x?A?A with both bytes equal."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def is_grease_psk_mode(value: int) -> bool:
    return value in GREASE_PSK_MODES


_FINAL_VERSIONS: Final[dict[int, tuple[str, str]]] = {
    0x0002: ("2.0", "ssl"),
    0x0300: ("3.0", "ssl"),
    0x0301: ("1.0", "tls"),
    0x0302: ("1.1", "tls"),
    0x0303: ("1.2", "tls"),
    0x0304: ("1.3", "tls"),
    0xFEFF: ("1.0", "dtls"),
    0xFEFD: ("1.2", "dtls"),
    0xFEFC: ("1.3", "dtls"),
}


# DTLS versions count down from 0xFEFF; the TLS version each one is built on (RFC 6347, RFC 9147).
_TLS_OF_DTLS: Final[dict[int, int]] = {0xFEFF: 0x0302, 0xFEFD: TLS12, 0xFEFC: TLS13}


def tls_equivalent(version: int) -> int:
    """The TLS version a wire version behaves as: DTLS 1.2 (0xFEFD) is TLS 1.2, anything else itself."""
    return _TLS_OF_DTLS.get(version, version)


def is_tls13_draft(version: int) -> bool:
    """IETF drafts are 0x7fNN (draft NN); Facebook's fizz deployed drafts as 0xfbNN."""
    return version >> 8 in (0x7F, 0xFB)


def version_text(version: int) -> tuple[str, str]:
    """ECS ``(tls.version, tls.version_protocol)`` for a wire version, e.g. 0x0303 -> ("1.2", "tls").

    Drafts keep their number ("1.3-draft-28", "1.3-fb-draft-26") because a sensor seeing them is
    looking at pre-2018 software; anything else is the hex codepoint with protocol "unknown".
    """
    known = _FINAL_VERSIONS.get(version)
    if known is not None:
        return known
    if version >> 8 == 0x7F:
        return (f"1.3-draft-{version & 0xFF}", "tls")
    if version >> 8 == 0xFB:
        return (f"1.3-fb-draft-{version & 0xFF}", "tls")
    return (f"0x{version:04x}", "unknown")
