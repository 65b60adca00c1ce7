"""helloscope.parsers.quic against RFC 9001 / RFC 9369 Appendix A, hand-built malformed input, and fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from helloscope.parsers.buffer import Reader
from helloscope.parsers.decrypt import DecryptError
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_client_hello, parse_server_hello
from helloscope.parsers.quic import (
    ACK_ECN,
    CLIENT_IN,
    CRYPTO,
    HANDSHAKE,
    INITIAL,
    ONE_RTT,
    PADDING,
    PING,
    QUIC_V1,
    QUIC_V2,
    RETRY,
    SERVER_IN,
    VERSION_NEGOTIATION,
    ConnectionClose,
    CryptoStream,
    decode_packet_number,
    initial_keys,
    initial_secret,
    packet_keys,
    parse_datagram,
    parse_frames,
    parse_transport_parameters,
    pull_varint,
    short_header,
    unprotect,
)
from helloscope.parsers.records import HandshakeReader
from hypothesis import given
from hypothesis import strategies as st

from tests.parsers import quic_vectors as rfc


def test_v1_initial_secrets_and_keys_match_rfc9001_a1() -> None:
    assert initial_secret(QUIC_V1, rfc.DCID, CLIENT_IN) == rfc.V1_CLIENT_INITIAL_SECRET
    assert initial_secret(QUIC_V1, rfc.DCID, SERVER_IN) == rfc.V1_SERVER_INITIAL_SECRET
    client = initial_keys(QUIC_V1, rfc.DCID, CLIENT_IN)
    assert (client.key, client.iv, client.hp) == (rfc.V1_CLIENT_KEY, rfc.V1_CLIENT_IV, rfc.V1_CLIENT_HP)
    server = initial_keys(QUIC_V1, rfc.DCID, SERVER_IN)
    assert (server.key, server.iv, server.hp) == (rfc.V1_SERVER_KEY, rfc.V1_SERVER_IV, rfc.V1_SERVER_HP)
    assert "redacted" in repr(client) and rfc.V1_CLIENT_KEY.hex() not in repr(client)


@pytest.mark.parametrize(("datagram", "version"), [(rfc.V1_CLIENT_INITIAL, QUIC_V1), (rfc.V2_CLIENT_INITIAL, QUIC_V2)])
def test_client_initial_opens_to_the_rfc_payload(datagram: bytes, version: int) -> None:
    (header,) = parse_datagram(datagram)
    assert (header.packet_type, header.version, header.dcid, header.scid, header.token) == (
        INITIAL,
        version,
        rfc.DCID,
        b"",
        b"",
    )
    assert header.end == len(datagram) == 1200
    packet = unprotect(datagram, header, initial_keys(version, rfc.DCID, CLIENT_IN))
    assert packet.packet_number == rfc.CLIENT_PACKET_NUMBER
    assert len(packet.payload) == rfc.CLIENT_PAYLOAD_LENGTH
    assert packet.payload == rfc.CLIENT_CRYPTO_FRAME + bytes(rfc.CLIENT_PAYLOAD_LENGTH - len(rfc.CLIENT_CRYPTO_FRAME))
    frames = parse_frames(packet.payload)
    assert frames.close is None and frames.types == {CRYPTO, PADDING}
    (crypto,) = frames.crypto
    assert crypto.offset == 0
    (message,) = HandshakeReader().feed(crypto.data)
    hello = parse_client_hello(message.body)
    assert hello.server_name == b"example.com"
    assert hello.cipher_suites == (0x1301, 0x1302)
    assert hello.alpn == (b"alpn",)
    (extension,) = [ext for ext in hello.extensions if ext.type == 0x39]
    parameters = {parameter.name: parameter.value for parameter in parse_transport_parameters(extension.data)}
    assert parameters == {
        "initial_max_data": (1 << 62) - 1,
        "initial_max_stream_data_bidi_local": 0xFFFF,
        "initial_max_stream_data_uni": 0xFFFF,
        "initial_max_streams_bidi": 16,
        "max_idle_timeout": 30000,
        "initial_max_streams_uni": 16,
        "initial_source_connection_id": rfc.DCID,
        "initial_max_stream_data_bidi_remote": 0xFFFF,
    }


@pytest.mark.parametrize(("datagram", "version"), [(rfc.V1_SERVER_INITIAL, QUIC_V1), (rfc.V2_SERVER_INITIAL, QUIC_V2)])
def test_server_initial_opens_with_server_keys(datagram: bytes, version: int) -> None:
    (header,) = parse_datagram(datagram)
    assert (header.packet_type, header.dcid, header.scid) == (INITIAL, b"", rfc.SERVER_SCID)
    packet = unprotect(datagram, header, initial_keys(version, rfc.DCID, SERVER_IN))
    assert packet.packet_number == 1
    assert packet.payload == rfc.SERVER_PAYLOAD
    (crypto,) = parse_frames(packet.payload).crypto  # the leading ACK frame is skipped
    (message,) = HandshakeReader().feed(crypto.data)
    assert parse_server_hello(message.body).cipher_suite == 0x1301


@pytest.mark.parametrize(
    ("version", "key", "iv", "hp", "packet"),
    [
        (QUIC_V1, rfc.V1_CHACHA_KEY, rfc.V1_CHACHA_IV, rfc.V1_CHACHA_HP, rfc.V1_CHACHA_PACKET),
        (QUIC_V2, rfc.V2_CHACHA_KEY, rfc.V2_CHACHA_IV, rfc.V2_CHACHA_HP, rfc.V2_CHACHA_PACKET),
    ],
)
def test_chacha20_short_header_packet(version: int, key: bytes, iv: bytes, hp: bytes, packet: bytes) -> None:
    keys = packet_keys(version, rfc.CHACHA_SECRET, 0x1303)
    assert (keys.key, keys.iv, keys.hp) == (key, iv, hp)
    header = short_header(packet, 0, version, b"")
    assert header is not None and header.packet_type == ONE_RTT
    opened = unprotect(packet, header, keys, largest=rfc.CHACHA_PACKET_NUMBER - 1)
    assert (opened.packet_number, opened.payload) == (rfc.CHACHA_PACKET_NUMBER, b"\x01")
    with pytest.raises(DecryptError):
        unprotect(packet, header, keys)  # the nonce needs the full packet number
    assert parse_frames(opened.payload, application=True).types == {PING}
    assert short_header(packet, 0, version, b"\x01") is None  # addressed to another connection ID
    with pytest.raises(ParseError):
        packet_keys(version, rfc.CHACHA_SECRET, 0x1305)  # CCM_8 cannot protect QUIC packets
    with pytest.raises(ParseError):
        packet_keys(version, rfc.CHACHA_SECRET, 0x1302)  # a SHA-384 suite needs a 48-byte secret


@pytest.mark.parametrize(("suite", "secret"), [(0x1301, bytes(32)), (0x1302, bytes(48)), (0x1303, rfc.CHACHA_SECRET)])
def test_header_mask_from_reused_keys_matches_a_fresh_cipher_for_every_sample(suite: int, secret: bytes) -> None:
    keys = packet_keys(QUIC_V1, secret, suite)
    samples = [bytes([i]) * 16 for i in range(64)] + [bytes(range(i, i + 16)) for i in range(0, 240, 7)]
    for sample in [*samples, *reversed(samples)]:  # the same sample again, later, must give the same mask
        if suite == 0x1303:
            fresh = Cipher(algorithms.ChaCha20(keys.hp, sample), None).encryptor().update(bytes(5))
        else:
            fresh = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor().update(sample)
        assert keys.header_mask(sample)[:5] == fresh[:5]
    with pytest.raises(ParseError):
        keys.header_mask(bytes(15))  # would leave a partial block in a reused ECB encryptor
    assert keys.header_mask(samples[1])[:5] == keys.header_mask(samples[1])[:5]
    assert "redacted" in repr(keys) and keys.hp.hex() not in repr(keys)


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("c2197c5eff14e88c", 151288809941952652),  # RFC 9000 A.1's examples
        ("9d7f3e7d", 494878333),
        ("7bbd", 15293),
        ("25", 37),
        ("4025", 37),
        ("00", 0),
        ("3f", 63),
        ("4000", 0),
        ("ffffffffffffffff", (1 << 62) - 1),
    ],
)
def test_varints_rfc9000_a1(encoded: str, value: int) -> None:
    reader = Reader(bytes.fromhex(encoded) + b"\xaa")
    assert pull_varint(reader) == value
    assert reader.position == len(encoded) // 2  # the next byte is left for the next field
    if len(encoded) > 2:
        with pytest.raises(ParseError, match=f"truncated x: need {len(encoded) // 2 - 1} bytes, have 0"):
            pull_varint(Reader(bytes.fromhex(encoded)[:1]), "x")


def test_packet_number_decoding_rfc9000_a3() -> None:
    assert decode_packet_number(0x9B32, 16, 0xA82F30EA) == 0xA82F9B32  # RFC 9000 A.3's example
    assert decode_packet_number(0xBFF4, 24, 654360563) == 654360564
    assert decode_packet_number(2, 8, -1) == 2
    assert decode_packet_number(0x01, 8, 0xFF) == 0x101


def test_application_frames_are_skipped_in_1rtt_only() -> None:
    payload = (
        b"\x1e"  # HANDSHAKE_DONE
        + b"\x0f\x00\x05\x02hi"  # STREAM with offset, length and FIN
        + b"\x18\x01\x00\x04abcd"
        + bytes(16)  # NEW_CONNECTION_ID
        + b"\x07\x02tk"  # NEW_TOKEN
        + b"\x1a"
        + bytes(8)  # PATH_CHALLENGE
        + b"\x1d\x00\x00"  # application CONNECTION_CLOSE, no error
        + b"\x08\x04rest of the packet"  # STREAM without length runs to the end
    )
    frames = parse_frames(payload, application=True)
    assert frames.types == {0x1E, 0x0F, 0x18, 0x07, 0x1A, 0x1D, 0x08}
    assert frames.close == ConnectionClose(0, None, b"", True)
    with pytest.raises(ParseError):
        parse_frames(payload)
    with pytest.raises(ParseError):
        parse_frames(b"\x21", application=True)  # unknown: nothing after it could be framed


def test_wrong_keys_or_version_fail_authentication() -> None:
    (header,) = parse_datagram(rfc.V1_CLIENT_INITIAL)
    with pytest.raises(DecryptError):
        unprotect(rfc.V1_CLIENT_INITIAL, header, initial_keys(QUIC_V1, rfc.DCID, SERVER_IN))
    with pytest.raises(DecryptError):
        unprotect(rfc.V1_CLIENT_INITIAL, header, initial_keys(QUIC_V2, rfc.DCID, CLIENT_IN))
    tampered = bytearray(rfc.V1_CLIENT_INITIAL)
    tampered[600] ^= 1
    with pytest.raises(DecryptError):
        unprotect(bytes(tampered), header, initial_keys(QUIC_V1, rfc.DCID, CLIENT_IN))


@pytest.mark.parametrize(("datagram", "version"), [(rfc.V1_RETRY, QUIC_V1), (rfc.V2_RETRY, QUIC_V2)])
def test_retry_is_recognised_with_its_new_connection_id(datagram: bytes, version: int) -> None:
    (header,) = parse_datagram(datagram)
    assert (header.packet_type, header.version, header.scid, header.token) == (
        RETRY,
        version,
        rfc.SERVER_SCID,
        b"token",
    )


def test_coalesced_packets_and_trailing_padding() -> None:
    # The server's Initial and a (protected, here fake) Handshake packet in one datagram, then zeros.
    handshake = bytes([0xE0]) + QUIC_V1.to_bytes(4, "big") + b"\x00\x08" + rfc.SERVER_SCID + b"\x14" + bytes(20)
    headers = parse_datagram(rfc.V1_SERVER_INITIAL + handshake + bytes(30))
    assert [header.packet_type for header in headers] == [INITIAL, HANDSHAKE]
    assert headers[1].start == len(rfc.V1_SERVER_INITIAL)
    assert headers[1].end == len(rfc.V1_SERVER_INITIAL) + len(handshake)
    # The Initial still opens in place: offsets are relative to the datagram.
    datagram = rfc.V1_SERVER_INITIAL + handshake
    assert unprotect(datagram, headers[0], initial_keys(QUIC_V1, rfc.DCID, SERVER_IN)).payload == rfc.SERVER_PAYLOAD


def test_version_negotiation_and_unknown_versions_are_skipped_whole() -> None:
    negotiation = b"\x80" + bytes(4) + b"\x00\x04abcd" + QUIC_V1.to_bytes(4, "big") + QUIC_V2.to_bytes(4, "big")
    (header,) = parse_datagram(negotiation)
    assert header.packet_type == VERSION_NEGOTIATION and header.end == len(negotiation)
    (draft,) = parse_datagram(b"\xc0\xff\x00\x00\x1d\x00\x00" + bytes(40))
    assert draft.packet_type is None and draft.version == 0xFF00001D
    assert parse_datagram(b"\x40" + bytes(30)) == ()  # a short header


def test_frames_ack_with_ranges_and_ecn_then_close() -> None:
    payload = (
        b"\x01"  # PING
        + b"\x02\x0a\x00\x01\x02\x01\x01"  # ACK largest 10, delay 0, 1 extra range
        + b"\x03\x05\x00\x00\x01\x01\x02\x40\x03"  # ACK_ECN with its three counts (one a 2-byte varint)
        + b"\x06\x05\x03abc"  # CRYPTO offset 5
        + b"\x1c\x41\x2a\x06\x04oops"  # CONNECTION_CLOSE 0x012a (bad_certificate) from a CRYPTO frame
        + bytes(5)
    )
    frames = parse_frames(payload)
    assert PING in frames.types and ACK_ECN in frames.types
    assert [(frame.offset, frame.data) for frame in frames.crypto] == [(5, b"abc")]
    assert frames.close == ConnectionClose(0x012A, 0x06, b"oops", False)
    assert frames.close.tls_alert == 42
    application = parse_frames(b"\x1d\x41\x2a\x00").close
    assert application is not None and application.application and application.tls_alert is None
    with pytest.raises(ParseError):
        parse_frames(b"\x08\x00")  # STREAM is not allowed in an Initial packet
    with pytest.raises(ParseError):
        parse_frames(b"\x03\x05\x00\x00\x01\x01\x02")  # ACK_ECN missing its counts


def test_crypto_stream_reorders_deduplicates_and_bounds() -> None:
    stream = CryptoStream(max_bytes=20)
    assert stream.add(5, b"fghij") == b""
    assert stream.add(5, b"fghij") == b""
    assert stream.add(0, b"abc") == b"abc"
    assert stream.add(2, b"cde") == b"defghij"  # overlaps both sides
    assert stream.add(0, b"abcdefghij") == b""
    assert stream.duplicates == 2
    assert stream.add(10, bytes(15)) == bytes(10)
    assert stream.capped and stream.delivered == 20 and stream.pending_bytes == 0


def test_transport_parameters_reject_bad_integers() -> None:
    (grease,) = parse_transport_parameters(b"\x1b\x01\x00")
    assert grease.name == "GREASE"
    with pytest.raises(ParseError):
        parse_transport_parameters(b"\x01\x02\x05\x00")  # max_idle_timeout with a trailing byte
    with pytest.raises(ParseError):
        parse_transport_parameters(b"\x0f\x09abc")


@given(st.binary(max_size=300))
def test_garbage_only_raises_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        for header in parse_datagram(data):
            with contextlib.suppress(ParseError):
                unprotect(data, header, initial_keys(QUIC_V1, header.dcid, CLIENT_IN))
    with contextlib.suppress(ParseError):
        parse_frames(data)
    with contextlib.suppress(ParseError):
        parse_transport_parameters(data)


@given(st.integers(min_value=1, max_value=1199))
def test_truncated_initial_never_raises_anything_else(cut: int) -> None:
    data = rfc.V1_CLIENT_INITIAL[:cut]
    with contextlib.suppress(ParseError):
        for header in parse_datagram(data):
            unprotect(data, header, initial_keys(QUIC_V1, rfc.DCID, CLIENT_IN))
            pytest.fail("a truncated packet opened")
