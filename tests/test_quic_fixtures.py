"""QUIC fixtures recorded from aioquic over loopback (pcaps/make_quic_fixtures.py): with the key log
helloscope reports the truth tshark saw with it (NAME.expected.json). The expectations without keys
are checked for every fixture by tests/test_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.decode import Segment, decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.quic import QuicTable
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import PCAPS, tshark_fields

NAMES = [
    "quic-mtls-authenticated",
    "quic-mtls-declined",
    "quic-mtls-rejected",
    "quic-flag-honored",
    "quic-split-hello",
    "quic-split-hello-reordered",
]


def _event(capture: Path, keylog: Path | None) -> dict:
    keys = KeyLog()
    if keylog is not None:
        keys.feed(keylog.read_text())
        keys.finish()
    events, stats = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    (event,) = events
    assert stats.tls_connections == stats.quic_connections == 1
    return event


@pytest.mark.parametrize("name", NAMES)
def test_run_statistics_count_every_udp_datagram_tshark_sees(name: str) -> None:
    capture = PCAPS / f"{name}.pcap"
    _, stats = analyze_files([open_capture(str(capture))], Observer("test"))
    udp_frames = tshark_fields(capture, "udp", ["frame.number"])
    assert stats.udp_datagrams == len(udp_frames) > 0 and stats.tcp_segments == 0


@pytest.mark.parametrize("name", NAMES)
def test_with_keys_the_report_equals_the_truth(name: str) -> None:
    spec = json.loads((PCAPS / f"{name}.expected.json").read_text())
    (connection,) = spec["connections"]
    truth = connection["truth"]
    event = _event(PCAPS / f"{name}.pcap", PCAPS / spec["keylog"])
    scope = event["helloscope"]
    assert event["tls"]["client"]["server_name"] == connection["expected"]["tls.client.server_name"]
    assert scope["decryption"]["status"] == "decrypted"
    assert scope["decryption"]["client_finished"] and scope["decryption"]["server_finished"]
    assert scope["certificate_request"]["seen"] is truth["certificate_request"]
    assert scope["client_certificate"]["state"] == truth["client_certificate"]
    assert [alert["code"] for alert in scope["alerts"] if alert["sender"] == "server"] == (
        [truth["server_alert"]] if truth["server_alert"] is not None else []
    )
    assert (scope["outcome"], scope["outcome_evidence"]) == (truth["outcome"], "decrypted")
    assert (scope["request_mtls"], scope["flag_outcome"]) == (truth["request_mtls"], truth["flag_outcome"])
    assert scope["end_reason"] == "handshake_settled"  # settled on the server's verdict, not at capture end
    assert not scope["anomalies"]


def test_split_hello_spans_two_initial_packets_and_survives_reordering() -> None:
    plain = _event(PCAPS / "quic-split-hello.pcap", None)["helloscope"]
    reordered = _event(PCAPS / "quic-split-hello-reordered.pcap", None)["helloscope"]
    assert len(plain["client_hello"]["alpn"]) == 151
    assert plain["client_hello"] == reordered["client_hello"]
    assert (plain["quic"]["crypto_duplicates"], reordered["quic"]["crypto_duplicates"]) == (0, 1)
    assert plain["quic"]["client_initial_packets"] >= 2


def _segments(name: str) -> list[tuple[float, Segment]]:
    segments = []
    for timestamp, linktype, frame in open_capture(str(PCAPS / f"{name}.pcap")):
        segment = decode(linktype, frame)
        assert segment is not None
        segments.append((timestamp, segment))
    return segments


MTLS_SEGMENTS = _segments("quic-mtls-authenticated")
MTLS_KEYS = KeyLog()
MTLS_KEYS.feed((PCAPS / "quic-mtls-authenticated.keylog").read_text())
MTLS_KEYS.finish()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(MTLS_SEGMENTS) - 1), st.integers(0, 1500), st.integers(1, 255))))
def test_damaged_datagrams_with_keys_never_raise(flips: list[tuple[int, int, int]]) -> None:
    """Bit flips anywhere (headers, CIDs, lengths, protected payloads) in a keyed connection."""
    payloads = [bytearray(segment.payload) for _, segment in MTLS_SEGMENTS]
    for index, offset, mask in flips:
        if offset < len(payloads[index]):
            payloads[index][offset] ^= mask
    reports: list[ConnectionReport] = []
    table = QuicTable(reports.append, RunStats(), keys=MTLS_KEYS)
    for (timestamp, segment), payload in zip(MTLS_SEGMENTS, payloads, strict=True):
        table.datagram(timestamp, segment._replace(payload=bytes(payload)))
    table.flush()
    assert len(reports) <= 1
    if not flips:
        assert reports[0].conclusion.outcome == "authenticated"
