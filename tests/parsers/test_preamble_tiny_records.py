"""Hellos fragmented into tiny TLS records (RFC 8446 5.1: any non-zero length) are found and parsed.

The hellos are the real ones of the fixtures (tshark reassembles each stream); only the record framing
is redone, as censorship-evasion tools do, into records of 1 to 5 bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helloscope.parsers.hello import parse_client_hello, parse_server_hello
from helloscope.parsers.preamble import (
    SIGNATURE_SPAN,
    find_client_hello,
    find_server_response,
    is_sslv2_client_hello,
    sslv2_client_hello_undecided,
)
from helloscope.parsers.records import HandshakeReader, RecordReader

from tests.parsers.corpus_streams import plaintext_handshake, plaintext_records, tcp_streams

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
FIXTURES = ("tls12-noauth", "tls13-ccm-untrusted", "large-clienthello", "tls12-required-presented")
SIZES = (1, 2, 3, 5)


def reframe(message: bytes, version: bytes, size: int) -> bytes:
    """``message`` (handshake header included) as handshake records of ``size`` bytes each."""
    out = bytearray()
    for start in range(0, len(message), size):
        piece = message[start : start + size]
        out += b"\x16" + version + len(piece).to_bytes(2, "big") + piece
    return bytes(out)


def first_message(records: bytes) -> bytes:
    """The first handshake message in a stream of records, header included, as the tracker reassembles it."""
    reader = HandshakeReader()
    for record in RecordReader().feed(records):
        messages = reader.feed(record.payload)
        if messages:
            return bytes([messages[0].msg_type]) + len(messages[0].body).to_bytes(3, "big") + messages[0].body
    raise AssertionError("no complete handshake message")


@pytest.fixture(scope="module", params=FIXTURES)
def hellos(request: pytest.FixtureRequest) -> tuple[bytes, bytes, bytes, bytes]:
    """(client record version, raw ClientHello, server record version, raw ServerHello) of a fixture."""
    stream = tcp_streams(PCAPS / f"{request.param}.pcap")[0]
    client, server = plaintext_handshake(stream.client)[0], plaintext_handshake(stream.server)[0]
    assert (client.msg_type, server.msg_type) == (1, 2)
    versions = [plaintext_records(data)[0].version.to_bytes(2, "big") for data in (stream.client, stream.server)]

    def raw(message) -> bytes:
        return bytes([message.msg_type]) + len(message.body).to_bytes(3, "big") + message.body

    return versions[0], raw(client), versions[1], raw(server)


@pytest.mark.parametrize("size", SIZES)
def test_client_hello_in_tiny_records_is_found_and_parses_as_the_original(hellos, size):
    version, hello, _, _ = hellos
    stream = reframe(hello, version, size)
    assert find_client_hello(stream) == 0
    preamble = b"STARTTLS\r\n\x16\x03"  # a false start right before the real one
    assert find_client_hello(preamble + stream) == len(preamble)
    assert first_message(stream) == hello
    assert parse_client_hello(hello[4:]) == parse_client_hello(first_message(stream)[4:])
    assert find_server_response(stream) is None


@pytest.mark.parametrize("size", SIZES)
def test_server_hello_in_tiny_records_is_found_and_parses_as_the_original(hellos, size):
    _, _, version, hello = hellos
    stream = reframe(hello, version, size)
    assert find_server_response(stream) == 0
    assert find_client_hello(stream) is None
    assert parse_server_hello(first_message(stream)[4:]) == parse_server_hello(hello[4:])


@pytest.mark.parametrize("size", SIZES)
def test_the_signature_is_found_from_any_cut_within_the_span(hellos, size):
    """A caller that scanned a shorter buffer and rescans from ``len - SIGNATURE_SPAN`` finds the hello."""
    version, hello, _, _ = hellos
    stream = b"EHLO x\r\nSTARTTLS\r\n" + reframe(hello, version, size)
    start = 18
    for cut in range(start, start + SIGNATURE_SPAN + 1):
        found = find_client_hello(stream[:cut])
        assert found in (None, start)
        if found is None:
            assert find_client_hello(stream, max(0, cut - SIGNATURE_SPAN)) == start
    # Six 1-byte records: the signature needs 35 bytes before its last one, more than the old overlap of 11.
    assert find_client_hello(stream[: start + SIGNATURE_SPAN - 1]) is None or size > 1


def test_first_record_shorter_than_a_handshake_header_with_a_bad_second_record_is_not_a_hello():
    # A 4-byte first record followed by something that is not a handshake record: no hello.
    not_handshake = b"\x17\x03\x03\x00\x02\x03\x03"
    assert find_client_hello(bytes.fromhex("1603010004") + b"\x01\x00\x01\x00" + not_handshake) is None
    assert find_client_hello(bytes.fromhex("1603010000") + bytes(20)) is None  # zero-length record


def test_an_sslv2_hello_prefix_waits_for_more_bytes(hellos):
    sslv2 = bytes.fromhex("802e0103010015000000100000040000050000")  # CLIENT-HELLO, version 3.1 (truncated)
    assert is_sslv2_client_hello(sslv2)
    for cut in range(1, 5):
        assert not is_sslv2_client_hello(sslv2[:cut])
        assert sslv2_client_hello_undecided(sslv2[:cut])
    assert not sslv2_client_hello_undecided(sslv2)  # five bytes decide
    version, hello, _, _ = hellos
    assert not any(sslv2_client_hello_undecided(reframe(hello, version, 1)[:cut]) for cut in range(1, 5))
    assert not sslv2_client_hello_undecided(b"\x80\x2e\x02")  # message type 2 is not a CLIENT-HELLO
    assert not sslv2_client_hello_undecided(b"\x80\x2e\x01\x01")  # version 1.x does not exist
