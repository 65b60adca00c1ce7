"""Alert records: several alerts per record, names, fatality, and real server alerts."""

from __future__ import annotations

from pathlib import Path

import pytest
from helloscope.parsers.alerts import Alert, parse_alerts
from helloscope.parsers.errors import ParseError

from tests.helpers import tshark_fields
from tests.parsers.corpus_streams import plaintext_records, tcp_streams


def test_openssl_rejections_from_protocol_notes() -> None:
    # PROTOCOL.md: OpenSSL 3.0 sends 15 03 03 00 02 02 28 (handshake_failure) or ... 02 30 (unknown_ca).
    assert parse_alerts(b"\x02\x28") == (Alert(2, 40),)
    [alert] = parse_alerts(b"\x02\x30")
    assert alert.name == "unknown_ca" and alert.fatal


def test_several_alerts_in_one_record() -> None:
    alerts = parse_alerts(b"\x01\x00\x02\x74\x02\x79")
    assert [(a.name, a.fatal) for a in alerts] == [
        ("close_notify", False),
        ("certificate_required", True),
        ("ech_required", True),
    ]


def test_unknown_description_and_level() -> None:
    [alert] = parse_alerts(b"\x07\xc8")
    assert alert.name == "unknown_200" and not alert.fatal


@pytest.mark.parametrize("fragment", [b"", b"\x02", b"\x02\x28\x01"])
def test_empty_or_odd_length_raises(fragment: bytes) -> None:
    with pytest.raises(ParseError):
        parse_alerts(fragment)


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("FlowTest/pcap/tls_cipher_error.pcap", 40),  # handshake_failure
        ("FlowTest/pcap/tls_version_error.pcap", 70),  # protocol_version
        ("ja4/pcap/badcurveball.pcap", 46),  # certificate_unknown, sent by the client
    ],
)
def test_real_alerts_match_tshark(corpus: Path, name: str, description: int) -> None:
    capture = corpus / name
    [[level, desc]] = tshark_fields(capture, "tls.alert_message", ["tls.alert_message.level", "tls.alert_message.desc"])
    found = [
        alert
        for stream in tcp_streams(capture)
        for data in (stream.client, stream.server)
        for record in plaintext_records(data)
        if record.content_type == 21
        for alert in parse_alerts(record.payload)
    ]
    assert found == [Alert(int(level), int(desc))]
    assert found[0].description == description and found[0].fatal
