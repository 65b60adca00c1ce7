"""JA3 / JA3S: RFC 8448 hellos, GREASE and padding rules, and equality with tshark 4.0 on real captures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helloscope.parsers.fingerprints import ja3, ja3_string, ja3s, ja3s_string
from helloscope.parsers.hello import parse_client_hello, parse_server_hello, parse_sslv2_client_hello

from tests.helpers import tshark_fields
from tests.parsers import rfc8448
from tests.parsers.corpus_streams import plaintext_handshake, tcp_streams


def test_rfc8448_ja3() -> None:
    hello = parse_client_hello(rfc8448.CLIENT_HELLO[4:])
    # No ec_point_formats extension: the last field is empty, not omitted.
    assert ja3_string(hello) == "771,4865-4867-4866,0-65281-10-35-51-43-13-45-28,29-23-24-25-256-257-258-259-260,"
    assert ja3(hello) == "da4dea34fe6d4ce5f0725df3f2682fa0"


def test_rfc8448_ja3s() -> None:
    hello = parse_server_hello(rfc8448.SERVER_HELLO[4:])
    assert ja3s_string(hello) == "771,4865,51-43"  # legacy_version, not the selected 0x0304
    assert ja3s(hello) == "eb1d94daa7e0344597e756a1fb6e7054"


def test_grease_is_left_out_and_padding_kept() -> None:
    prefix = rfc8448.CLIENT_HELLO[4 : 4 + 35]
    extensions = (
        bytes.fromhex("1a1a 0000")  # GREASE extension
        + bytes.fromhex("000a 0008 0006 3a3a 001d 0017")  # groups with GREASE
        + bytes.fromhex("000b 0002 0100")  # ec_point_formats: uncompressed
        + bytes.fromhex("0015 0003 000000")
    )  # padding
    body = prefix + bytes.fromhex("0006 caca 1301 c02f") + b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions
    assert ja3_string(parse_client_hello(body)) == "771,4865-49199,10-11-21,29-23,0"


def test_sslv2_hello_has_no_ja3() -> None:
    record = bytes.fromhex("801c 01 0301 0003 0000 0010 00002f") + bytes(16)
    hello = parse_sslv2_client_hello(record)
    assert hello.cipher_suites == (0x2F,)
    assert ja3_string(hello) is None and ja3(hello) is None


def test_padding_counts_like_tshark(corpus: Path) -> None:
    capture = corpus / "nDPI/tests/cfgs/default/pcap/chrome.pcap"
    theirs = [row[0] for row in tshark_fields(capture, "tcp && tls.handshake.type == 1", ["tls.handshake.ja3_full"])]
    ours = [
        ja3_string(parse_client_hello(m.body))
        for s in tcp_streams(capture)
        for m in plaintext_handshake(s.client)
        if m.msg_type == 1
    ]
    assert any(s.split(",")[2].endswith("-21") for s in theirs)
    assert Counter(ours) == Counter(theirs)


@pytest.mark.parametrize(
    "name",
    [
        "mercury/unit_tests/pcaps/geneve.pcap",
        "ja4/pcap/tls-handshake.pcapng",
        "mercury/unit_tests/pcaps/quic_reordered_frames.pcap",  # includes a HelloRetryRequest
        "FlowTest/pcap/tls13_0rtt.pcap",  # TLS 1.3 draft 28 with PSK
        "wireshark-notes/tls/xmpp-ssl.pcapng",
        "FlowTest/pcap/tls_ssl30.pcap",
    ],
)
def test_ja3s_matches_tshark(corpus: Path, name: str) -> None:
    capture = corpus / name
    theirs = Counter(
        row[0] for row in tshark_fields(capture, "tcp && tls.handshake.type == 2", ["tls.handshake.ja3s_full"])
    )
    ours = Counter(
        ja3s_string(parse_server_hello(m.body))
        for s in tcp_streams(capture)
        for m in plaintext_handshake(s.server)
        if m.msg_type == 2
    )
    assert ours == theirs and sum(ours.values()) >= 1
