"""ClientHello, ServerHello and HelloRetryRequest (RFC 8446 4.1.2-4.1.4, RFC 5246 7.4.1), with the
extensions a sensor reports on decoded and every other extension kept raw.

The outer structure must be well formed or the message is rejected with :class:`ParseError`. Inside
the extensions block the parser is forgiving on purpose: a malformed, duplicated or misplaced
extension is recorded as a stable anomaly code and the rest of the hello is still reported, because
odd hellos are exactly what a sensor should describe rather than drop. Strings (SNI, ALPN) stay raw
bytes; escaping them for display is the event builder's job.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from helloscope.parsers.buffer import Reader
from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import TLS_FLAGS_CODEPOINTS, TlsFlags, decode_tls_flags
from helloscope.parsers.registry import (
    ALPN,
    EC_POINT_FORMATS,
    ENCRYPTED_CLIENT_HELLO,
    KEY_SHARE,
    PADDING,
    POST_HANDSHAKE_AUTH,
    PRE_SHARED_KEY,
    PSK_KEY_EXCHANGE_MODES,
    SERVER_NAME,
    SIGNATURE_ALGORITHMS,
    SUPPORTED_GROUPS,
    SUPPORTED_VERSIONS,
    is_dtls_version,
    is_grease,
    is_tls13_draft,
)

# RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST_RANDOM: Final = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MAX_SESSION_ID = 32
HOST_NAME = 0  # NameType host_name (RFC 6066 3)
ECH_OUTER = 0
ECH_INNER = 1

# A decoder reads one extension's whole data; it raises ParseError when the data is not well formed.
# Its message is never shown (the anomaly code says which extension), so decoders work on the bytes
# directly: a ClientHello has a dozen of them and a sensor parses one per connection.
Decoder = Callable[[bytes], Any]
# Extension type -> (field it fills, or None when only its well-formedness is checked; decoder).
DecoderTable = Mapping[int, tuple[str | None, Decoder]]


@dataclass(frozen=True, slots=True)
class Extension:
    type: int
    data: bytes

    @property
    def grease(self) -> bool:
        return is_grease(self.type)


@dataclass(frozen=True, slots=True)
class EchOffer:
    """The encrypted_client_hello extension of a ClientHello (ECH, RFC 9849 5)."""

    ech_type: int  # 0 outer, 1 inner
    kdf_id: int | None
    aead_id: int | None
    config_id: int | None
    enc_length: int | None
    payload_length: int | None


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[Extension, ...]
    server_name: bytes | None
    alpn: tuple[bytes, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    psk_key_exchange_modes: tuple[int, ...]
    has_pre_shared_key: bool
    post_handshake_auth: bool
    ech: EchOffer | None
    padding_length: int | None
    tls_flags: TlsFlags | None
    anomalies: tuple[str, ...]
    sslv2: bool = False
    # DTLS only (RFC 6347 4.2.1): the HelloVerifyRequest cookie echoed back, empty in a first hello.
    cookie: bytes | None = None

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(ext.type for ext in self.extensions)

    @property
    def max_version(self) -> int:
        """The highest version offered: supported_versions when present, else legacy_version."""
        offered = [v for v in self.supported_versions if not is_grease(v)]
        return max(offered, key=_version_rank) if offered else self.legacy_version

    @property
    def request_mtls(self) -> bool:
        return self.tls_flags is not None and self.tls_flags.request_mtls


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...]
    selected_version: int | None
    key_share_group: int | None
    has_pre_shared_key: bool
    is_hello_retry_request: bool
    tls_flags: TlsFlags | None
    anomalies: tuple[str, ...]

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions (TLS 1.3) overrides legacy_version."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(ext.type for ext in self.extensions)


def _version_rank(version: int) -> tuple[int, int]:
    # Draft codepoints (0x7f1c, 0xfb1a) are numerically above 0x0304 but older than TLS 1.3 final.
    if is_tls13_draft(version):
        return (0x0304, 0)
    # DTLS counts down (0xFEFC is 1.3, 0xFEFD 1.2), so the newest is the numerically lowest.
    if is_dtls_version(version):
        return (0x10000 - version, 2)
    return (version, 1)


# --- extension blocks, shared with certs.py and tickets.py ---------------------------------------


def pull_extensions(reader: Reader) -> tuple[Extension, ...]:
    """``Extension extensions<0..2^16-1>``, kept raw and in wire order."""
    data = reader.pull_opaque(2, "extensions")
    base = reader.position - len(data)  # errors name offsets in the reader's buffer, as its own reads do
    extensions = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 2 > end:
            raise ParseError(f"truncated extension type: need 2 bytes, have {end - pos}", base + pos)
        ext_type = data[pos] << 8 | data[pos + 1]
        start = pos + 4
        if start > end:
            have = end - pos - 2
            raise ParseError(f"truncated extension {ext_type} length: need 2 bytes, have {have}", base + pos + 2)
        stop = start + (data[pos + 2] << 8 | data[pos + 3])
        if stop > end:
            need, have = stop - start, end - start
            raise ParseError(f"truncated extension {ext_type}: need {need} bytes, have {have}", base + start)
        extensions.append(Extension(ext_type, data[start:stop]))
        pos = stop
    return tuple(extensions)


def decode_extensions(extensions: Iterable[Extension], decoders: DecoderTable) -> tuple[dict[str, Any], list[str]]:
    """Decode the known extensions of one block into ``{field: value}`` plus anomaly codes.

    The first occurrence of a type wins, as it would for a peer that stops at the first match.
    Both tls_flags codepoints fill the same field: the first one present is kept.
    """
    values: dict[str, Any] = {}
    anomalies: list[str] = []
    seen: set[int] = set()
    for ext in extensions:
        ext_type = ext.type
        if ext_type in seen:
            anomalies.append(f"duplicate_extension:{ext_type}")
            continue
        seen.add(ext_type)
        entry = decoders.get(ext_type)
        if entry is None:
            continue
        field, decoder = entry
        if field is not None and field in values:
            # Only tls_flags has two codepoints for one field.
            anomalies.append(f"{field}_both_codepoints")
            continue
        try:
            value = decoder(ext.data)
        except ParseError:
            anomalies.append(f"malformed_extension:{ext_type}")
            continue
        if field is not None:
            values[field] = value
        if isinstance(value, TlsFlags):
            anomalies.extend(f"tls_flags_malformed:{m}" for m in value.malformations)
    return values, anomalies


def _tls_flags_decoder(codepoint: int) -> Decoder:
    # decode_tls_flags classifies bad encodings itself, so it gets every byte and never fails here.
    return lambda data: decode_tls_flags(codepoint, data)


TLS_FLAGS_DECODERS: Final[DecoderTable] = {
    codepoint: ("tls_flags", _tls_flags_decoder(codepoint)) for codepoint in sorted(TLS_FLAGS_CODEPOINTS)
}


def selected_alpn(extensions: Iterable[Extension]) -> bytes | None:
    """The protocol a server selected (ServerHello in TLS <= 1.2, EncryptedExtensions in 1.3).

    Its ProtocolNameList holds exactly one name; a malformed one gives None (the caller reports the
    connection either way, and an unreadable choice is no choice it can name).
    """
    for extension in extensions:
        if extension.type == ALPN:
            reader = Reader(extension.data)
            try:
                with reader.pull_block(2, "alpn") as names:
                    return names.pull_opaque(1, "protocol name")
            except ParseError:
                return None
    return None


def pull_signature_algorithms(reader: Reader) -> tuple[int, ...]:
    return reader.pull_list_uint16(2, "signature_algorithms")


# --- extension data: vectors that fill an extension's data exactly --------------------------------


def _vector_end(data: bytes, start: int, length_size: int, limit: int) -> int:
    """Where the length-prefixed vector at ``start`` ends; it must end by ``limit``."""
    body = start + length_size
    end = body + int.from_bytes(data[start:body], "big")
    if end > limit:
        raise ParseError("vector overruns its block", start)
    return end


def _whole_vector(data: bytes, length_size: int) -> None:
    if _vector_end(data, 0, length_size, len(data)) != len(data):
        raise ParseError("bytes after the vector", 0)


def opaque_items(data: bytes, prefix: int, length_size: int) -> list[tuple[int, bytes]]:
    """The items of a ``<0..2^16-1>`` vector that is the whole of ``data``: each a ``prefix``-byte number
    (0 for none) and an opaque vector with a ``length_size``-byte length."""
    _whole_vector(data, 2)
    items = []
    pos, end = 2, len(data)
    while pos < end:
        start = pos + prefix
        stop = _vector_end(data, start, length_size, end)
        items.append((int.from_bytes(data[pos:start], "big"), data[start + length_size : stop]))
        pos = stop
    return items


def uint16_vector(data: bytes, length_size: int = 2) -> tuple[int, ...]:
    """A vector of uint16 values (groups, signature schemes, versions) that is the whole of ``data``."""
    n = len(data) - length_size
    if n < 0 or n % 2 or int.from_bytes(data[:length_size], "big") != n:
        raise ParseError("malformed uint16 vector", 0)
    return struct.unpack_from(f">{n >> 1}H", data, length_size)


def _supported_versions(data: bytes) -> tuple[int, ...]:
    return uint16_vector(data, 1)


def _uint8_vector(data: bytes) -> tuple[int, ...]:
    if not data or data[0] != len(data) - 1:
        raise ParseError("malformed uint8 vector", 0)
    return tuple(data[1:])


def _uint16(data: bytes) -> int:
    if len(data) != 2:
        raise ParseError("malformed uint16", 0)
    return data[0] << 8 | data[1]


def _server_name(data: bytes) -> bytes | None:
    return next((name for name_type, name in opaque_items(data, 1, 2) if name_type == HOST_NAME), None)


def _alpn(data: bytes) -> tuple[bytes, ...]:
    return tuple(name for _, name in opaque_items(data, 0, 1))


def _client_shares(data: bytes) -> tuple[int, ...]:
    return tuple(group for group, _ in opaque_items(data, 2, 2))


def _server_share(data: bytes) -> int:
    if len(data) < 4 or _vector_end(data, 2, 2, len(data)) != len(data):
        raise ParseError("malformed key_share entry", 0)
    return data[0] << 8 | data[1]


def _offered_psks(data: bytes) -> None:
    identities = _vector_end(data, 0, 2, len(data))
    pos = 2
    while pos < identities:  # PskIdentity: identity<1..2^16-1>, uint32 obfuscated_ticket_age
        pos = _vector_end(data, pos, 2, identities) + 4
        if pos > identities:
            raise ParseError("truncated obfuscated_ticket_age", pos)
    binders = _vector_end(data, identities, 2, len(data))
    pos = identities + 2
    while pos < binders:
        pos = _vector_end(data, pos, 1, binders)
    if binders != len(data):
        raise ParseError("bytes after the binders", binders)


def _empty(data: bytes) -> None:
    """Extensions whose presence is the message (post_handshake_auth): data must be empty."""
    if data:
        raise ParseError("data in an empty extension", 0)


def _ech(data: bytes) -> EchOffer:
    if data[:1] == bytes((ECH_INNER,)) and len(data) == 1:
        return EchOffer(ECH_INNER, None, None, None, None, None)
    if data[:1] != bytes((ECH_OUTER,)) or len(data) < 6:
        raise ParseError("not an outer ECHClientHello", 0)
    enc_end = _vector_end(data, 6, 2, len(data))
    payload_end = _vector_end(data, enc_end, 2, len(data))
    payload_length = payload_end - enc_end - 2
    if payload_end != len(data) or not payload_length:
        raise ParseError("malformed ECH payload", enc_end)
    kdf_id, aead_id = data[1] << 8 | data[2], data[3] << 8 | data[4]
    return EchOffer(ECH_OUTER, kdf_id, aead_id, data[5], enc_end - 8, payload_length)


def _padding_length(data: bytes) -> int:
    return len(data)


_CLIENT_DECODERS: Final[DecoderTable] = {
    SERVER_NAME: ("server_name", _server_name),
    SUPPORTED_GROUPS: ("supported_groups", uint16_vector),
    EC_POINT_FORMATS: ("ec_point_formats", _uint8_vector),
    SIGNATURE_ALGORITHMS: ("signature_algorithms", uint16_vector),
    ALPN: ("alpn", _alpn),
    PADDING: ("padding_length", _padding_length),
    PRE_SHARED_KEY: (None, _offered_psks),
    SUPPORTED_VERSIONS: ("supported_versions", _supported_versions),
    PSK_KEY_EXCHANGE_MODES: ("psk_key_exchange_modes", _uint8_vector),
    POST_HANDSHAKE_AUTH: (None, _empty),
    KEY_SHARE: ("key_share_groups", _client_shares),
    ENCRYPTED_CLIENT_HELLO: ("ech", _ech),
    **TLS_FLAGS_DECODERS,
}

_SERVER_DECODERS: Final[DecoderTable] = {
    SUPPORTED_VERSIONS: ("selected_version", _uint16),
    KEY_SHARE: ("key_share_group", _server_share),
    PRE_SHARED_KEY: (None, _uint16),  # selected_identity
    **TLS_FLAGS_DECODERS,
}

# A HelloRetryRequest's key_share names the group the server wants, with no key (RFC 8446 4.2.8).
_RETRY_DECODERS: Final[DecoderTable] = {**_SERVER_DECODERS, KEY_SHARE: ("key_share_group", _uint16)}


# --- messages -------------------------------------------------------------------------------------


def _framing_anomalies(session_id: bytes, reader: Reader) -> list[str]:
    """What both hellos can get wrong outside their extensions: an oversized session id, trailing bytes."""
    anomalies: list[str] = []
    if len(session_id) > MAX_SESSION_ID:
        anomalies.append("session_id_too_long")
    if not reader.eof():
        anomalies.append("trailing_data")
    return anomalies


def _unique(codes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(codes))


def _pull_optional_extensions(reader: Reader) -> tuple[Extension, ...]:
    # Hellos from before RFC 3546 end after compression; an absent block is not an empty one.
    return pull_extensions(reader) if not reader.eof() else ()


def parse_client_hello(body: bytes, *, dtls: bool = False) -> ClientHello:
    """A ClientHello handshake body (without the 4-byte TLS or 12-byte DTLS handshake header).

    ``dtls`` reads the ``cookie<0..2^8-1>`` that DTLS puts after the session id (RFC 6347 4.2.1);
    everything else is the same structure.
    """
    reader = Reader(body)
    legacy_version = reader.pull_uint16("legacy_version")
    random = reader.pull_bytes(32, "random")
    session_id = reader.pull_opaque(1, "legacy_session_id")
    cookie = reader.pull_opaque(1, "cookie") if dtls else None
    cipher_suites = reader.pull_list_uint16(2, "cipher_suites")
    compression_methods = tuple(reader.pull_opaque(1, "legacy_compression_methods"))
    extensions = _pull_optional_extensions(reader)

    anomalies = _framing_anomalies(session_id, reader)
    values, extension_anomalies = decode_extensions(extensions, _CLIENT_DECODERS)
    anomalies += extension_anomalies
    types = [ext.type for ext in extensions]
    # RFC 8446 4.2.11: the binders cover everything before them, so pre_shared_key must be last.
    if PRE_SHARED_KEY in types and types[-1] != PRE_SHARED_KEY:
        anomalies.append("pre_shared_key_not_last")

    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression_methods,
        extensions=extensions,
        server_name=values.get("server_name"),
        alpn=values.get("alpn", ()),
        supported_versions=values.get("supported_versions", ()),
        supported_groups=values.get("supported_groups", ()),
        key_share_groups=values.get("key_share_groups", ()),
        signature_algorithms=values.get("signature_algorithms", ()),
        ec_point_formats=values.get("ec_point_formats", ()),
        psk_key_exchange_modes=values.get("psk_key_exchange_modes", ()),
        has_pre_shared_key=PRE_SHARED_KEY in types,
        post_handshake_auth=POST_HANDSHAKE_AUTH in types,
        ech=values.get("ech"),
        padding_length=values.get("padding_length"),
        tls_flags=values.get("tls_flags"),
        anomalies=_unique(anomalies),
        cookie=cookie,
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """A ServerHello or HelloRetryRequest handshake body (without the 4-byte handshake header)."""
    reader = Reader(body)
    legacy_version = reader.pull_uint16("legacy_version")
    random = reader.pull_bytes(32, "random")
    session_id = reader.pull_opaque(1, "legacy_session_id_echo")
    cipher_suite = reader.pull_uint16("cipher_suite")
    compression_method = reader.pull_uint8("legacy_compression_method")
    extensions = _pull_optional_extensions(reader)

    anomalies = _framing_anomalies(session_id, reader)
    is_retry = random == HELLO_RETRY_REQUEST_RANDOM
    values, extension_anomalies = decode_extensions(extensions, _RETRY_DECODERS if is_retry else _SERVER_DECODERS)
    anomalies += extension_anomalies

    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        compression_method=compression_method,
        extensions=extensions,
        selected_version=values.get("selected_version"),
        key_share_group=values.get("key_share_group"),
        has_pre_shared_key=any(ext.type == PRE_SHARED_KEY for ext in extensions),
        is_hello_retry_request=is_retry,
        tls_flags=values.get("tls_flags"),
        anomalies=_unique(anomalies),
    )


def _pull_sslv2_cipher_spec(reader: Reader) -> int | None:
    kind = reader.pull_uint8("cipher spec")
    suite = reader.pull_uint16("cipher spec")
    # SSLv2-only kinds (first byte non-zero) have no TLS equivalent.
    return suite if kind == 0 else None


def parse_sslv2_client_hello(record: bytes) -> ClientHello:
    """An SSLv2 (or SSLv2-compatible, RFC 5246 E.2) CLIENT-HELLO, from its 2-byte record header on.

    The challenge becomes the random right-aligned in 32 bytes, as a TLS server reading it does.
    """
    reader = Reader(record)
    header = reader.pull_uint16("SSLv2 record header")
    if not header & 0x8000:
        raise ParseError("SSLv2 record with a 3-byte header cannot hold a CLIENT-HELLO", 0)
    length = header & 0x7FFF
    if reader.remaining < length:
        raise ParseError(f"truncated SSLv2 record: need {length} bytes, have {reader.remaining}", 2)
    anomalies = ["trailing_data"] if reader.remaining > length else []
    reader = Reader(record, 2, 2 + length)
    msg_type = reader.pull_uint8("SSLv2 msg_type")
    if msg_type != 1:
        raise ParseError(f"SSLv2 message type {msg_type} is not CLIENT-HELLO", 2)
    version = reader.pull_uint16("SSLv2 version")
    specs_length = reader.pull_uint16("cipher_spec_length")
    session_id_length = reader.pull_uint16("session_id_length")
    challenge_length = reader.pull_uint16("challenge_length")
    if specs_length % 3:
        raise ParseError(f"cipher_spec_length {specs_length} is not a multiple of 3", 5)
    specs = Reader(reader.pull_bytes(specs_length, "cipher_specs"))
    suites = [_pull_sslv2_cipher_spec(specs) for _ in range(specs_length // 3)]
    session_id = reader.pull_bytes(session_id_length, "session_id")
    challenge = reader.pull_bytes(challenge_length, "challenge")
    if not reader.eof():
        anomalies.append("trailing_data")
    return ClientHello(
        legacy_version=version,
        random=challenge.rjust(32, b"\0"),
        session_id=session_id,
        cipher_suites=tuple(suite for suite in suites if suite is not None),
        compression_methods=(),
        extensions=(),
        server_name=None,
        alpn=(),
        supported_versions=(),
        supported_groups=(),
        key_share_groups=(),
        signature_algorithms=(),
        ec_point_formats=(),
        psk_key_exchange_modes=(),
        has_pre_shared_key=False,
        post_handshake_auth=False,
        ech=None,
        padding_length=None,
        tls_flags=None,
        anomalies=_unique(anomalies),
        sslv2=True,
    )
