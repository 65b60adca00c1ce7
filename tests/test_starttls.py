"""TLS found by content after a plaintext preamble, on public captures of real STARTTLS-style upgrades."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import analyze, tshark_fields

# (capture under ../shared/corpus, protocol that upgraded to TLS)
UPGRADES = [
    ("wireshark-notes/tls/smtp-ssl.pcapng", "smtp"),
    ("wireshark-notes/tls/smtp2525-ssl.pcapng", "smtp"),
    ("nDPI/tests/cfgs/default/pcap/smtp-starttls.pcap", "smtp"),
    ("wireshark-notes/tls/imap-ssl.pcapng", "imap"),
    ("nDPI/tests/cfgs/default/pcap/imap-starttls.pcap", "imap"),
    ("wireshark-notes/tls/pop-ssl.pcapng", "pop3"),
    ("nDPI/tests/cfgs/default/pcap/pop3_stls.pcap", "pop3"),
    ("wireshark-notes/tls/xmpp-ssl.pcapng", "xmpp"),
    ("wireshark-notes/tls/ldap-ssl.pcapng", "ldap"),
    ("nDPI/tests/cfgs/default/pcap/ftp-start-tls.pcap", "ftp"),
    ("wireshark-notes/tls/pgsql-ssl.pcapng", "postgresql"),
    ("nDPI/tests/cfgs/default/pcap/pgsql2.pcapng", "postgresql"),
    ("wireshark-notes/tls/mysql-ssl.pcapng", "mysql"),
    ("nDPI/tests/cfgs/default/pcap/mysql.pcapng", "mysql"),
]


@pytest.mark.parametrize(("relative", "protocol"), UPGRADES, ids=[item[0].rsplit("/", 1)[1] for item in UPGRADES])
def test_tls_after_a_plaintext_preamble_is_found_and_named(corpus: Path, relative: str, protocol: str):
    capture = corpus / relative
    events = analyze(capture)
    assert events, f"no TLS found in {relative}"
    server_names = {
        row[0] or None
        for row in tshark_fields(capture, "tls.handshake.type == 1", ["tls.handshake.extensions_server_name"])
    }
    for event in events:
        preamble = event["helloscope"]["preamble"]
        assert preamble["protocol"] == protocol
        assert preamble["client_bytes"] > 0 and preamble["server_bytes"] > 0
        assert event["tls"]["version"] is not None  # the server's answer was found after its own preamble
        assert event["tls"]["client"]["server_name"] in server_names


def test_direct_tls_has_no_preamble(corpus: Path):
    (event, *_) = analyze(corpus / "nDPI/tests/cfgs/default/pcap/imaps.pcap")
    assert event["helloscope"]["preamble"] is None


def test_hello_retry_request_keeps_both_hellos(corpus: Path):
    # PostgreSQL SSLRequest, then TLS 1.3 with a HelloRetryRequest and middlebox-compatibility CCS.
    (event,) = analyze(corpus / "nDPI/tests/cfgs/default/pcap/pgsql2.pcapng")
    scope = event["helloscope"]
    assert scope["hello_retry_request"] is True
    assert scope["second_client_hello"] is not None
    assert event["tls"]["version"] == "1.3"
    first, second = scope["client_hello"]["key_share_groups"], scope["second_client_hello"]["key_share_groups"]
    assert first != second  # the retry asked for another key share


def test_preamble_bound_drops_non_tls_flows(corpus: Path):
    # With a 16-byte bound the SMTP preambles are too long: the flows are given up as not TLS and their
    # preambles dropped. A ClientHello that later starts a segment of such a flow still starts a TLS
    # connection (as on a reused 4-tuple), so the STARTTLS handshakes are reported, without a preamble.
    from helloscope.sniffer.capture.files import open_capture
    from helloscope.sniffer.report.events import Observer
    from helloscope.sniffer.run.pipeline import analyze_files
    from helloscope.sniffer.transport.lifecycle import Limits

    capture = corpus / "nDPI/tests/cfgs/default/pcap/smtp-starttls.pcap"
    events, stats = analyze_files([open_capture(str(capture))], Observer("t"), Limits(max_preamble_bytes=16))
    assert stats.non_tls_flows == 2
    assert len(events) == 2
    assert all(event["helloscope"]["preamble"] is None for event in events)
    assert all(event["helloscope"]["client_hello"] is not None for event in events)
