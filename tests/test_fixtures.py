"""The bundled real captures give the reports their scenario definitions expect (pcaps/*.expected.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import PCAPS, analyze, field, tshark_fields

EXPECTATIONS = sorted(PCAPS.glob("*.expected.json"))


def _capture(expectation: Path) -> Path:
    return expectation.with_name(expectation.name.removesuffix(".expected.json") + ".pcap")


def test_every_fixture_has_an_expectation():
    assert EXPECTATIONS, "no pcaps/*.expected.json found"
    for capture in PCAPS.glob("*.pcap"):
        assert capture.with_suffix(".expected.json").exists(), capture


# Without keys, TLS 1.3 fields the plaintext cannot show may be inferred from record sizes; then the
# inference must equal what really happened (the scenario's truth), with its confidence said.
INFERABLE = {
    "helloscope.certificate_request.seen": "certificate_request",
    "helloscope.client_certificate.state": "client_certificate",
    "helloscope.outcome": "outcome",
    "helloscope.flag_outcome": "flag_outcome",
}
_EVIDENCE_OF = {
    "helloscope.certificate_request.seen": "helloscope.certificate_request.evidence",
    "helloscope.client_certificate.state": "helloscope.client_certificate.evidence",
    "helloscope.outcome": "helloscope.outcome_evidence",
    "helloscope.flag_outcome": "helloscope.flag_outcome_evidence",
}


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=lambda path: path.name.removesuffix(".expected.json"))
def test_fixture_reports_match_the_scenario(expectation: Path):
    spec = json.loads(expectation.read_text())
    events = analyze(_capture(expectation))
    assert len(events) == len(spec["connections"])
    for event, connection in zip(events, spec["connections"], strict=True):
        for path, expected in connection["expected"].items():
            actual = field(event, path)
            if path == "helloscope.alerts":
                actual = [
                    {"sender": alert["sender"], "code": alert["code"]} for alert in actual if alert["code"] is not None
                ]
            elif path.endswith(".evidence") and actual == "inferred" and expected == "unknown":
                continue  # checked with the value below
            elif path in INFERABLE and field(event, _EVIDENCE_OF[path]) == "inferred":
                assert actual == connection["truth"][INFERABLE[path]], f"inferred {path}: {actual!r}"
                continue
            assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_padded_records_give_no_inference_rather_than_a_wrong_one():
    (event,) = analyze(PCAPS / "tls13-padded-required-presented.pcap")
    scope = event["helloscope"]
    assert scope["certificate_request"]["seen"] is None and scope["outcome"] == "unknown"


def test_inferred_findings_carry_confidence_and_basis_and_never_claim_more():
    for capture in sorted(PCAPS.glob("tls13-*.pcap")):
        for event in analyze(capture):
            scope = event["helloscope"]
            for finding in (scope["certificate_request"], scope["client_certificate"]):
                if finding["evidence"] == "inferred":
                    assert finding["confidence"] in {"high", "medium", "low"} and finding["basis"]
                else:
                    assert "confidence" not in finding
            if scope["outcome_evidence"] == "inferred":
                assert scope["outcome_confidence"] in {"high", "medium", "low"} and scope["outcome_basis"]
            assert scope["outcome_evidence"] in {"inferred", "unknown", "plaintext"}


def test_flagged_hellos_name_the_flag_on_both_codepoints():
    for name, codepoint in (("tls13-flag62-honored", 62), ("tls13-flagfe01-ignored", 0xFE01)):
        (event,) = analyze(PCAPS / f"{name}.pcap")
        flags = event["helloscope"]["tls_flags"]
        assert (flags["codepoint"], flags["flags"], flags["names"]) == (codepoint, [80], ["request_mtls"])
        assert flags["malformations"] == []


def _comparable(event: dict) -> dict:
    """An event without what differs between two captures of the same bytes: file, times and TCP counters."""
    scope = dict(event["helloscope"], tcp=None)
    source, destination = dict(event["source"], bytes=None), dict(event["destination"], bytes=None)
    return dict(
        event, helloscope=scope, source=source, destination=destination, event=None, log=None, **{"@timestamp": None}
    )


def test_split_reordered_duplicated_hello_gives_the_same_report():
    (original,) = analyze(PCAPS / "large-clienthello.pcap")
    (rewritten,) = analyze(PCAPS / "large-clienthello-split-reordered.pcap")
    assert original["helloscope"]["client_hello"]["padding_length"] >= 1400
    assert _comparable(rewritten) == _comparable(original)
    tcp = rewritten["helloscope"]["tcp"]
    assert tcp["out_of_order"] >= 1 and tcp["retransmitted"] >= 1 and tcp["overlap_conflicts"] == 0


def test_tls12_client_certificate_is_summarised():
    (event,) = analyze(PCAPS / "tls12-required-presented.pcap")
    certificate = event["helloscope"]["client_certificate"]
    leaf = certificate["chain"][0]
    assert certificate["state"] == "presented"
    assert leaf["client_auth"] is True and leaf["key_type"] == "rsa" and leaf["key_bits"] == 2048
    assert event["tls"]["client"]["hash"]["sha256"] == leaf["sha256"].upper()
    # tshark's view of the same certificate: its subject names the client.
    rows = tshark_fields(
        PCAPS / "tls12-required-presented.pcap",
        "tls.handshake.type == 11 && tcp.srcport != 0",
        ["tcp.srcport", "x509sat.printableString", "x509sat.uTF8String"],
    )
    assert any("client" in "".join(row[1:]).lower() for row in rows)
