"""ClientHello / ServerHello parsing: RFC 8448 bytes, public captures cross-checked with tshark, and
hand-built malformations that must become anomalies rather than exceptions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import ja3, ja3_string
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import (
    HELLO_RETRY_REQUEST_RANDOM,
    ClientHello,
    EchOffer,
    Extension,
    ServerHello,
    opaque_items,
    parse_client_hello,
    parse_server_hello,
    parse_sslv2_client_hello,
    uint16_vector,
)
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import PCAPS, tshark_fields
from tests.parsers import rfc8448
from tests.parsers.corpus_streams import frame_payload, plaintext_handshake, tcp_streams

CH_BODY = rfc8448.CLIENT_HELLO[4:]
SH_BODY = rfc8448.SERVER_HELLO[4:]
# RFC 8448's hello up to (not including) its extensions block: version, random, empty session id,
# three suites, null compression.
CH_PREFIX = CH_BODY[: 2 + 32 + 1 + 2 + 6 + 2]
SH_PREFIX = SH_BODY[: 2 + 32 + 1 + 2 + 1]
FLAG_80 = bytes([11]) + bytes(10) + b"\x01"  # PROTOCOL.md: flag 80 is bit 0 of the 11th byte
Hello = ClientHello | ServerHello


def ext(ext_type: int, data: bytes = b"") -> bytes:
    return ext_type.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def client_hello(*extensions: bytes, trailing: bytes = b"") -> bytes:
    block = b"".join(extensions)
    return CH_PREFIX + len(block).to_bytes(2, "big") + block + trailing


def server_hello(*extensions: bytes, random: bytes = rfc8448.SERVER_RANDOM) -> bytes:
    block = b"".join(extensions)
    return SH_PREFIX[:2] + random + SH_PREFIX[34:] + len(block).to_bytes(2, "big") + block


def u16s(*values: int) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def vec16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


# --- RFC 8448 -------------------------------------------------------------------------------------


def test_rfc8448_client_hello() -> None:
    hello = parse_client_hello(CH_BODY)
    assert hello.legacy_version == 0x0303
    assert hello.random == rfc8448.CLIENT_RANDOM
    assert hello.session_id == b""
    assert hello.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert hello.compression_methods == (0,)
    assert hello.extension_types == (0, 0xFF01, 10, 35, 51, 43, 13, 45, 28)
    assert hello.extensions[1] == Extension(0xFF01, b"\x00")
    assert hello.server_name == b"server"
    assert hello.alpn == ()
    assert hello.supported_versions == (0x0304,)
    assert hello.supported_groups == (29, 23, 24, 25, 256, 257, 258, 259, 260)
    assert hello.key_share_groups == (29,)
    assert hello.signature_algorithms == (
        0x0403,
        0x0503,
        0x0603,
        0x0203,
        0x0804,
        0x0805,
        0x0806,
        0x0401,
        0x0501,
        0x0601,
        0x0201,
        0x0402,
        0x0502,
        0x0602,
        0x0202,
    )
    assert hello.ec_point_formats == ()
    assert hello.psk_key_exchange_modes == (1,)
    assert not hello.has_pre_shared_key and not hello.post_handshake_auth
    assert hello.ech is None and hello.padding_length is None and hello.tls_flags is None
    assert hello.anomalies == ()
    assert hello.max_version == 0x0304
    assert not hello.request_mtls and not hello.sslv2


def test_rfc8448_server_hello() -> None:
    hello = parse_server_hello(SH_BODY)
    assert hello.legacy_version == 0x0303
    assert hello.random == rfc8448.SERVER_RANDOM
    assert hello.cipher_suite == 0x1301
    assert hello.compression_method == 0
    assert hello.extension_types == (51, 43)
    assert hello.selected_version == 0x0304 and hello.version == 0x0304
    assert hello.key_share_group == 29
    assert not hello.has_pre_shared_key and not hello.is_hello_retry_request
    assert hello.tls_flags is None and hello.anomalies == ()


# --- truncation and structure ---------------------------------------------------------------------


@pytest.mark.parametrize(("body", "parse"), [(CH_BODY, parse_client_hello), (SH_BODY, parse_server_hello)])
def test_truncation_at_every_offset_raises_only_parse_error(body: bytes, parse: Callable[[bytes], Hello]) -> None:
    no_extensions_end = len(CH_PREFIX) if parse is parse_client_hello else len(SH_PREFIX)
    for cut in range(len(body)):
        if cut == no_extensions_end:
            # Ending right after compression is a legal hello without extensions.
            assert parse(body[:cut]).extensions == ()
            continue
        with pytest.raises(ParseError):
            parse(body[:cut])


def test_hello_without_extensions_block() -> None:
    hello = parse_client_hello(CH_PREFIX)
    assert hello.extensions == () and hello.anomalies == () and hello.max_version == 0x0303


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:34] + b"\x21" + b[35:],  # session id length points past the suites
        lambda b: b[:35] + b"\x00\x05" + b[37:],  # odd cipher suite length
        lambda b: b[:-4] + b"\x00\x00" + b[-2:],  # last extension shorter than its data
        lambda b: b[:45] + b"\x00\x90" + b[47:],  # extensions block length one short
    ],
)
def test_inconsistent_outer_structure_raises(damage: Callable[[bytes], bytes]) -> None:
    with pytest.raises(ParseError):
        parse_client_hello(damage(CH_BODY))


def test_bytes_after_extensions_are_an_anomaly() -> None:
    hello = parse_client_hello(CH_BODY + b"\x00")
    assert hello.anomalies == ("trailing_data",)
    assert hello.server_name == b"server"


def test_oversized_session_id_is_an_anomaly() -> None:
    body = CH_BODY[:34] + b"\x21" + bytes(33) + CH_BODY[35:]
    assert parse_client_hello(body).anomalies == ("session_id_too_long",)


# --- extension anomalies --------------------------------------------------------------------------


def test_malformed_known_extension_is_kept_raw_and_reported() -> None:
    bad_groups = ext(10, b"\x00\x03\x00\x1d\x00")  # odd-length named_group_list
    hello = parse_client_hello(
        client_hello(ext(0, vec16(b"\x00" + vec16(b"a.example"))), bad_groups, ext(16, vec16(b"\x02h2")))
    )
    assert hello.anomalies == ("malformed_extension:10",)
    assert hello.extensions[1] == Extension(10, b"\x00\x03\x00\x1d\x00")
    assert hello.supported_groups == ()
    assert hello.server_name == b"a.example" and hello.alpn == (b"h2",)


@pytest.mark.parametrize(
    ("extension", "code"),
    [
        (ext(0, b""), 0),  # empty server_name
        (ext(0, vec16(b"\x00" + vec16(b"x")) + b"\x00"), 0),  # bytes after the list
        (ext(16, vec16(b"\x05h2")), 16),  # protocol name longer than the list
        (ext(43, b"\x03\x03\x04\x03"), 43),  # odd supported_versions
        (ext(51, vec16(u16s(29) + vec16(b"k")) + b"\x01"), 51),  # a byte after client_shares
        (ext(49, b"\x00"), 49),  # post_handshake_auth must be empty
        (ext(45, b"\x02\x01"), 45),  # psk modes shorter than announced
        (ext(41, vec16(vec16(b"id") + bytes(4))), 41),  # identities without binders
        (ext(0xFE0D, b"\x00" + u16s(1, 1) + b"\x07" + vec16(b"e") + vec16(b"")), 0xFE0D),  # empty payload
        (ext(0xFE0D, b"\x02"), 0xFE0D),  # unknown ECHClientHelloType
    ],
)
def test_each_malformed_extension_has_its_code(extension: bytes, code: int) -> None:
    hello = parse_client_hello(client_hello(extension))
    assert hello.anomalies == (f"malformed_extension:{code}",)
    assert hello.extension_types == (code,)


@given(
    st.sampled_from([(0, 1), (0, 2), (1, 2), (2, 2)]),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=6),
    st.data(),
)
def test_vector_decoders_read_what_was_written_and_nothing_cut_or_added(
    sizes: tuple[int, int], items: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    prefix, length_size = sizes
    items = [(number % (1 << 8 * prefix), item[: (1 << 8 * length_size) - 1]) for number, item in items]
    block = b"".join(
        number.to_bytes(prefix, "big") + len(item).to_bytes(length_size, "big") + item for number, item in items
    )
    assert opaque_items(vec16(block), prefix, length_size) == items
    cut = data.draw(st.integers(0, len(block) + 1))
    with pytest.raises(ParseError):
        opaque_items(vec16(block)[:cut], prefix, length_size)
    with pytest.raises(ParseError):
        opaque_items(vec16(block) + b"\x00", prefix, length_size)


@given(st.lists(st.integers(0, 0xFFFF), max_size=40), st.sampled_from([1, 2]), st.data())
def test_uint16_vector_reads_what_was_written_and_nothing_cut_or_added(
    values: list[int], length_size: int, data: st.DataObject
) -> None:
    encoded = (2 * len(values)).to_bytes(length_size, "big") + u16s(*values)
    assert uint16_vector(encoded, length_size) == tuple(values)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for damaged in (encoded[:cut], encoded + b"\x00", encoded + b"\x00\x00"):
        with pytest.raises(ParseError):
            uint16_vector(damaged, length_size)


def test_configuration_extensions_read_the_same_on_every_hello() -> None:
    # Decoded once per distinct body and shared after: a malformed body is reported on every hello that
    # carries it, and a body too long to keep is decoded each time to the same values.
    bad_groups = ext(10, b"\x00\x03\x00\x1d\x00")
    long_alpn = ext(16, vec16(b"".join(b"\x02h%d" % (index % 10) for index in range(300))))
    first, second = (parse_client_hello(client_hello(bad_groups, long_alpn)) for _ in range(2))
    assert first.anomalies == second.anomalies == ("malformed_extension:10",)
    assert len(first.alpn) == 300 and first.alpn == second.alpn


def test_presence_flags_survive_malformation() -> None:
    hello = parse_client_hello(client_hello(ext(49, b"\x00"), ext(41, b"")))
    assert hello.post_handshake_auth and hello.has_pre_shared_key
    assert hello.anomalies == ("malformed_extension:49", "malformed_extension:41")


def test_duplicate_extension_keeps_the_first() -> None:
    hello = parse_client_hello(client_hello(ext(16, vec16(b"\x02h2")), ext(16, vec16(b"\x08http/1.1"))))
    assert hello.alpn == (b"h2",)
    assert hello.anomalies == ("duplicate_extension:16",)


def test_pre_shared_key_must_be_last() -> None:
    psk = ext(41, vec16(vec16(b"ticket") + bytes(4)) + vec16(b"\x20" + bytes(32)))
    last = parse_client_hello(client_hello(ext(45, b"\x01\x01"), psk))
    assert last.has_pre_shared_key and last.anomalies == ()
    not_last = parse_client_hello(client_hello(psk, ext(45, b"\x01\x01")))
    assert not_last.has_pre_shared_key and not_last.anomalies == ("pre_shared_key_not_last",)


def test_padding_length() -> None:
    assert parse_client_hello(client_hello(ext(21, bytes(200)))).padding_length == 200
    assert parse_client_hello(client_hello(ext(21))).padding_length == 0


# --- tls_flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codepoint", [62, 0xFE01])
def test_request_mtls_flag_on_either_codepoint(codepoint: int) -> None:
    hello = parse_client_hello(client_hello(ext(43, b"\x02\x03\x04"), ext(codepoint, FLAG_80)))
    assert hello.tls_flags == TlsFlags(codepoint, (80,), ())
    assert hello.request_mtls and hello.anomalies == ()


def test_both_codepoints_keep_the_first_and_say_so() -> None:
    hello = parse_client_hello(client_hello(ext(0xFE01, FLAG_80), ext(62, b"\x02\x00\x01")))
    assert hello.tls_flags == TlsFlags(0xFE01, (80,), ())
    assert hello.anomalies == ("tls_flags_both_codepoints",)


@pytest.mark.parametrize(
    ("data", "flags", "codes"),
    [
        (b"\x02\x01\x00", (0,), ("tls_flags_malformed:nonminimal",)),
        (b"\x00", (), ("tls_flags_malformed:empty",)),
        (b"", (), ("tls_flags_malformed:empty",)),
        (b"\x01\x01\x00", (0,), ("tls_flags_malformed:trailing_data",)),
        (b"\x05\x01", (0,), ("tls_flags_malformed:length_mismatch",)),
    ],
)
def test_malformed_tls_flags_are_anomalies(data: bytes, flags: tuple[int, ...], codes: tuple[str, ...]) -> None:
    hello = parse_client_hello(client_hello(ext(62, data)))
    assert hello.tls_flags is not None and hello.tls_flags.flags == flags
    assert hello.anomalies == codes
    assert not hello.request_mtls


@pytest.mark.parametrize(
    ("fixture", "codepoint"),
    [
        ("tls13-flag62-honored.pcap", 62),
        ("tls13-flag62-required-missing.pcap", 62),
        ("tls13-flagfe01-ignored.pcap", 0xFE01),
    ],
)
def test_project_fixture_hellos_carry_the_flag(fixture: str, codepoint: int) -> None:
    # Recorded on the wire by pcaps/make_fixtures.py with a scapy TLS 1.3 client.
    [stream] = tcp_streams(PCAPS / fixture)
    [hello_message] = [m for m in plaintext_handshake(stream.client) if m.msg_type == 1]
    hello = parse_client_hello(hello_message.body)
    assert hello.tls_flags == TlsFlags(codepoint, (80,), ())
    assert hello.request_mtls and hello.anomalies == ()
    assert hello.server_name == b"server.helloscope.test"


# --- ECH, GREASE, versions ------------------------------------------------------------------------


def test_ech_outer_and_inner() -> None:
    outer = ext(0xFE0D, b"\x00" + u16s(0x0001, 0x0003) + b"\x2a" + vec16(bytes(32)) + vec16(bytes(144)))
    assert parse_client_hello(client_hello(outer)).ech == EchOffer(0, 1, 3, 0x2A, 32, 144)
    assert parse_client_hello(client_hello(ext(0xFE0D, b"\x01"))).ech == EchOffer(1, None, None, None, None, None)


def test_grease_is_kept_on_the_wire_and_ignored_for_max_version() -> None:
    body = (
        CH_PREFIX[:35]
        + vec16(u16s(0x3A3A, 0x1301))
        + b"\x01\x00"
        + vec16(ext(0xDADA) + ext(43, b"\x06" + u16s(0x7A7A, 0x0304, 0x0303)) + ext(0x2A2A, b"\x00"))
    )
    hello = parse_client_hello(body)
    assert hello.cipher_suites == (0x3A3A, 0x1301)
    assert hello.extension_types == (0xDADA, 43, 0x2A2A)
    assert [e.grease for e in hello.extensions] == [True, False, True]
    assert hello.supported_versions == (0x7A7A, 0x0304, 0x0303)
    assert hello.max_version == 0x0304


def test_final_tls13_outranks_drafts() -> None:
    hello = parse_client_hello(client_hello(ext(43, b"\x06" + u16s(0x7F1C, 0x0304, 0x0303))))
    assert hello.max_version == 0x0304
    draft_only = parse_client_hello(client_hello(ext(43, b"\x04" + u16s(0x7F1C, 0x0303))))
    assert draft_only.max_version == 0x7F1C


# --- ServerHello and HelloRetryRequest ------------------------------------------------------------


def test_hello_retry_request() -> None:
    body = server_hello(
        ext(43, u16s(0x0304)), ext(51, u16s(23)), ext(44, vec16(b"cookie")), random=HELLO_RETRY_REQUEST_RANDOM
    )
    retry = parse_server_hello(body)
    assert retry.is_hello_retry_request
    assert retry.key_share_group == 23 and retry.selected_version == 0x0304
    assert retry.anomalies == ()
    # The same key_share in a real ServerHello lacks its key_exchange: malformed there.
    normal = parse_server_hello(server_hello(ext(51, u16s(23))))
    assert not normal.is_hello_retry_request
    assert normal.key_share_group is None and normal.anomalies == ("malformed_extension:51",)


def test_server_hello_psk_and_flags() -> None:
    hello = parse_server_hello(server_hello(ext(41, u16s(0)), ext(43, u16s(0x0304)), ext(62, FLAG_80)))
    assert hello.has_pre_shared_key
    assert hello.tls_flags == TlsFlags(62, (80,), ())
    assert parse_server_hello(server_hello(ext(41, b"\x00"))).anomalies == ("malformed_extension:41",)


def test_tls12_server_hello_without_extensions() -> None:
    hello = parse_server_hello(SH_PREFIX)
    assert hello.version == 0x0303 and hello.selected_version is None and hello.extensions == ()


# --- SSLv2 ----------------------------------------------------------------------------------------


def sslv2_hello(version: int, specs: bytes, session_id: bytes, challenge: bytes) -> bytes:
    body = b"\x01" + u16s(version, len(specs), len(session_id), len(challenge)) + specs + session_id + challenge
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def test_sslv2_compatible_hello() -> None:
    specs = bytes.fromhex("010080 00002f 000035 0000ff")
    hello = parse_sslv2_client_hello(sslv2_hello(0x0301, specs, b"", bytes(range(16))))
    assert hello.sslv2 and hello.legacy_version == 0x0301
    assert hello.cipher_suites == (0x002F, 0x0035, 0x00FF)
    assert hello.random == bytes(16) + bytes(range(16))
    assert hello.extensions == () and hello.anomalies == ()


def test_sslv2_structure_errors() -> None:
    good = sslv2_hello(0x0002, bytes.fromhex("010080"), b"", bytes(16))
    for cut in range(len(good)):
        with pytest.raises(ParseError):
            parse_sslv2_client_hello(good[:cut])
    with pytest.raises(ParseError):
        parse_sslv2_client_hello(b"\x00" + good[1:])  # 3-byte header form
    with pytest.raises(ParseError):
        parse_sslv2_client_hello(good[:2] + b"\x04" + good[3:])  # SERVER-HELLO, not CLIENT-HELLO
    with pytest.raises(ParseError):
        parse_sslv2_client_hello(sslv2_hello(0x0002, bytes.fromhex("0100"), b"", bytes(16)))
    assert parse_sslv2_client_hello(good + b"\x16").anomalies == ("trailing_data",)


def test_real_sslv2_hello(corpus: Path) -> None:
    capture = corpus / "FlowTest/pcap/ssl-v2.pcap"
    record = frame_payload(capture, 4)
    hello = parse_sslv2_client_hello(record)
    [[specs, ja3_hash]] = tshark_fields(capture, "frame.number==4", ["tls.handshake.cipherspec", "tls.handshake.ja3"])
    assert hello.legacy_version == 0x0002 and hello.sslv2 and hello.anomalies == ()
    # Eight SSLv2-only kinds (first byte non-zero): no TLS suite survives.
    assert len(specs.split(",")) == 8 and hello.cipher_suites == ()
    assert hello.random == bytes(16) + record[-16:]  # 16-byte challenge, right-aligned
    assert ja3_hash == "" and ja3(hello) is None  # tshark computes no JA3 for SSLv2 hellos


def test_real_sslv2_compatible_hello(corpus: Path) -> None:
    capture = corpus / "wireshark-notes/all/dump.pcapng"
    hello = parse_sslv2_client_hello(frame_payload(capture, 964))
    [[specs, ja3_hash]] = tshark_fields(capture, "frame.number==964", ["tls.handshake.cipherspec", "tls.handshake.ja3"])
    assert specs == "0x000004,0x010080,0x0000ff"
    assert hello.legacy_version == 0x0303
    assert hello.cipher_suites == (0x0004, 0x00FF)
    assert ja3_hash == "" and ja3_string(hello) is None


# --- public captures against tshark ---------------------------------------------------------------

CROSS_CHECKED = [
    "mercury/unit_tests/pcaps/geneve.pcap",
    "ja4/pcap/tls-handshake.pcapng",
    "nDPI/tests/cfgs/default/pcap/tls_ech.pcapng",
    "nDPI/tests/cfgs/default/pcap/tls_with_huge_ch.pcapng",
    "mercury/unit_tests/pcaps/quic_reordered_frames.pcap",
    "mercury/unit_tests/pcaps/secp384r1mlkem1024_clienthello.pcap",
    "FlowTest/pcap/tls13_0rtt.pcap",
    "wireshark-notes/tls/xmpp-ssl.pcapng",
    "nDPI/tests/cfgs/default/pcap/chrome.pcap",
]
TSHARK_HELLO_FIELDS = [
    "tls.handshake.extensions_server_name",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_supported_group",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3",
]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v, 0) for v in text.split(",") if v)


@pytest.mark.parametrize("name", CROSS_CHECKED)
def test_client_hellos_match_tshark(corpus: Path, name: str) -> None:
    capture = corpus / name
    expected = Counter(
        (sni, _ints(suites), _ints(exts), _ints(groups), alpn, ja3_full, ja3_hash)
        for sni, suites, exts, groups, alpn, ja3_full, ja3_hash in (
            row + [""] * (len(TSHARK_HELLO_FIELDS) - len(row))
            for row in tshark_fields(capture, "tcp && tls.handshake.type == 1", TSHARK_HELLO_FIELDS)
        )
    )
    found: Counter[tuple[object, ...]] = Counter()
    for stream in tcp_streams(capture):
        for message in plaintext_handshake(stream.client):
            if message.msg_type != 1:
                continue
            hello = parse_client_hello(message.body)
            found[
                (
                    (hello.server_name or b"").decode(),
                    hello.cipher_suites,
                    hello.extension_types,
                    hello.supported_groups,
                    ",".join(p.decode() for p in hello.alpn),
                    ja3_string(hello),
                    ja3(hello),
                )
            ] += 1
    assert found == expected
    assert sum(found.values()) >= 1
