"""parsers/dtls.py against tshark on real DTLS (pcaps/dtls/ and the public corpus), against hand-built
malformed input, and a reassembly property over real handshake messages.

The fixtures' ``*.expected.json`` were written from tshark's fields by pcaps/make_dtls_fixtures.py, never
from helloscope; the record-level checks ask tshark again here.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.dtls import (
    DtlsRecord,
    HandshakeFragment,
    HandshakeReassembler,
    RecordNumber,
    iter_records,
    looks_like_dtls,
    parse_ack,
    parse_dtls_client_hello,
    parse_handshake_fragments,
    parse_hello_verify_request,
    reconstruct,
    sequence_mask_sample,
    split_records,
    unmask_sequence,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import ja3, ja3_string, ja4
from helloscope.parsers.hello import ClientHello, ServerHello, parse_server_hello
from helloscope.parsers.registry import ALERT, HANDSHAKE, is_grease
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import CORPUS, PCAPS, tshark_fields

FIXTURES = sorted((PCAPS / "dtls").glob("*.expected.json"))
# The corpus captures INDEX.md lists with DTLS handshakes (CAPWAP's DTLS sits behind a CAPWAP header in
# the UDP payload and is left to the sniffer's decapsulation).
CORPUS_DTLS = [
    "illustrated-dtls/captures/capture.pcap",
    "ja4/pcap/dtls-udp.notest.cap",
    "mercury/unit_tests/pcaps/dtls_fragmented_client_hello.pcap",
    "mercury/unit_tests/pcaps/dtls_fragmented_client_hello_partial.pcap",
    "mercury/unit_tests/pcaps/dtls_interleaved_client_hello.pcap",
    "nDPI/tests/cfgs/default/pcap/anyconnect-vpn.pcap",
    "nDPI/tests/cfgs/default/pcap/dtls.pcap",
    "nDPI/tests/cfgs/default/pcap/dtls2.pcap",
    "nDPI/tests/cfgs/default/pcap/dtls_certificate_fragments.pcap",
    "nDPI/tests/cfgs/default/pcap/dtls_session_id_and_coockie_both.pcap",
    "nDPI/tests/cfgs/default/pcap/geforcenow.pcapng",
    "nDPI/tests/cfgs/default/pcap/stun.pcap",
    "nDPI/tests/cfgs/default/pcap/stun_dtls_rtp.pcapng",
    "nDPI/tests/cfgs/default/pcap/stun_google_meet.pcapng",
    "nDPI/tests/cfgs/default/pcap/stun_zoom.pcapng",
    "wireshark-notes/captures/voip/webrtc-freeswitch.pcapng",
]
QUIC_CAPTURES = ["illustrated-quic/captures/capture.pcap", "ja4/pcap/chrome-cloudflare-quic-with-secrets.pcapng"]
CERTIFICATE, CERTIFICATE_REQUEST = 11, 13

PROPERTY = settings(
    max_examples=int(os.environ.get("HELLOSCOPE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- reading captures through tshark ----------------------------------------------------------------


@dataclass(frozen=True)
class Datagram:
    frame: int
    stream: int
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


@cache
def datagrams(capture: Path) -> tuple[Datagram, ...]:
    rows = tshark_fields(
        capture,
        "udp",
        ["frame.number", "udp.stream", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport",
         "udp.payload"],
        aggregator="|",
    )  # fmt: skip
    out = []
    for frame, stream, src4, src6, sport, dst4, dst6, dport, payload in rows:
        # Tunnelled packets (GRE, VXLAN) give several addresses: the innermost UDP is the last.
        source = ((src4 or src6).split("|")[-1], int(sport.split("|")[-1]))
        destination = ((dst4 or dst6).split("|")[-1], int(dport.split("|")[-1]))
        data = bytes.fromhex(payload.split("|")[-1].replace(":", ""))
        out.append(Datagram(int(frame), int(stream.split("|")[-1]), source, destination, data))
    return tuple(out)


@cache
def tshark_records(capture: Path, *extra: str) -> dict[int, list[tuple[int, int, int, int]]]:
    """Per frame that tshark reads as DTLS: (content type, epoch, sequence, length) of every record."""
    rows = tshark_fields(
        capture,
        "dtls.record",
        ["frame.number", "dtls.record.content_type", "dtls.record.epoch", "dtls.record.sequence_number",
         "dtls.record.length"],
        *extra,
        aggregator="|",
    )  # fmt: skip
    out = {}
    for frame, *columns in rows:
        values = [[int(v) for v in column.split("|") if v] for column in columns]
        out[int(frame)] = list(zip(*values, strict=True))
    return out


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (the public corpus)")
    return path


# --- what the parsers see in a capture (the sniffer's job, done minimally for the tests) ------------


@dataclass
class Seen:
    """One UDP conversation as the parsers read it: epoch-0 handshake messages and plaintext alerts."""

    client: tuple[str, int] | None = None
    client_hellos: list[tuple[int, int, ClientHello]] = field(default_factory=list)  # frame, message_seq, hello
    hello_verify_requests: int = 0
    server_hello: ServerHello | None = None
    certificate_request: bool = False
    client_certificate: str = "absent"
    plaintext_alerts: list[dict[str, int | str]] = field(default_factory=list)
    conflicting: int = 0


def observe(capture: Path, server_port: int | None = None) -> dict[int, Seen]:
    """Every DTLS conversation of a capture, keyed by tshark's udp.stream.

    Without ``server_port`` the client is the sender of the conversation's first ClientHello.
    """
    seen: dict[int, Seen] = defaultdict(Seen)
    reassemblers: dict[tuple[int, tuple[str, int]], HandshakeReassembler] = defaultdict(HandshakeReassembler)
    for datagram in datagrams(capture):
        if not looks_like_dtls(datagram.payload, unified=False):
            continue
        conversation = seen[datagram.stream]
        try:
            records = list(iter_records(datagram.payload))
        except ParseError:
            continue
        for record in records:
            if record.unified or record.epoch != 0:
                continue
            if server_port is not None:
                from_client = datagram.destination[1] == server_port
            else:
                from_client = conversation.client is None or conversation.client == datagram.source
            if record.content_type == ALERT:
                for alert in parse_alerts(record.payload):
                    sender = "client" if from_client else "server"
                    conversation.plaintext_alerts.append(
                        {"frame": datagram.frame, "sender": sender, "level": alert.level, "code": alert.description}
                    )
            if record.content_type != HANDSHAKE:
                continue
            for fragment in parse_handshake_fragments(record.payload):
                messages = reassemblers[datagram.stream, datagram.source].feed(fragment)
                for message in messages:
                    conversation.conflicting += message.conflicting
                    if message.msg_type == 1:
                        conversation.client = conversation.client or datagram.source
                        hello = parse_dtls_client_hello(message.body)
                        conversation.client_hellos.append((datagram.frame, message.message_seq, hello))
                    elif message.msg_type == 3:
                        parse_hello_verify_request(message.body)
                        conversation.hello_verify_requests += 1
                    elif message.msg_type == 2 and conversation.server_hello is None:
                        conversation.server_hello = parse_server_hello(message.body)
                    elif message.msg_type == CERTIFICATE_REQUEST and not from_client:
                        conversation.certificate_request = True
                    elif message.msg_type == CERTIFICATE and from_client:
                        empty = int.from_bytes(message.body[:3], "big") == 0
                        conversation.client_certificate = "empty" if empty else "presented"
    return {stream: conversation for stream, conversation in seen.items() if conversation.client_hellos}


def _hello_facts(hello: ClientHello) -> dict[str, object]:
    """The ClientHello fields the expected JSON records, as tshark prints them."""
    return {
        "version": f"0x{hello.legacy_version:04x}",
        "random": hello.random.hex(),
        "cookie_length": len(hello.cookie or b""),
        "server_name": hello.server_name.decode() if hello.server_name is not None else None,
        "cipher_suites": list(hello.cipher_suites),
        "extensions": list(hello.extension_types),
        "supported_versions": list(hello.supported_versions),
        "supported_groups": list(hello.supported_groups),
        "ec_point_formats": list(hello.ec_point_formats),
        "signature_algorithms": list(hello.signature_algorithms),
        "alpn": [name.decode() for name in hello.alpn],
        "ja3_full": ja3_string(hello),
        "ja3": ja3(hello),
    }


def _ja4_prefix_from_tshark(hello: dict) -> str:
    """JA4 part ``a`` computed from tshark's fields alone (FoxIO JA4.md), to check ours against."""
    versions = [v for v in hello["supported_versions"] if not is_grease(v)] or [int(hello["version"], 16)]
    version = {0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}[min(versions)]  # DTLS counts down
    ciphers = [c for c in hello["cipher_suites"] if not is_grease(c)]
    extensions = [e for e in hello["extensions"] if not is_grease(e)]
    alpn = hello["alpn"][0] if hello["alpn"] else ""
    code = alpn[0] + alpn[-1] if alpn else "00"
    sni = "d" if 0 in extensions else "i"
    return f"d{version}{sni}{len(ciphers):02d}{len(extensions):02d}{code}"


# --- the fixtures recorded from real peers ------------------------------------------------------------


@pytest.mark.parametrize("expected_path", FIXTURES, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_fixture_handshakes_match_tshark(expected_path: Path) -> None:
    expected = json.loads(expected_path.read_text())
    capture = expected_path.with_name(expected_path.name.replace(".expected.json", ".pcap"))
    seen = observe(capture, expected["server_port"])
    assert sorted(seen) == [hs["udp_stream"] for hs in expected["handshakes"]]
    for hs in expected["handshakes"]:
        ours = seen[hs["udp_stream"]]
        assert [(frame, _hello_facts(hello) | {"message_seq": seq}) for frame, seq, hello in ours.client_hellos] == [
            (hello["frame"], {k: v for k, v in hello.items() if k != "frame"}) for hello in hs["client_hellos"]
        ]
        for (_, _, hello), theirs in zip(ours.client_hellos, hs["client_hellos"], strict=True):
            assert ja4(hello, "d").split("_")[0] == _ja4_prefix_from_tshark(theirs)
        # A cookie exchange: the second hello echoes the HelloVerifyRequest's cookie, the first has none.
        assert ours.hello_verify_requests == hs["hello_verify_requests"]
        if hs["hello_verify_requests"]:
            assert [len(h.cookie or b"") > 0 for _, _, h in ours.client_hellos] == [False, True]
        assert ours.server_hello is not None
        assert f"0x{ours.server_hello.legacy_version:04x}" == hs["server_hello"]["version"]
        assert ours.server_hello.cipher_suite == hs["server_hello"]["cipher_suite"]
        assert list(ours.server_hello.extension_types) == hs["server_hello"]["extensions"]
        assert f"0x{ours.server_hello.version:04x}" == hs["negotiated_version"]
        assert ours.certificate_request == hs["certificate_request"]
        assert ours.client_certificate == hs["client_certificate"]
        assert ours.plaintext_alerts == hs["plaintext_alerts"]


@pytest.mark.parametrize("expected_path", FIXTURES, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_fixture_records_match_tshark(expected_path: Path) -> None:
    capture = expected_path.with_name(expected_path.name.replace(".expected.json", ".pcap"))
    _assert_records_match(capture)


def test_retransmitted_flight_overlaps_and_still_gives_one_of_each_message() -> None:
    """OpenSSL re-fragments a resent flight differently (tshark: "New fragment overlaps old data"), and
    in the rewrite one fragment of the first copy is missing: both give each message once, unflagged."""
    for name in ("dtls12-openssl-retransmit", "dtls12-openssl-lost-fragment"):
        capture = PCAPS / "dtls" / f"{name}.pcap"
        if not capture.exists():
            pytest.skip(f"{capture} is absent")
        (conversation,) = observe(capture, 48108).values()
        assert conversation.client_certificate == "presented"
        assert conversation.certificate_request
        assert conversation.conflicting == 0, name  # overlapping, but the bytes agree


# --- the public corpus -------------------------------------------------------------------------------


def _record_fields(payload: bytes) -> list[tuple[int | None, int, int, int]]:
    """(type, epoch, sequence, length) of the records before any malformed one, which tshark also skips."""
    out: list[tuple[int | None, int, int, int]] = []
    with contextlib.suppress(ParseError):
        out.extend((r.content_type, r.epoch, r.sequence, len(r.payload)) for r in iter_records(payload))
    return out


def _assert_records_match(capture: Path) -> None:
    theirs = tshark_records(capture)
    checked = 0
    missed: dict[int, Datagram] = {}
    for datagram in datagrams(capture):
        expected = theirs.get(datagram.frame)
        ours = looks_like_dtls(datagram.payload, unified=False)
        if expected is None:
            if ours:
                missed[datagram.frame] = datagram
            continue
        if not ours and datagram.payload[:1] and datagram.payload[0] & 0xE0 == 0x20:
            continue  # tshark 4.0 reads DTLS 1.3 unified headers as plain UDP (checked separately)
        assert ours, f"frame {datagram.frame}: tshark reads DTLS, looks_like_dtls says no"
        assert _record_fields(datagram.payload) == expected, datagram.frame
        checked += 1
    if missed:
        # tshark gives some flows to another dissector by port (a ClientHello on Zoom's 8801 in stun.pcap):
        # told to decode those ports as DTLS, it must read exactly the records we did.
        ports = sorted({d.destination[1] for d in missed.values()})
        forced = tshark_records(capture, *[arg for port in ports for arg in ("-d", f"udp.port=={port},dtls")])
        for frame, datagram in missed.items():
            got = _record_fields(datagram.payload)
            assert got == forced.get(frame), f"frame {frame}: looks_like_dtls on a datagram that is not DTLS"
    assert checked, f"{capture.name}: no DTLS record compared"


@pytest.mark.parametrize("relative", CORPUS_DTLS)
def test_corpus_records_match_tshark(relative: str) -> None:
    _assert_records_match(corpus_file(relative))


@pytest.mark.parametrize("relative", CORPUS_DTLS)
def test_corpus_client_hellos_match_tshark(relative: str) -> None:
    """Every ClientHello tshark reassembles is ours too, completed in the same frame, with the same fields."""
    capture = corpus_file(relative)
    rows = tshark_fields(
        capture,
        "dtls.handshake.type == 1 && !dtls.fragment.error",
        ["frame.number", "dtls.handshake.type", "dtls.handshake.ciphersuite", "dtls.handshake.extension.type",
         "dtls.handshake.extensions_server_name", "dtls.handshake.ja3_full", "dtls.handshake.cookie_length"],
        aggregator="|",
    )  # fmt: skip
    theirs = {}
    for frame_text, types, ciphers, extensions, sni, ja3_full, cookie_length in rows:
        if types.split("|").count("1") != 1 or not ciphers:
            continue  # two hellos in one frame (fields no longer separable), or a fragment tshark did not complete
        theirs[int(frame_text)] = (
            [int(c, 0) for c in ciphers.split("|") if c],
            [int(e) for e in extensions.split("|") if e],
            sni.split("|")[0] or None,
            ja3_full.split("|")[0],
            int(cookie_length.split("|")[0] or 0),
        )
    ours = {}
    for conversation in observe(capture).values():
        for frame, _, hello in conversation.client_hellos:
            ours[frame] = (
                list(hello.cipher_suites),
                list(hello.extension_types),
                hello.server_name.decode() if hello.server_name else None,
                ja3_string(hello),
                len(hello.cookie or b""),
            )
    # tshark prints a retransmitted hello again; we deliver each message_seq once.
    assert set(ours) <= set(theirs)
    assert {frame: theirs[frame] for frame in ours} == ours
    assert {tuple(map(str, v)) for v in theirs.values()} == {tuple(map(str, v)) for v in ours.values()}


def test_corpus_dtls13_unified_headers_tile_every_datagram() -> None:
    """illustrated-dtls: after the plaintext hellos every datagram is one or more unified-header records
    (tshark 4.0 cannot read them), with the epoch bits of the handshake (2) and application (3) epochs."""
    capture = corpus_file("illustrated-dtls/captures/capture.pcap")
    unified = []
    for datagram in datagrams(capture):
        assert looks_like_dtls(datagram.payload)
        records = split_records(datagram.payload)
        assert sum(len(r.header) + len(r.payload) for r in records) == len(datagram.payload)
        unified += [r for r in records if r.unified]
    assert len(unified) >= 9
    assert {r.epoch for r in unified} == {2, 3}
    assert all(r.sequence_bits == 16 and len(r.header) == 5 for r in unified)
    (conversation,) = observe(capture).values()
    (_, _, hello) = conversation.client_hellos[0]
    assert 0xFEFC in hello.supported_versions
    assert ja4(hello, "d").startswith("dd3")


@pytest.mark.parametrize("relative", QUIC_CAPTURES)
def test_quic_datagrams_are_not_dtls(relative: str) -> None:
    capture = corpus_file(relative)
    quic = [d for d in datagrams(capture) if 443 in (d.source[1], d.destination[1]) or d.payload[:1] >= b"\x40"]
    assert quic
    assert not [d.frame for d in quic if looks_like_dtls(d.payload)]


# --- hand-built input --------------------------------------------------------------------------------


def _record(content_type: int, payload: bytes, epoch: int = 0, sequence: int = 0, version: int = 0xFEFD) -> bytes:
    return struct.pack(">BHH", content_type, version, epoch) + sequence.to_bytes(6, "big") + struct.pack(
        ">H", len(payload)
    ) + payload  # fmt: skip


def _fragment(msg_type: int, body: bytes, seq: int, offset: int, length: int) -> bytes:
    piece = body[offset : offset + length]
    return (
        bytes([msg_type])
        + len(body).to_bytes(3, "big")
        + seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + len(piece).to_bytes(3, "big")
        + piece
    )


def _client_hello_body(cookie: bytes = b"", extra: bytes = b"") -> bytes:
    """SNI example.com and tls_flags (62) with flag 8, plus ``extra`` encoded extensions."""
    sni = b"\x00\x0e\x00\x00\x0bexample.com"
    flags = b"\x02\x00\x01"  # tls_flags data for flag 8 (PROTOCOL.md)
    extensions = b"\x00\x00" + len(sni).to_bytes(2, "big") + sni + b"\x00\x3e" + len(flags).to_bytes(2, "big") + flags
    extensions += extra
    return (
        b"\xfe\xfd"
        + bytes(range(32))
        + b"\x00"
        + bytes([len(cookie)])
        + cookie
        + b"\x00\x04\xc0\x2b\xc0\x2f"
        + b"\x01\x00"
        + len(extensions).to_bytes(2, "big")
        + extensions
    )


def _datagram() -> bytes:
    body = _client_hello_body(b"\xaa" * 20)
    return _record(22, _fragment(1, body, 1, 0, len(body)), sequence=1) + _record(21, b"\x02\x28", sequence=2)


def test_dtls_client_hello_has_cookie_and_tls_fields() -> None:
    hello = parse_dtls_client_hello(_client_hello_body(b"\xaa" * 20))
    assert hello.cookie == b"\xaa" * 20
    assert hello.server_name == b"example.com"
    assert hello.cipher_suites == (0xC02B, 0xC02F)
    assert hello.tls_flags is not None and hello.tls_flags.codepoint == 62 and 8 in hello.tls_flags.flags
    # Read as TLS, the cookie length byte would be taken for the cipher suites' length.
    with pytest.raises(ParseError):
        parse_server_hello(_client_hello_body(b"\xaa" * 20)[:3])


def test_dtls_versions_count_down_for_the_highest_offered() -> None:
    """supported_versions [DTLS 1.2, DTLS 1.3]: the highest is 0xFEFC although 0xFEFD is larger."""
    hello = parse_dtls_client_hello(_client_hello_body(extra=b"\x00\x2b\x00\x05\x04\xfe\xfd\xfe\xfc"))
    assert hello.supported_versions == (0xFEFD, 0xFEFC)
    assert hello.max_version == 0xFEFC
    assert ja4(hello, "d").startswith("dd3d0203")  # DTLS, 1.3, SNI, 2 suites, 3 extensions


def test_split_records_reads_every_header_field() -> None:
    datagram = _record(22, b"\x01" * 5, epoch=1, sequence=0x010203040506) + _record(21, b"\x02\x28", epoch=1)
    first, second = split_records(datagram)
    assert (first.content_type, first.version, first.epoch, first.sequence, first.payload) == (
        22, 0xFEFD, 1, 0x010203040506, b"\x01" * 5
    )  # fmt: skip
    assert first.header == datagram[:13] and first.offset == 0 and not first.unified
    assert (second.content_type, second.offset, second.payload) == (21, 18, b"\x02\x28")


def test_unified_header_variants() -> None:
    ciphertext = bytes(range(20))
    # 0b00101110: no CID, 16-bit sequence, length present, epoch bits 2.
    with_length = b"\x2e\x12\x34" + len(ciphertext).to_bytes(2, "big") + ciphertext
    # 0b00100011: 8-bit sequence, no length (runs to the end), epoch bits 3.
    without = b"\x23\x56" + ciphertext
    a, b = split_records(with_length + without)
    assert (a.unified, a.epoch, a.sequence, a.sequence_bits, a.header, a.payload) == (
        True, 2, 0x1234, 16, with_length[:5], ciphertext
    )  # fmt: skip
    assert (b.epoch, b.sequence, b.sequence_bits, b.payload) == (3, 0x56, 8, ciphertext)
    # A connection ID needs its negotiated length.
    with_cid = b"\x3e\xc1\xc2\x12\x34" + len(ciphertext).to_bytes(2, "big") + ciphertext
    with pytest.raises(ParseError):
        split_records(with_cid)
    (c,) = split_records(with_cid, cid_length=2)
    assert c.connection_id == b"\xc1\xc2" and c.sequence == 0x1234


def test_sequence_number_unmasking_and_reconstruction() -> None:
    ciphertext = bytes(range(20))
    (record,) = split_records(b"\x2e\x12\x34\x00\x14" + ciphertext)
    assert sequence_mask_sample(record) == ciphertext[:16]
    clear = unmask_sequence(record, b"\x10\x30" + bytes(14))
    assert clear.sequence == 0x0204 and clear.header == b"\x2e\x02\x04\x00\x14"
    assert reconstruct(0x05, 8, 0x1FE) == 0x205  # past the 8-bit wrap
    assert reconstruct(0xFE, 8, 0x201) == 0x1FE  # a late record from before it
    assert reconstruct(0x0204, 16, 0) == 0x0204
    assert reconstruct(2, 2, 1) == 2 and reconstruct(0, 2, 3) == 4
    plain = split_records(_record(22, b"x"))[0]
    with pytest.raises(ParseError):
        sequence_mask_sample(plain)


def test_hello_verify_request_and_ack() -> None:
    assert parse_hello_verify_request(b"\xfe\xff\x03abc").cookie == b"abc"
    with pytest.raises(ParseError):
        parse_hello_verify_request(b"\xfe\xff\x03abcd")
    ack = b"\x00\x20" + (2).to_bytes(8, "big") + (7).to_bytes(8, "big") + (3).to_bytes(8, "big") + bytes(8)
    assert parse_ack(ack) == (RecordNumber(2, 7), RecordNumber(3, 0))
    with pytest.raises(ParseError):
        parse_ack(ack[:-1])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (_record(22, b"\x01" * 40), True),
        (_record(23, b"\x01" * 40, version=0xFEFF), True),
        (_record(22, b"\x01" * 40, version=0x0303), False),  # TLS, not DTLS
        (_record(22, b"\x01" * 40)[:-1], False),  # length runs past the datagram
        (b"\xc3\x00\x00\x00\x01\x08" + bytes(60), False),  # QUIC v1 long header (Initial)
        (b"\x40" + bytes(40), False),  # QUIC short header
        (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), False),  # STUN binding request
        (b"\x80\x60" + bytes(30), False),  # RTP
        (b"\x2e\x00\x01\x00\x14" + bytes(20), True),  # unified header that tiles the datagram
        (b"\x2e\x00\x01\x00\x30" + bytes(20), False),  # unified header whose length does not fit
        (b"\x2a\x00\x01\x00\x04" + bytes(4), False),  # too short to hold an AEAD tag
        (b"", False),
    ],
)
def test_looks_like_dtls(payload: bytes, expected: bool) -> None:
    assert looks_like_dtls(payload) is expected


def test_unified_recognition_can_be_left_to_the_flow_table() -> None:
    assert not looks_like_dtls(b"\x2e\x00\x01\x00\x14" + bytes(20), unified=False)


def test_truncation_at_every_offset_only_raises_parse_error() -> None:
    datagram = _datagram()
    boundaries = {0, len(datagram) - 15, len(datagram)}
    for cut in range(len(datagram) + 1):
        prefix = datagram[:cut]
        if cut in boundaries:
            split_records(prefix)
            continue
        with pytest.raises(ParseError):
            split_records(prefix)
    fragment_bytes = split_records(datagram)[0].payload
    for cut in range(1, len(fragment_bytes)):
        with pytest.raises(ParseError):
            parse_handshake_fragments(fragment_bytes[:cut])
    body = _client_hello_body(b"\xaa" * 20)
    for cut in range(len(body)):
        with contextlib.suppress(ParseError):
            parse_dtls_client_hello(body[:cut])


def test_absurd_lengths_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="record_overflow"):
        split_records(_record(22, b"")[:11] + b"\xff\xff" + bytes(10))
    with pytest.raises(ParseError, match="past the message length"):
        parse_handshake_fragments(b"\x01\x00\x00\x10\x00\x00\x00\x00\x0c\x00\x00\x08" + bytes(8))
    with pytest.raises(ParseError, match="truncated"):
        parse_handshake_fragments(b"\x01\xff\xff\xff\x00\x00\x00\x00\x00\xff\xff\xff")
    with pytest.raises(ParseError, match="connection ID"):
        split_records(_record(25, b"abc"))
    with pytest.raises(ParseError, match="not DTLS"):
        split_records(_record(22, b"abc", version=0x0303))


def test_iter_records_yields_the_good_records_before_a_bad_one() -> None:
    good = _record(21, b"\x02\x28")
    seen = []
    with pytest.raises(ParseError) as caught:
        for record in iter_records(good + b"\x99garbage"):
            seen.append(record)
    assert len(seen) == 1 and caught.value.offset == len(good)


def _frag(body: bytes, seq: int, offset: int, length: int, msg_type: int = 11) -> HandshakeFragment:
    return HandshakeFragment(msg_type, len(body), seq, offset, body[offset : offset + length])


def test_reassembly_out_of_order_with_duplicates_and_overlap() -> None:
    body = bytes(range(256)) * 4
    reassembler = HandshakeReassembler(next_seq=0)
    assert reassembler.feed(_frag(body, 0, 500, 524)) == ()
    assert reassembler.feed(_frag(body, 0, 500, 524)) == ()  # exact duplicate
    assert reassembler.feed(_frag(body, 0, 100, 450)) == ()  # overlaps the first
    (message,) = reassembler.feed(_frag(body, 0, 0, 200))
    assert (message.body, message.message_seq, message.fragments, message.conflicting) == (body, 0, 4, False)
    stats = reassembler.stats
    assert (stats.duplicates, stats.conflicts, stats.buffered) == (1, 0, 0)
    assert reassembler.feed(_frag(body, 0, 0, 1024)) == ()  # a retransmission of a delivered message
    assert reassembler.stats.retransmitted == 1


def test_reassembly_starts_at_the_first_hello_seen() -> None:
    """A capture that starts after the cookie exchange: the ClientHello has message_seq 1, and the
    half of a message_seq 0 hello interleaved with it (mercury's dtls_interleaved_client_hello) is a
    retransmission, not a gap to wait for."""
    body = b"x" * 300
    reassembler = HandshakeReassembler()
    assert reassembler.next_seq is None
    assert reassembler.feed(_frag(body, 1, 0, 200, msg_type=1)) == ()
    assert reassembler.next_seq == 1
    assert reassembler.feed(_frag(body, 0, 0, 200, msg_type=1)) == ()
    (hello,) = reassembler.feed(_frag(body, 1, 200, 100, msg_type=1))
    assert (hello.message_seq, hello.body) == (1, body)
    assert reassembler.stats.retransmitted == 1
    # Server side: a Certificate fragment overtakes the ServerHello; the ServerHello still starts the sequence.
    server = HandshakeReassembler()
    assert server.feed(_frag(b"cert", 2, 0, 4)) == ()
    # A HelloVerifyRequest also opens a flight: delivered at once, the Certificate waits for message_seq 1.
    assert [m.msg_type for m in server.feed(_frag(b"hvr", 0, 0, 3, msg_type=3))] == [3]
    assert [m.message_seq for m in server.feed(_frag(b"cert", 2, 0, 4))] == []
    assert [m.msg_type for m in server.feed(_frag(b"sh", 1, 0, 2, msg_type=2))] == [2, 11]


def test_reassembly_delivers_in_message_seq_order() -> None:
    reassembler = HandshakeReassembler(next_seq=0)
    done = _frag(b"", 2, 0, 0, msg_type=14)  # ServerHelloDone: a zero-length message
    assert reassembler.feed(done) == ()
    assert reassembler.feed(_frag(b"abcd", 1, 0, 4)) == ()
    delivered = reassembler.feed(_frag(b"hello", 0, 0, 5, msg_type=2))
    assert [(m.message_seq, m.msg_type, m.body) for m in delivered] == [
        (0, 2, b"hello"),
        (1, 11, b"abcd"),
        (2, 14, b""),
    ]
    assert reassembler.next_seq == 3


def test_conflicting_overlap_keeps_the_first_bytes_and_says_so() -> None:
    reassembler = HandshakeReassembler(next_seq=0)
    reassembler.feed(HandshakeFragment(11, 8, 0, 0, b"AAAAA"))
    (message,) = reassembler.feed(HandshakeFragment(11, 8, 0, 3, b"XXBBB"))
    assert message.body == b"AAAAABBB" and message.conflicting
    assert reassembler.stats.conflicts == 1
    # Same message_seq but another type or length: the fragment is refused, not mixed in.
    reassembler = HandshakeReassembler(next_seq=0)
    reassembler.feed(HandshakeFragment(11, 8, 0, 0, b"AAAA"))
    assert reassembler.feed(HandshakeFragment(11, 9, 0, 4, b"BBBBB")) == ()
    assert reassembler.feed(HandshakeFragment(12, 8, 0, 4, b"BBBB")) == ()
    assert reassembler.stats.conflicts == 2


def test_reassembly_memory_is_bounded() -> None:
    reassembler = HandshakeReassembler(budget=1000, window=4, next_seq=0)
    # A 16 MiB announcement costs nothing: it is refused and counted.
    assert reassembler.feed(HandshakeFragment(11, (1 << 24) - 1, 0, 0, b"x")) == ()
    assert reassembler.stats.overflows == 1 and reassembler.stats.buffered == 0
    reassembler.feed(HandshakeFragment(11, 600, 1, 0, b"x"))
    assert reassembler.feed(HandshakeFragment(11, 600, 2, 0, b"x")) == ()
    assert reassembler.stats.overflows == 2 and reassembler.stats.buffered == 600
    assert reassembler.feed(HandshakeFragment(11, 1, 9, 0, b"x")) == ()  # beyond the window
    assert reassembler.stats.out_of_window == 1


def test_flush_skips_a_message_that_never_completed() -> None:
    reassembler = HandshakeReassembler(next_seq=0)
    reassembler.feed(HandshakeFragment(2, 10, 0, 0, b"abc"))  # never completes
    assert reassembler.feed(HandshakeFragment(11, 2, 1, 0, b"ok")) == ()
    (message,) = reassembler.flush()
    assert (message.message_seq, message.after_gap, message.body) == (1, True, b"ok")
    assert reassembler.next_seq == 2 and reassembler.stats.buffered == 0


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_error(data: bytes) -> None:
    for parse in (split_records, parse_handshake_fragments, parse_dtls_client_hello, parse_hello_verify_request,
                  parse_ack):  # fmt: skip
        with contextlib.suppress(ParseError):
            parse(data)
    looks_like_dtls(data)


@PROPERTY
@given(st.integers(0, len(_datagram()) - 1), st.integers(0, 255))
def test_mutated_datagram_only_raises_parse_error(position: int, value: int) -> None:
    data = bytearray(_datagram())
    data[position] = value
    try:
        for record in split_records(bytes(data)):
            for fragment in parse_handshake_fragments(record.payload) if record.content_type == 22 else ():
                reassembler = HandshakeReassembler()
                for message in reassembler.feed(fragment):
                    parse_dtls_client_hello(message.body)
    except ParseError:
        pass


# --- the reassembly property over real handshake messages ----------------------------------------------


@cache
def real_messages() -> tuple[tuple[int, bytes], ...]:
    """Complete handshake messages of the fixtures (client Certificates, server flights), as tshark-free
    bytes: read from the classic pcap files directly, fragments reassembled by the parser under test."""
    out: dict[bytes, int] = {}
    for capture in sorted((PCAPS / "dtls").glob("dtls12-openssl-*.pcap"))[:3]:
        raw = capture.read_bytes()
        offset = 24
        reassemblers: dict[bytes, HandshakeReassembler] = defaultdict(HandshakeReassembler)
        while offset < len(raw):
            length = struct.unpack_from("<I", raw, offset + 8)[0]
            frame = raw[offset + 16 : offset + 16 + length]
            offset += 16 + length
            udp = 14 + (frame[14] & 0x0F) * 4
            payload = frame[udp + 8 :]
            if not looks_like_dtls(payload):
                continue
            for record in split_records(payload):
                if record.content_type != HANDSHAKE or record.epoch != 0:
                    continue
                for fragment in parse_handshake_fragments(record.payload):
                    for message in reassemblers[frame[26:30] + frame[udp : udp + 2]].feed(fragment):
                        out.setdefault(message.body, message.msg_type)
    return tuple((msg_type, body) for body, msg_type in out.items() if len(body) > 20)


@st.composite
def fragmentations(draw: st.DrawFn) -> tuple[int, bytes, list[HandshakeFragment]]:
    messages = real_messages()
    if not messages:
        pytest.skip("no DTLS fixtures to take messages from")
    msg_type, body = draw(st.sampled_from(messages))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(body) - 1), max_size=12))))
    bounds = list(zip([0, *cuts], [*cuts, len(body)], strict=True))
    fragments = []
    for start, end in bounds:
        # Stretch some pieces over their neighbours, as a resend with another MTU does.
        start = max(0, start - draw(st.integers(0, 40)))
        end = min(len(body), end + draw(st.integers(0, 40)))
        fragments.append(HandshakeFragment(msg_type, len(body), 5, start, body[start:end]))
    fragments += draw(st.lists(st.sampled_from(fragments), max_size=5))  # duplicates
    order = draw(st.permutations(range(len(fragments))))
    return msg_type, body, [fragments[i] for i in order]


@PROPERTY
@given(fragmentations())
def test_any_fragmentation_of_a_real_message_gives_it_back_once(case: tuple[int, bytes, list]) -> None:
    msg_type, body, fragments = case
    reassembler = HandshakeReassembler(next_seq=5)
    delivered = [message for fragment in fragments for message in reassembler.feed(fragment)]
    assert [(m.msg_type, m.message_seq, m.body, m.conflicting) for m in delivered] == [(msg_type, 5, body, False)]
    assert reassembler.stats.buffered == 0 and reassembler.next_seq == 6


def test_real_messages_are_available() -> None:
    if not FIXTURES:
        pytest.skip("no DTLS fixtures")
    types = {msg_type for msg_type, _ in real_messages()}
    assert {1, 2, 11} <= types  # hellos and certificates, the fragmented ones included


def test_record_dataclass_is_frozen() -> None:
    record = split_records(_record(21, b"\x02\x28"))[0]
    assert isinstance(record, DtlsRecord)
    with pytest.raises(AttributeError):
        record.epoch = 3  # type: ignore[misc]


# --- DTLS 1.3 record protection, checked on illustrated-dtls with its key log ------------------------


def _dtls13_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label with DTLS 1.3's "dtls13" prefix (RFC 9147 5.9) where TLS 1.3 has "tls13 "."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    full = b"dtls13" + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def test_dtls13_records_decrypt_after_unmasking_with_the_key_log() -> None:
    """What the integrator needs, shown on real bytes: sn_key = Expand-Label(secret, "sn"), the mask is
    AES-ECB(sn_key, first 16 ciphertext bytes), the nonce is iv XOR the reconstructed sequence number
    (without the epoch), and the AEAD additional data is the unified header with the sequence in clear."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    capture = corpus_file("illustrated-dtls/captures/capture.pcap")
    secrets = {}
    for line in (capture.parent / "keylog.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            label, _, hex_secret = line.split()
            secrets[label] = bytes.fromhex(hex_secret)
    (conversation,) = observe(capture).values()
    assert conversation.server_hello is not None and conversation.server_hello.cipher_suite == 0x1301
    client = conversation.client
    highest: dict[tuple[bool, int], int] = defaultdict(lambda: -1)
    inner_types: dict[tuple[bool, int], list[int]] = defaultdict(list)
    server_messages = []
    server_flight = HandshakeReassembler(next_seq=1)  # the ServerHello (message_seq 0) was in clear
    for datagram in datagrams(capture):
        from_client = datagram.source == client
        for record in split_records(datagram.payload):
            if not record.unified:
                continue
            epoch = record.epoch  # 2 handshake, 3 application data: no wrap of the 2 epoch bits here
            kind = "HANDSHAKE_TRAFFIC_SECRET" if epoch == 2 else "TRAFFIC_SECRET_0"
            label = f"{'CLIENT' if from_client else 'SERVER'}_{kind}"
            # This key log writes CLIENT_TRAFFIC_SECRET without the _0 that RFC 9850 and Wireshark use.
            secret = secrets.get(label) or secrets[label.removesuffix("_0")]
            key, iv = _dtls13_expand_label(secret, b"key", 16), _dtls13_expand_label(secret, b"iv", 12)
            encryptor = Cipher(algorithms.AES(_dtls13_expand_label(secret, b"sn", 16)), modes.ECB()).encryptor()
            clear = unmask_sequence(record, encryptor.update(sequence_mask_sample(record)))
            sequence = reconstruct(clear.sequence, clear.sequence_bits, highest[from_client, epoch] + 1)
            highest[from_client, epoch] = max(highest[from_client, epoch], sequence)
            nonce = (int.from_bytes(iv, "big") ^ sequence).to_bytes(12, "big")
            inner = AESGCM(key).decrypt(nonce, record.payload, clear.header).rstrip(b"\x00")
            content_type, content = inner[-1], inner[:-1]
            inner_types[from_client, epoch].append(content_type)
            if content_type == ACK_TYPE:
                assert all(number.epoch in (2, 3) for number in parse_ack(content))
            if content_type == HANDSHAKE and not from_client:
                for fragment in parse_handshake_fragments(content):
                    server_messages += [m.msg_type for m in server_flight.feed(fragment)]
    # EncryptedExtensions, Certificate, CertificateVerify, Finished; the client's ACK; application data.
    # Server: EncryptedExtensions, Certificate, CertificateVerify, Finished; then its ACK of the client's
    # Finished, application data and close_notify. Client: Finished, then application data.
    assert server_messages == [8, 11, 15, 20]
    assert dict(inner_types) == {
        (False, 2): [HANDSHAKE] * 4,
        (True, 2): [HANDSHAKE],
        (False, 3): [ACK_TYPE, 23, ALERT],
        (True, 3): [23],
    }


ACK_TYPE = 26
