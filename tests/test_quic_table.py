"""transport.quic: connections keyed by connection IDs, Retry, reordered CRYPTO data, CONNECTION_CLOSE.

The RFC 9001 Appendix A packets are the real traffic here; the scenarios that need other connection IDs
(Retry, a split ClientHello, a close) re-protect the RFC's own frames with a small test-only helper.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from helloscope.parsers.quic import CLIENT_IN, QUIC_V1, QUIC_V2, SERVER_IN, initial_keys
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.quic import QuicTable
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.parsers import quic_vectors as rfc

CLIENT = (bytes([192, 0, 2, 1]), 50000)
SERVER = (bytes([198, 51, 100, 7]), 8443)  # QUIC is found on any port, not just 443
CLIENT_SCID = bytes.fromhex("c1c2c3c4")
_INITIAL_BITS = {QUIC_V1: 0b00, QUIC_V2: 0b01}


def _segment(payload: bytes, from_client: bool = True) -> Segment:
    (src, sport), (dst, dport) = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
    return Segment(17, src, dst, sport, dport, 0, 0, 0, payload, 0)


def _varint2(value: int) -> bytes:
    return (0x4000 | value).to_bytes(2, "big")


def protect(
    dcid: bytes, scid: bytes, key_dcid: bytes, label: bytes, pn: int, frames: bytes, version: int = QUIC_V1
) -> bytes:
    """A protected Initial packet (2-byte packet number) around ``frames``, keys from ``key_dcid``."""
    keys = initial_keys(version, key_dcid, label)
    first = 0xC0 | _INITIAL_BITS[version] << 4 | 0x01
    header = (
        bytes([first]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + b"\x00"
    )
    header += _varint2(2 + len(frames) + 16) + pn.to_bytes(2, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    ciphertext = AESGCM(keys.key).encrypt(nonce, frames, header)
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(ciphertext[2:18]) + encryptor.finalize()
    masked = bytearray(header)
    masked[0] ^= mask[0] & 0x0F
    masked[-2] ^= mask[1]
    masked[-1] ^= mask[2]
    return bytes(masked) + ciphertext


def _crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint2(offset) + _varint2(len(data)) + data


def _handshake_packet(dcid: bytes) -> bytes:
    """A Handshake packet as the observer sees it: header in clear, payload opaque."""
    return bytes([0xE1]) + QUIC_V1.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + b"\x00" + _varint2(40) + bytes(40)


CLIENT_HELLO = rfc.CLIENT_CRYPTO_FRAME[4:]  # frame type, offset 0 and 2-byte length stripped
SERVER_FRAMES = rfc.SERVER_PAYLOAD


def _table() -> tuple[QuicTable, list[ConnectionReport]]:
    reports: list[ConnectionReport] = []
    return QuicTable(reports.append, RunStats()), reports


def test_rfc_client_and_server_initials_make_one_report() -> None:
    table, reports = _table()
    table.datagram(1.0, _segment(rfc.V1_CLIENT_INITIAL))
    # The RFC server Initial answers a client with an empty SCID.
    table.datagram(1.1, _segment(rfc.V1_SERVER_INITIAL, from_client=False))
    table.datagram(1.2, _segment(_handshake_packet(rfc.SERVER_SCID)))
    assert len(reports) == 1
    report = reports[0]
    assert report.end_reason == "handshake_settled"
    assert report.endpoints.transport == "udp" and (report.endpoints.server_port, report.endpoints.client_port) == (
        8443,
        50000,
    )
    assert report.client_hello is not None and report.client_hello.server_name == b"example.com"
    assert report.handshake.server_hello is not None and report.handshake.version == 0x0304
    assert report.conclusion.outcome == "unknown" and report.conclusion.flag_outcome == "unknown"
    assert report.quic is not None
    assert (report.quic.version, report.quic.client_packets, report.quic.server_packets) == (QUIC_V1, 1, 1)
    assert ("max_idle_timeout", 30000) in report.quic.transport_parameters
    event = build_event(report, Observer("test"))
    assert event["network"]["protocol"] == "quic" and event["network"]["transport"] == "udp"
    assert event["helloscope"]["quic"]["version"] == "0x00000001"
    assert {"name": "initial_source_connection_id", "value": rfc.DCID.hex()} in event["helloscope"]["quic"][
        "transport_parameters"
    ]
    # Later packets of a reported connection are absorbed, not reported again.
    table.datagram(1.3, _segment(_handshake_packet(rfc.SERVER_SCID)))
    table.flush()
    assert len(reports) == 1


def test_v2_client_initial_is_read() -> None:
    table, reports = _table()
    table.datagram(1.0, _segment(rfc.V2_CLIENT_INITIAL))
    table.flush()
    (report,) = reports
    assert report.quic is not None and report.quic.version == QUIC_V2
    assert report.end_reason == "capture_end" and report.conclusion.outcome == "incomplete"
    assert report.client_hello is not None and report.client_hello.server_name == b"example.com"


def test_retry_then_split_reordered_duplicated_client_hello() -> None:
    table, reports = _table()
    first_dcid, retry_dcid, server_cid = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6"), b"\x5e\x5e"
    table.datagram(1.0, _segment(protect(first_dcid, CLIENT_SCID, first_dcid, CLIENT_IN, 0, _crypto(0, CLIENT_HELLO))))
    retry = (
        bytes([0xF0]) + QUIC_V1.to_bytes(4, "big") + b"\x04" + CLIENT_SCID + b"\x06" + retry_dcid + b"tok" + bytes(16)
    )
    table.datagram(1.1, _segment(retry, from_client=False))
    # After the Retry the ClientHello comes again under keys from the new DCID, in two packets sent
    # in reverse order, the second one twice.
    head, tail = CLIENT_HELLO[:100], CLIENT_HELLO[100:]
    second = protect(retry_dcid, CLIENT_SCID, retry_dcid, CLIENT_IN, 2, _crypto(100, tail))
    table.datagram(1.2, _segment(second))
    table.datagram(1.3, _segment(second))
    table.datagram(1.4, _segment(protect(retry_dcid, CLIENT_SCID, retry_dcid, CLIENT_IN, 1, _crypto(0, head))))
    server_initial = protect(CLIENT_SCID, server_cid, retry_dcid, SERVER_IN, 0, SERVER_FRAMES)
    table.datagram(1.5, _segment(server_initial + _handshake_packet(CLIENT_SCID), from_client=False))
    # The client now addresses the server by the server's CID.
    table.datagram(1.6, _segment(_handshake_packet(server_cid)))
    (report,) = reports
    assert report.quic is not None
    assert report.quic.retry and report.quic.original_dcid == first_dcid
    assert report.quic.crypto_duplicates == 1 and report.quic.client_packets == 4
    assert len(report.handshake.client_hellos) == 1  # the pre-Retry hello is superseded, not a second hello
    assert report.client_hello is not None and report.client_hello.server_name == b"example.com"
    assert report.handshake.server_hello is not None and report.end_reason == "handshake_settled"


def test_connection_close_in_an_initial_is_reported_as_an_alert() -> None:
    table, reports = _table()
    dcid = bytes.fromhex("1112131415161718")
    table.datagram(1.0, _segment(protect(dcid, CLIENT_SCID, dcid, CLIENT_IN, 0, _crypto(0, CLIENT_HELLO))))
    # CONNECTION_CLOSE 0x0178: crypto error carrying no_application_protocol (120)
    close = b"\x1c\x41\x78\x06\x04alpn" + bytes(10)
    table.datagram(1.1, _segment(protect(CLIENT_SCID, b"\x77", dcid, SERVER_IN, 0, close), from_client=False))
    (report,) = reports
    assert report.end_reason == "handshake_settled"
    assert report.conclusion.outcome == "failed"
    assert [(alert.sender, alert.level, alert.description, alert.evidence) for alert in report.conclusion.alerts] == [
        ("server", 2, 120, "plaintext")
    ]
    assert report.quic is not None and report.quic.close is not None and report.quic.close.reason == b"alpn"


def test_two_connections_from_one_port_stay_apart() -> None:
    table, reports = _table()
    for dcid in (b"\x01" * 8, b"\x02" * 8):
        table.datagram(1.0, _segment(protect(dcid, CLIENT_SCID, dcid, CLIENT_IN, 0, _crypto(0, CLIENT_HELLO))))
    assert len(table) == 2
    table.flush()
    assert [report.quic.original_dcid for report in reports if report.quic] == [b"\x01" * 8, b"\x02" * 8]


def test_port_filter_applies_to_quic() -> None:
    reports: list[ConnectionReport] = []
    table = QuicTable(reports.append, RunStats(), ports=frozenset({443}))
    table.datagram(1.0, _segment(rfc.V1_CLIENT_INITIAL))  # to port 8443
    table.flush()
    assert reports == []


def test_server_initial_alone_and_short_headers_are_ignored() -> None:
    table, reports = _table()
    table.datagram(1.0, _segment(rfc.V1_SERVER_INITIAL, from_client=False))
    table.datagram(1.0, _segment(b"\x40" + bytes(50)))
    table.flush()
    assert reports == [] and len(table) == 0


@settings(max_examples=300)
@given(st.binary(max_size=1300), st.integers(min_value=0, max_value=1199))
def test_garbage_and_truncated_udp_payloads_give_no_report(garbage: bytes, cut: int) -> None:
    table, reports = _table()
    table.datagram(1.0, _segment(garbage))
    table.datagram(1.0, _segment(rfc.V1_CLIENT_INITIAL[:cut]))
    flipped = bytearray(rfc.V1_CLIENT_INITIAL)
    flipped[cut] ^= 0x10
    table.datagram(1.0, _segment(bytes(flipped)))
    table.flush()
    # A flipped bit in the clear header (not the first byte, the DCID or the length fields) can still
    # authenticate only if it was in a protected part that the AEAD covers: it never does.
    assert reports == []
