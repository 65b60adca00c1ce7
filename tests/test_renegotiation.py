"""TLS 1.2 renegotiation (item 12 of issue 15), recorded with real OpenSSL peers (pcaps/make_renegotiation_fixtures.py).

The server renegotiates after the first handshake and only then requests a client certificate. Without
keys the record headers show the renegotiation but not what it held: the report must not claim the
first handshake's "no CertificateRequest" as the connection's answer. With keys, the renegotiation is
read, and the records after it open with the new master secret (logged under its own client random).
"""

from __future__ import annotations

import json

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.pipeline import analyze_files

from tests.helpers import ENCRYPTED_SERVER_ALERT, PCAPS, analyze, assert_schema_valid

NAMES = ["tls12-renegotiation-authenticated", "tls12-renegotiation-declined", "tls12-renegotiation-rejected"]


def _truth(name: str) -> dict:
    (connection,) = json.loads((PCAPS / f"{name}.expected.json").read_text())["connections"]
    return connection["truth"]


def _with_keys(name: str) -> dict:
    keys = KeyLog()
    keys.feed((PCAPS / f"{name}.keylog").read_text())
    keys.finish()
    events, _ = analyze_files([open_capture(str(PCAPS / f"{name}.pcap"))], Observer("test"), keys=keys)
    (event,) = events
    return event


@pytest.mark.parametrize("name", NAMES)
def test_without_keys_a_renegotiation_leaves_the_certificate_request_unknown(name: str) -> None:
    (event,) = analyze(PCAPS / f"{name}.pcap")
    scope = event["helloscope"]
    assert event["tls"]["established"] is True  # the first handshake finished, in the clear
    assert scope["certificate_request"] == {"seen": None, "evidence": "unknown"}
    assert scope["client_certificate"] == {"state": None, "evidence": "unknown"}
    assert (scope["outcome"], scope["outcome_evidence"], event["event"]["outcome"]) == ("unknown", "unknown", "unknown")
    assert scope["flag_outcome"] == "unknown"
    assert scope["renegotiation"] is True
    assert_schema_valid([event], name)


def test_without_keys_the_alert_that_ends_a_renegotiation_is_listed() -> None:
    (event,) = analyze(PCAPS / "tls12-renegotiation-rejected.pcap")
    assert event["helloscope"]["alerts"] == [ENCRYPTED_SERVER_ALERT]


@pytest.mark.parametrize("name", NAMES)
def test_with_keys_the_renegotiation_gives_the_answer(name: str) -> None:
    truth, event = _truth(name), _with_keys(name)
    scope = event["helloscope"]
    assert (scope["certificate_request"]["seen"], scope["certificate_request"]["evidence"]) == (True, "decrypted")
    assert scope["certificate_request"]["certificate_authorities"] == ["CN=helloscope test CA,O=helloscope test"]
    assert (scope["client_certificate"]["state"], scope["client_certificate"]["evidence"]) == (
        truth["client_certificate"],
        "decrypted",
    )
    fatal = [alert["code"] for alert in scope["alerts"] if alert["sender"] == "server" and alert["level"] == "fatal"]
    assert fatal == ([truth["server_alert"]] if truth["server_alert"] is not None else [])
    assert (scope["outcome"], scope["outcome_evidence"]) == (truth["outcome"], "decrypted")
    assert scope["decryption"]["reason"] is None or "renegotiated" in scope["decryption"]["reason"]
    assert scope["renegotiation"] is True
    assert scope["decryption"]["source"] == "keylog"
    assert_schema_valid([event], name)


@pytest.mark.parametrize("name", ["tls12-renegotiation-authenticated", "tls12-renegotiation-declined"])
def test_records_after_a_renegotiation_open_with_its_keys(name: str) -> None:
    scope = _with_keys(name)["helloscope"]
    decryption = scope["decryption"]
    assert decryption["status"] == "decrypted" and decryption["reason"] is None
    # Both close_notify alerts travel under the renegotiated keys.
    assert [(alert["sender"], alert["description"], alert["evidence"]) for alert in scope["alerts"]] == [
        ("client", "close_notify", "decrypted"),
        ("server", "close_notify", "decrypted"),
    ]


def test_a_renegotiation_without_its_master_secret_says_so() -> None:
    # The server rejected the certificate before logging the renegotiation's master secret.
    decryption = _with_keys("tls12-renegotiation-rejected")["helloscope"]["decryption"]
    assert decryption["status"] == "decrypted"
    assert decryption["reason"] == "client renegotiated: no master secret logged for its ClientHello.random"
