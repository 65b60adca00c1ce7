"""DTLS end to end: every real-peer capture in pcaps/dtls/ gives tshark's truth, one event per handshake.

The expected files were written by pcaps/make_dtls_fixtures.py from tshark's dissection (never from
helloscope): the ClientHello answered (after a HelloVerifyRequest, the one carrying the cookie), the
ServerHello, whether a CertificateRequest and a client Certificate were sent, and the alerts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import PCAPS, analyze

DTLS = PCAPS / "dtls"
CAPTURES = sorted(DTLS.glob("*.pcap"))
_STATES = {"absent": "absent", "empty": "empty", "presented": "presented"}


def _expected(capture: Path) -> dict:
    return json.loads(capture.with_suffix(".expected.json").read_text())


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_dtls_capture_reports_what_tshark_sees(capture: Path) -> None:
    expected = _expected(capture)
    events = analyze(capture)
    assert len(events) == len(expected["handshakes"])
    for event, truth in zip(events, expected["handshakes"], strict=True):
        helloscope, tls = event["helloscope"], event["tls"]
        assert event["network"] == event["network"] | {"transport": "udp", "protocol": "dtls"}
        answered = truth["client_hellos"][-1]
        hello = helloscope["client_hello"]
        assert tls["client"]["server_name"] == answered["server_name"]
        assert hello["cipher_suites"] == answered["cipher_suites"]
        assert hello["extensions"] == answered["extensions"]
        assert hello["supported_groups"] == answered["supported_groups"]
        assert hello["signature_algorithms"] == answered["signature_algorithms"]
        assert hello["ja3_full"] == answered["ja3_full"] and tls["client"]["ja3"] == answered["ja3"]
        assert tls["client"]["ja4"].startswith("d")
        assert helloscope["dtls"]["hello_verify_request"] == (truth["hello_verify_requests"] > 0)
        server = truth["server_hello"]
        assert helloscope["server_hello"]["cipher_suite"] == server["cipher_suite"]
        assert helloscope["server_hello"]["extensions"] == server["extensions"]
        assert (tls["version"], tls["version_protocol"]) == _version(truth["negotiated_version"])
        assert helloscope["certificate_request"]["seen"] is truth["certificate_request"]
        if truth["certificate_request"]:
            assert helloscope["client_certificate"]["state"] == _STATES[truth["client_certificate"]]
        seen = [(alert["sender"], alert["code"]) for alert in helloscope["alerts"] if alert["code"] is not None]
        assert seen == [(alert["sender"], alert["code"]) for alert in truth["plaintext_alerts"]]


def test_retransmitted_and_fragmented_flights_give_the_clean_report() -> None:
    """A lost-and-retransmitted flight, or a certificate cut into fragments, changes nothing a SOC reads."""

    def verdict(name: str) -> tuple:
        (event,) = analyze(DTLS / f"{name}.pcap")
        helloscope = event["helloscope"]
        return (
            helloscope["outcome"],
            helloscope["outcome_evidence"],
            helloscope["certificate_request"]["seen"],
            helloscope["client_certificate"]["state"],
            event["tls"]["client"]["ja4"],
        )

    clean = verdict("dtls12-openssl-required-presented")
    assert clean[:4] == ("authenticated", "plaintext", True, "presented")
    for variant in ("dtls12-openssl-retransmit", "dtls12-openssl-fragmented", "dtls12-openssl-lost-fragment"):
        if (DTLS / f"{variant}.pcap").exists():
            assert verdict(variant)[:4] == clean[:4], variant


def _version(wire: str) -> tuple[str, str]:
    return {"0xfeff": ("1.0", "dtls"), "0xfefd": ("1.2", "dtls"), "0xfefc": ("1.3", "dtls")}[wire]


def _corpus_dtls_captures(corpus: Path) -> list[Path]:
    """Captures INDEX.md says hold DTLS ClientHellos (its 'DTLS CH' column, counted by tshark)."""
    captures = []
    for line in (corpus / "INDEX.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 8 and cells[1].startswith("`") and cells[7].isdigit() and int(cells[7]) > 0:
            captures.append(corpus / cells[1].strip("`"))
    return captures


def test_corpus_gives_a_report_per_dtls_handshake_tshark_sees(corpus: Path) -> None:
    from tests.helpers import tshark_fields

    captures = _corpus_dtls_captures(corpus)
    assert len(captures) >= 10
    for capture in captures:
        rows = tshark_fields(
            capture,
            "dtls.handshake.type == 1",
            ["ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport"],
        )
        # Inside a tunnel tshark lists the outer and inner headers: the innermost (last) is the flow. A
        # WebRTC peer pair may both send a ClientHello on one path (a role conflict): one report says so.
        truth = {
            frozenset(
                {
                    ((row[0] or row[1]).split(",")[-1], row[2].split(",")[-1]),
                    ((row[3] or row[4]).split(",")[-1], row[5].split(",")[-1]),
                }
            )
            for row in rows
        }
        events = [event for event in analyze(capture) if event["network"]["protocol"] == "dtls"]
        ours = [
            frozenset(
                {
                    (event["source"]["ip"], str(event["source"]["port"])),
                    (event["destination"]["ip"], str(event["destination"]["port"])),
                }
            )
            for event in events
        ]
        assert sorted(ours, key=sorted) == sorted(truth, key=sorted), capture.name
