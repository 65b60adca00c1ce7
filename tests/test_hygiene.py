"""Client-certificate hygiene findings on the fixtures' real client certificate, varied one fact at a time."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from helloscope.parsers.certs import X509Summary
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.handshake.hygiene import FINDING_CODES, certificate_findings, public_ca_names
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables

from tests.helpers import PCAPS, analyze

NO_CAS: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def client_leaf() -> tuple[X509Summary, float]:
    """The client certificate of tls12-required-presented (readable without keys) and the capture time."""
    reports: list = []
    stats = RunStats()
    table = ConnectionTables(reports.append, stats, Limits())
    feed_capture(open_capture(str(PCAPS / "tls12-required-presented.pcap")), table, stats)
    table.flush()
    (report,) = reports
    return report.conclusion.client_certificate.chain[0], report.start


def test_the_fixture_client_certificate_is_clean(client_leaf: tuple[X509Summary, float]) -> None:
    leaf, at = client_leaf
    assert certificate_findings(leaf, at, NO_CAS) == []


@pytest.mark.parametrize(
    ("change", "codes"),
    [
        (
            {"extended_key_usage": ("serverAuth",), "client_auth": False, "server_auth_only": True},
            ["eku_missing_client_auth", "eku_server_auth_only"],
        ),
        ({"extended_key_usage": ("codeSigning",), "client_auth": False}, ["eku_missing_client_auth"]),
        ({"extended_key_usage": (), "client_auth": None}, []),  # no EKU: any purpose
        ({"sct_count": 2}, ["embedded_scts"]),
        ({"key_bits": 1024}, ["weak_key"]),
        ({"key_type": "ec", "key_bits": 256}, []),
    ],
)
def test_each_fact_gives_its_code(client_leaf: tuple[X509Summary, float], change: dict, codes: list[str]) -> None:
    leaf, at = client_leaf
    assert certificate_findings(dataclasses.replace(leaf, **change), at, NO_CAS) == codes


def test_validity_is_judged_at_capture_time(client_leaf: tuple[X509Summary, float]) -> None:
    leaf, _ = client_leaf
    day = timedelta(days=1)
    assert certificate_findings(leaf, (leaf.not_after + day).timestamp(), NO_CAS) == ["expired"]
    assert certificate_findings(leaf, (leaf.not_before - day).timestamp(), NO_CAS) == ["not_yet_valid"]


def test_issuer_in_the_system_trust_store(client_leaf: tuple[X509Summary, float]) -> None:
    cas = public_ca_names()
    if not cas:
        pytest.skip("no system trust store (.ci/run installs ca-certificates)")
    leaf, at = client_leaf
    public = dataclasses.replace(leaf, issuer=sorted(cas)[0])
    assert certificate_findings(public, at) == ["issuer_public_webpki"]
    assert certificate_findings(leaf, at) == []  # the fixtures' private CA is not in the store
    # A self-signed certificate that copies a public CA's name is not issued by that CA.
    assert certificate_findings(dataclasses.replace(public, self_signed=True), at) == []


def test_findings_are_in_events_with_stable_codes() -> None:
    (event,) = analyze(PCAPS / "tls12-required-presented.pcap")
    findings = event["helloscope"]["client_certificate"]["findings"]
    assert findings == []
    assert set(FINDING_CODES) == {
        "eku_missing_client_auth",
        "eku_server_auth_only",
        "issuer_public_webpki",
        "embedded_scts",
        "expired",
        "not_yet_valid",
        "weak_key",
    }
