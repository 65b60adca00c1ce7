"""Issue 16 items 9 and 10: where each event was read, the ECS certificate fields, and an id that repeats.

The certificates' truth is the test PKI the fixtures were made with (``pcaps/pki``), read here with
cryptography, never with helloscope's own summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helloscope.parsers.x509 import summarize_x509
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.outputs.http import bulk_record
from helloscope.sniffer.report.events import Observer, build_event, to_json_line
from helloscope.sniffer.report.model import ConnectionReport, ServerCertificateFinding
from helloscope.sniffer.run.cli import cli
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.tables import ConnectionTables
from helloscope.sniffer.vocabulary import Evidence

from tests.helpers import PCAPS, analyze, analyze_with_keys

PKI = PCAPS / "pki"


def _pem(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((PKI / name).read_bytes())


def _fingerprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return certificate.fingerprint(algorithm).hex().upper()


def _run(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["analyze", "-q", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# ----- item 9: log.file.path --------------------------------------------------------------------------


def test_every_event_names_the_capture_file_it_came_from(tmp_path: Path) -> None:
    first, second = PCAPS / "tls12-noauth.pcap", PCAPS / "dtls" / "dtls12-openssl-noauth.pcap"
    events = _run(str(first), str(second))
    assert [event["log"]["file"]["path"] for event in events] == [str(first), str(second)]
    # Relative paths are written absolute (ECS: full path), whatever the working directory.
    copy = tmp_path / "copy.pcap"
    shutil.copyfile(first, copy)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        (event,) = _run("copy.pcap")
    assert event["log"]["file"]["path"] == str(copy)


def test_workers_name_the_files_too() -> None:
    captures = [PCAPS / "tls12-noauth.pcap", PCAPS / "tls13-noauth.pcap", PCAPS / "quic-flag-honored.pcap"]
    events = _run("--workers", "2", *map(str, captures))
    assert sorted(event["log"]["file"]["path"] for event in events) == sorted(map(str, captures))


def test_standard_input_names_no_file() -> None:
    data = (PCAPS / "tls12-noauth.pcap").read_bytes()
    result = CliRunner().invoke(cli, ["analyze", "-q", "--format", "json", "-"], input=data)
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert "log" not in event and event["source"]["ip"]


# ----- item 10: the server's certificate --------------------------------------------------------------


def _assert_is_the_server_certificate(
    event: dict, evidence: str, chain: tuple[str, ...] = ("server.pem", "ca.pem")
) -> None:
    server, ca = _pem("server.pem"), _pem("ca.pem")
    tls = event["tls"]["server"]
    assert tls["hash"] == {"sha256": _fingerprint(server, hashes.SHA256()), "sha1": _fingerprint(server, hashes.SHA1())}
    assert tls["subject"] == server.subject.rfc4514_string() == tls["x509"]["subject"]["distinguished_name"]
    assert tls["issuer"] == server.issuer.rfc4514_string() == ca.subject.rfc4514_string()
    assert tls["not_before"] == server.not_valid_before_utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert tls["not_after"] == tls["x509"]["not_after"]
    assert tls["x509"]["subject"]["common_name"] == ["server.helloscope.test"]
    assert tls["x509"]["serial_number"] == format(server.serial_number, "X")
    assert tls["x509"]["alternative_names"] == ["server.helloscope.test"]
    assert (tls["x509"]["version_number"], tls["x509"]["signature_algorithm"]) == ("3", "SHA256-RSA")
    assert (tls["x509"]["public_key_algorithm"], tls["x509"]["public_key_size"]) == ("RSA", 2048)
    certificate = event["helloscope"]["server_certificate"]
    assert certificate == {
        "evidence": evidence,
        "chain_length": len(chain),
        "chain_sha256": [_fingerprint(_pem(name), hashes.SHA256()) for name in chain],
        "unreadable": [],
    }


@pytest.mark.parametrize(
    ("name", "chain"),
    [
        ("tls12-noauth", ("server.pem", "ca.pem")),
        ("tls12-required-presented", ("server.pem", "ca.pem")),
        ("dtls/dtls12-openssl-noauth", ("server.pem", "ca.pem")),
        ("dtls/dtls12-gnutls-noauth", ("server.pem",)),  # gnutls-serv sends the leaf alone
    ],
)
def test_tls12_server_certificate_is_read_in_the_clear(name: str, chain: tuple[str, ...]) -> None:
    (event,) = analyze(PCAPS / f"{name}.pcap")
    _assert_is_the_server_certificate(event, "plaintext", chain)


@pytest.mark.parametrize(
    ("name", "chain"),
    [
        ("tls13-noauth", ("server.pem", "ca.pem")),
        ("tls13-required-presented", ("server.pem", "ca.pem")),
        ("quic-mtls-authenticated", ("server.pem",)),  # aioquic's server sends the leaf alone
    ],
)
def test_tls13_server_certificate_needs_the_keys(name: str, chain: tuple[str, ...]) -> None:
    (plain,) = analyze(PCAPS / f"{name}.pcap")
    assert "hash" not in plain["tls"]["server"] and plain["helloscope"]["server_certificate"] is None
    (decrypted,) = analyze_with_keys(PCAPS / f"{name}.pcap")
    _assert_is_the_server_certificate(decrypted, "decrypted", chain)


def test_resumed_connections_show_no_server_certificate() -> None:
    for event in analyze_with_keys(PCAPS / "tls13-resumed-psk.pcap"):
        if event["tls"]["resumed"]:
            assert event["helloscope"]["server_certificate"] is None


def test_client_certificate_carries_the_same_ecs_fields() -> None:
    client = _pem("client.pem")
    (event,) = analyze(PCAPS / "tls12-required-presented.pcap")
    tls = event["tls"]["client"]
    assert tls["hash"] == {"sha256": _fingerprint(client, hashes.SHA256()), "sha1": _fingerprint(client, hashes.SHA1())}
    assert tls["subject"] == client.subject.rfc4514_string() and tls["issuer"] == client.issuer.rfc4514_string()
    assert tls["x509"]["subject"]["common_name"] == ["client.helloscope.test"]
    assert tls["x509"]["issuer"]["common_name"] == ["helloscope test CA"]
    assert (tls["x509"]["version_number"], tls["x509"]["public_key_algorithm"]) == ("3", "RSA")
    assert event["helloscope"]["client_certificate"]["chain"][0]["sha256"] == tls["hash"]["sha256"]


def test_destination_domain_and_bytes() -> None:
    (event,) = analyze(PCAPS / "tls12-noauth.pcap")
    assert event["destination"]["domain"] == event["tls"]["client"]["server_name"] == "server.helloscope.test"
    tcp = event["helloscope"]["tcp"]
    assert (event["source"]["bytes"], event["destination"]["bytes"]) == (tcp["client_bytes"], tcp["server_bytes"])
    assert tcp["client_bytes"] > 0 and tcp["server_bytes"] > tcp["client_bytes"]  # the server sent certificates
    (quic,) = analyze(PCAPS / "quic-flag-honored.pcap")
    assert "bytes" not in quic["source"]  # QUIC and DTLS summaries count datagrams, not bytes


def _hashes(value: object, key: str = "") -> list[str]:
    if isinstance(value, dict):
        return [found for name, child in value.items() for found in _hashes(child, name)]
    if isinstance(value, list):
        return [found for child in value for found in _hashes(child, key)]
    return [value] if key in {"sha256", "sha1", "chain_sha256"} and isinstance(value, str) else []


def test_every_certificate_hash_is_upper_case() -> None:
    events = [*analyze_with_keys(PCAPS / "tls13-required-presented.pcap"), *analyze(PCAPS / "tls12-untrusted.pcap")]
    found = [value for event in events for value in _hashes(event)]
    assert len(found) >= 10
    assert all(re.fullmatch("[0-9A-F]{40}|[0-9A-F]{64}", value) for value in found), found


def _report(name: str) -> ConnectionReport:
    reports: list[ConnectionReport] = []
    stats = RunStats()
    table = ConnectionTables(reports.append, stats)
    with open_capture(str(PCAPS / name)) as reader:
        feed_capture(reader, table, stats)
    table.flush()
    (report,) = reports
    return report


def test_ip_and_email_alternative_names_and_ecs_key_conventions() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.internal")])
    names = [
        x509.DNSName("db.internal"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
        x509.RFC822Name("ops@example.org"),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(_pem("server.pem").not_valid_before_utc)
        .not_valid_after(_pem("server.pem").not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA384())
    )
    leaf = summarize_x509(certificate.public_bytes(serialization.Encoding.DER))
    finding = ServerCertificateFinding(Evidence.PLAINTEXT, (leaf.sha256,), leaf)
    report = dataclasses.replace(_report("tls12-noauth.pcap"), server_certificate=finding)
    x509_fields = build_event(report, Observer("test"))["tls"]["server"]["x509"]
    assert x509_fields["alternative_names"] == ["db.internal", "2001:db8::7", "ops@example.org"]
    assert (x509_fields["public_key_algorithm"], x509_fields["public_key_curve"]) == ("EC", "nistp384")
    assert x509_fields["signature_algorithm"] == "ECDSA-SHA384" and x509_fields["serial_number"] == "ABCDEF"


# ----- item 10: event.id ------------------------------------------------------------------------------


def test_event_id_is_the_same_on_every_run_and_differs_between_connections() -> None:
    captures = sorted(PCAPS.glob("*.pcap"))
    first = [event["event"]["id"] for capture in captures for event in analyze(capture)]
    again = [event["event"]["id"] for capture in captures for event in analyze(capture)]
    assert first == again
    assert len(set(first)) == len(first)
    # The CLI (another observer name, the file path) makes other ids, the same on every run too.
    runs = [
        [event["event"]["id"] for event in _run("--sensor-name", "s1", str(PCAPS / "tls13-noauth.pcap"))] for _ in "ab"
    ]
    assert runs[0] == runs[1] and not set(runs[0]) & set(first)
    (renamed,) = _run("--sensor-name", "s2", str(PCAPS / "tls13-noauth.pcap"))
    assert renamed["event"]["id"] not in runs[0]


def test_bulk_creates_each_event_under_its_id() -> None:
    (event,) = analyze(PCAPS / "tls13-noauth.pcap")
    record = bulk_record("tls-events")
    sent = [record(event, to_json_line(event).rstrip("\n")) for _ in range(2)]  # a batch sent again
    assert sent[0] == sent[1]
    action, document, _ = sent[0].decode().split("\n")
    assert json.loads(action) == {"create": {"_index": "tls-events", "_id": event["event"]["id"]}}
    assert json.loads(document) == event
    # An event without one (the live stats event) leaves the id to Elasticsearch.
    assert json.loads(record({"event": {"kind": "metric"}}, "{}").split(b"\n")[0]) == {
        "create": {"_index": "tls-events"}
    }


def test_event_id_hashes_what_names_the_connection() -> None:
    (event,) = analyze(PCAPS / "tls13-noauth.pcap")
    path = str(PCAPS / "tls13-noauth.pcap")
    identity = "\x00".join(("test", path, event["network"]["community_id"], event["event"]["start"]))
    assert event["event"]["id"] == hashlib.sha256(identity.encode()).hexdigest()[:32]
