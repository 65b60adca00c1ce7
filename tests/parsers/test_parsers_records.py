"""Record framing and handshake reassembly: real flights split every way a transport can split them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helloscope.parsers.errors import ParseError
from helloscope.parsers.records import HandshakeMessage, HandshakeReader, Record, RecordReader

from tests.parsers import rfc8448
from tests.parsers.corpus_streams import plaintext_handshake, tcp_streams, tls_start

ALERT_RECORD = bytes.fromhex("15 03 03 00 02 02 28")  # PROTOCOL.md: OpenSSL's handshake_failure
CCS_RECORD = bytes.fromhex("14 03 03 00 01 01")


def _feed_in_pieces(reader: RecordReader, data: bytes, size: int) -> list[Record]:
    records: list[Record] = []
    for start in range(0, len(data), size):
        records += reader.feed(data[start : start + size])
    return records


# --- RecordReader ---------------------------------------------------------------------------------


def test_one_feed_with_several_records() -> None:
    stream = rfc8448.CLIENT_HELLO_RECORD + CCS_RECORD + ALERT_RECORD
    records = RecordReader().feed(stream)
    assert [(r.content_type, r.version, r.offset) for r in records] == [
        (22, 0x0301, 0),
        (20, 0x0303, 201),
        (21, 0x0303, 207),
    ]
    assert records[0].payload == rfc8448.CLIENT_HELLO
    assert records[1].payload == b"\x01"
    assert records[2].payload == b"\x02\x28"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 200, 201, 202])
def test_any_split_gives_the_same_records(size: int) -> None:
    stream = rfc8448.CLIENT_HELLO_RECORD + CCS_RECORD + rfc8448.SERVER_HELLO_RECORD + ALERT_RECORD
    reader = RecordReader()
    assert _feed_in_pieces(reader, stream, size) == RecordReader().feed(stream)
    assert reader.buffered == 0


def test_partial_record_is_buffered_until_complete() -> None:
    reader = RecordReader()
    assert reader.feed(ALERT_RECORD[:3]) == []
    assert reader.buffered == 3
    assert reader.feed(ALERT_RECORD[3:6]) == []
    assert reader.buffered == 6
    assert reader.feed(ALERT_RECORD[6:] + CCS_RECORD[:2]) == [Record(21, 0x0303, b"\x02\x28", 0)]
    assert reader.buffered == 2
    assert reader.feed(CCS_RECORD[2:]) == [Record(20, 0x0303, b"\x01", 7)]
    assert reader.buffered == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    reader = RecordReader()
    assert reader.feed(bytearray(ALERT_RECORD[:4])) == []
    assert reader.feed(memoryview(ALERT_RECORD)[4:]) == [Record(21, 0x0303, b"\x02\x28", 0)]


def test_empty_record_is_allowed() -> None:
    # RFC 5246 6.2.1: zero-length application data fragments may be sent (traffic analysis padding).
    assert RecordReader().feed(b"\x17\x03\x03\x00\x00") == [Record(23, 0x0303, b"", 0)]


@pytest.mark.parametrize(
    "header",
    [
        b"\x13\x03\x03\x00\x02",  # content type 19
        b"\x19\x03\x03\x00\x02",  # content type 25 is DTLS-only (tls12_cid)
        b"\x80\x2e\x01\x03\x01",  # an SSLv2 CLIENT-HELLO header
        b"GET /",
        b"\x16\x02\x00\x00\x02",  # major version 2
        b"\x16\xfe\xfd\x00\x02",  # DTLS 1.2 version
    ],
)
def test_header_that_cannot_be_tls_raises_and_poisons(header: bytes) -> None:
    reader = RecordReader()
    with pytest.raises(ParseError) as first:
        reader.feed(header + b"\x00\x00")
    assert first.value.offset == 0
    assert reader.error is not None
    with pytest.raises(ParseError):
        reader.feed(ALERT_RECORD)


def test_record_overflow() -> None:
    at_limit = b"\x17\x03\x03" + (100).to_bytes(2, "big") + bytes(100)
    assert len(RecordReader(max_fragment=100).feed(at_limit)) == 1
    with pytest.raises(ParseError, match="record_overflow"):
        RecordReader(max_fragment=99).feed(at_limit)
    default = RecordReader()
    with pytest.raises(ParseError, match="record_overflow"):
        default.feed(b"\x17\x03\x03" + (16384 + 2048 + 1).to_bytes(2, "big"))


def test_records_before_a_bad_header_are_returned_and_the_error_follows() -> None:
    reader = RecordReader()
    records = reader.feed(ALERT_RECORD + b"\x00\x00\x00\x00\x00")
    assert records == [Record(21, 0x0303, b"\x02\x28", 0)]
    assert reader.error is not None and reader.error.offset == len(ALERT_RECORD)
    with pytest.raises(ParseError) as raised:
        reader.feed(b"")
    assert raised.value.offset == len(ALERT_RECORD)


def test_bad_header_split_across_feeds_is_reported_at_its_stream_offset() -> None:
    reader = RecordReader()
    assert reader.feed(CCS_RECORD + b"\x16\x03") == [Record(20, 0x0303, b"\x01", 0)]
    with pytest.raises(ParseError) as raised:
        reader.feed(b"\x03\xff\xff")
    assert raised.value.offset == len(CCS_RECORD)


# --- HandshakeReader ------------------------------------------------------------------------------


def _message(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def test_several_messages_in_one_record() -> None:
    # A TLS 1.2 server flight tail: CertificateRequest-like body, then ServerHelloDone.
    fragment = rfc8448.SERVER_HELLO + _message(13, b"\x01\x01\x00\x00\x00\x00") + _message(14, b"")
    messages = HandshakeReader().feed(fragment)
    assert [(m.msg_type, len(m.body), m.raw_length) for m in messages] == [(2, 86, 90), (13, 6, 10), (14, 0, 4)]
    assert messages[0].body == rfc8448.SERVER_HELLO[4:]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 17, 100])
def test_message_split_across_records(size: int) -> None:
    data = rfc8448.CLIENT_HELLO + _message(14, b"")
    message_ends = {len(rfc8448.CLIENT_HELLO), len(data)}
    reader = HandshakeReader()
    messages: list[HandshakeMessage] = []
    for start in range(0, len(data), size):
        messages += reader.feed(data[start : start + size])
        assert reader.pending == (min(start + size, len(data)) not in message_ends)
    assert messages == [HandshakeMessage(1, rfc8448.CLIENT_HELLO[4:], 196), HandshakeMessage(14, b"", 4)]


def test_partial_header_is_pending() -> None:
    reader = HandshakeReader()
    assert reader.feed(b"\x0e\x00") == []
    assert reader.pending
    assert reader.feed(b"\x00\x00") == [HandshakeMessage(14, b"", 4)]
    assert not reader.pending


def test_message_over_the_limit_raises_and_poisons() -> None:
    reader = HandshakeReader(max_message=1000)
    with pytest.raises(ParseError, match="1001"):
        reader.feed(b"\x0b\x00\x03\xe9")
    with pytest.raises(ParseError):
        reader.feed(_message(14, b""))
    assert len(HandshakeReader(max_message=1000).feed(_message(11, bytes(1000)))) == 1


def test_large_message_in_small_pieces() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    data = _message(11, body)
    reader = HandshakeReader(max_message=len(body))
    messages: list[HandshakeMessage] = []
    for start in range(0, len(data), 1000):
        messages += reader.feed(data[start : start + 1000])
    assert len(messages) == 1 and messages[0].body == body


# --- real streams ---------------------------------------------------------------------------------

REAL_FLIGHTS = [
    "wireshark-notes/tls/xmpp-ssl.pcapng",  # STARTTLS, then a TLS 1.2 server flight with a CertificateRequest
    "mercury/unit_tests/pcaps/geneve.pcap",  # Geneve-encapsulated, ClientHellos over several TCP segments
    "nDPI/tests/cfgs/default/pcap/tls_with_huge_ch.pcapng",  # an 11 KB ClientHello
]


@pytest.mark.parametrize("name", REAL_FLIGHTS)
def test_real_streams_split_byte_by_byte(corpus: Path, name: str) -> None:
    checked = 0
    for stream in tcp_streams(corpus / name):
        for data in (stream.client, stream.server):
            start = tls_start(data)
            if start < 0:
                continue
            data = data[start : start + 20000]
            whole = RecordReader().feed(data)
            assert whole and whole[0].offset == 0
            reader = RecordReader()
            assert _feed_in_pieces(reader, data, 1) == whole
            assert reader.buffered == len(data) - sum(5 + len(r.payload) for r in whole)
            checked += 1
    assert checked >= 2


def test_real_server_flight_has_its_messages(corpus: Path) -> None:
    [stream] = [s for s in tcp_streams(corpus / "wireshark-notes/tls/xmpp-ssl.pcapng") if s.client]
    # ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone, NewSessionTicket
    assert [m.msg_type for m in plaintext_handshake(stream.server)] == [2, 11, 12, 13, 14, 4]
    # ClientHello, the empty client Certificate (0b 00 00 03 00 00 00), ClientKeyExchange
    client = plaintext_handshake(stream.client)
    assert [m.msg_type for m in client] == [1, 11, 16]
    assert client[1].body == b"\x00\x00\x00"


def test_real_hello_split_over_tcp_segments(corpus: Path) -> None:
    hellos = [
        m
        for s in tcp_streams(corpus / "nDPI/tests/cfgs/default/pcap/tls_with_huge_ch.pcapng")
        for m in plaintext_handshake(s.client)
        if m.msg_type == 1
    ]
    assert [len(m.body) for m in hellos] == [11414]
