"""DTLS with key logs, end to end: the decrypted reports say what tshark decrypts with the same keys.

Every real-peer fixture of pcaps/dtls/ comes with the key log its client wrote. Its expected JSON holds
the alerts tshark reads with that key log (the encrypted close_notify alerts included); whether each
side's Finished was sent is asked of tshark here, with the key log. The outcome follows from those facts
by the TLS rules. OpenSSL's clients write no key log when the server rejects them (the handshake never
completes on their side): those fixtures report ``no_keys`` and the plaintext verdict. The corpus'
illustrated DTLS 1.3 capture (dtls.xargs.org) is the DTLS 1.3 reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helloscope.parsers.dtls import iter_records
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.handshake.decryption import Session
from helloscope.sniffer.handshake.dtls_decryption import DtlsProtectedRecord, decrypt_dtls
from helloscope.sniffer.handshake.settlement import MAX_PROTECTED_BYTES
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.dtls import DtlsTable
from helloscope.sniffer.vocabulary import DecryptionStatus, Sender
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PCAPS, tshark_fields

DTLS = PCAPS / "dtls"
CAPTURES = sorted(DTLS.glob("*.pcap"))
KEYED = [capture for capture in CAPTURES if capture.with_suffix(".keylog").read_text().strip()]
UNKEYED = [capture for capture in CAPTURES if capture not in KEYED]
ILLUSTRATED = "illustrated-dtls/captures"
CERTIFICATE_REJECTIONS = {40, 42, 43, 44, 45, 46, 48, 49}  # what a server answers a refused certificate with
FINISHED = "20"


def keylog_of(text: str) -> KeyLog:
    keys = KeyLog()
    keys.feed(text)
    keys.finish()
    keys.seal()
    return keys


def analyze_with(capture: Path, keylog_text: str) -> list[dict]:
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keylog_of(keylog_text))
    return events


def finished_by_tshark(capture: Path, keylog: Path, server_port: int) -> dict[str, bool]:
    """Which sides tshark sees a (decrypted) Finished from, with the key log."""
    rows = tshark_fields(
        capture, "dtls.handshake.type", ["udp.srcport", "dtls.handshake.type"], "-o", f"tls.keylog_file:{keylog}"
    )
    seen = {"client": False, "server": False}
    for port, kinds in rows:
        if FINISHED in kinds.split(","):
            seen["server" if int(port) == server_port else "client"] = True
    return seen


def expected_outcome(truth: dict, finished: dict[str, bool]) -> str:
    """The TLS rules on tshark's facts: the server's fatal alert, the CertificateRequest, the client's
    certificate, and whether both sides finished."""
    server_fatal = [alert["code"] for alert in truth["alerts"] if alert["sender"] == "server" and alert["level"] == 2]
    if server_fatal:
        flight = truth["certificate_request"] and truth["client_certificate"] != "absent"
        return "rejected" if server_fatal[0] in CERTIFICATE_REJECTIONS and flight else "failed"
    if not truth["certificate_request"]:
        return "not_requested"
    if not all(finished.values()):
        return "unknown"  # the server never finished nor said why (GnuTLS drops a missing certificate)
    return "authenticated" if truth["client_certificate"] == "presented" else "declined"


@pytest.mark.parametrize("capture", KEYED, ids=lambda path: path.stem)
def test_keyed_dtls12_reports_what_tshark_decrypts(capture: Path) -> None:
    expected = json.loads(capture.with_suffix(".expected.json").read_text())
    keylog = capture.with_suffix(".keylog")
    (truth,) = expected["handshakes"]
    (event,) = analyze_with(capture, keylog.read_text())
    scope = event["helloscope"]
    decryption = scope["decryption"]
    assert (decryption["status"], decryption["reason"], decryption["source"]) == ("decrypted", None, "keylog")
    finished = finished_by_tshark(capture, keylog, expected["server_port"])
    assert (decryption["client_finished"], decryption["server_finished"]) == (finished["client"], finished["server"])
    alerts = [(alert["sender"], alert["code"]) for alert in scope["alerts"]]
    assert alerts == [(alert["sender"], alert["code"]) for alert in truth["alerts"]]
    encrypted = [alert for alert in truth["alerts"] if alert not in truth["plaintext_alerts"]]
    assert [alert["evidence"] for alert in scope["alerts"] if alert["evidence"] == "decrypted"] == ["decrypted"] * len(
        encrypted
    )
    assert scope["outcome"] == expected_outcome(truth, finished)
    assert scope["certificate_request"]["seen"] is truth["certificate_request"]


@pytest.mark.parametrize("capture", UNKEYED, ids=lambda path: path.stem)
def test_a_client_rejected_before_it_logged_keys_reports_no_keys(capture: Path) -> None:
    (truth,) = json.loads(capture.with_suffix(".expected.json").read_text())["handshakes"]
    (event,) = analyze_with(capture, "")
    scope = event["helloscope"]
    assert scope["decryption"]["status"] == "no_keys"
    assert [(alert["sender"], alert["code"]) for alert in scope["alerts"]] == [
        (alert["sender"], alert["code"]) for alert in truth["alerts"]
    ]
    assert (scope["outcome"], scope["outcome_evidence"]) == ("rejected", "plaintext")


@pytest.mark.parametrize("capture", KEYED, ids=lambda path: path.stem)
def test_a_wrong_master_secret_gives_decrypt_failed_and_the_plaintext_report(capture: Path) -> None:
    label, client_random, secret = capture.with_suffix(".keylog").read_text().split()
    wrong = f"{label} {client_random} {bytes(48).hex()}\n"
    (keyless,) = analyze_with(capture, "")
    (event,) = analyze_with(capture, wrong)
    scope = event["helloscope"]
    assert scope["decryption"]["status"] == "decrypt_failed"
    assert "does not open" in scope["decryption"]["reason"]
    # Nothing opened: the report is the keyless one (encrypted alerts stay unread).
    for key in ("outcome", "outcome_evidence", "certificate_request", "client_certificate", "flag_outcome"):
        assert scope[key] == keyless["helloscope"][key], key


def test_a_key_log_for_another_connection_is_no_keys() -> None:
    capture = DTLS / "dtls12-openssl-noauth.pcap"
    other = (DTLS / "dtls12-gnutls-noauth.keylog").read_text()
    (event,) = analyze_with(capture, other)
    assert event["helloscope"]["decryption"]["status"] == "no_keys"


def test_both_keys_in_one_log_open_with_the_right_one() -> None:
    """A wrong secret from one source does not hide the right one from another (newest first)."""
    capture = DTLS / "dtls12-openssl-required-presented.pcap"
    right = capture.with_suffix(".keylog").read_text()
    label, client_random, _ = right.split()
    keys = KeyLog()
    keys.feed(right)
    keys.feed(f"{label} {client_random} {bytes(48).hex()}\n", source="pcapng")
    keys.finish()
    keys.seal()
    (event,) = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)[0]
    assert event["helloscope"]["decryption"]["status"] == "decrypted"
    assert event["helloscope"]["decryption"]["source"] == "keylog"
    assert event["helloscope"]["outcome"] == "authenticated"


def test_protected_records_are_kept_within_the_budget() -> None:
    """A keyed DTLS 1.2 association is followed past its Finished until the kept records fill
    MAX_PROTECTED_BYTES; records that do not open (here forged) are skipped, not fatal."""
    capture = DTLS / "dtls12-openssl-noauth.pcap"
    keys = keylog_of(capture.with_suffix(".keylog").read_text())
    reports: list[ConnectionReport] = []
    table = DtlsTable(reports.append, RunStats(), keys=keys)
    segments = []
    with open_capture(str(capture)) as reader:
        for timestamp, linktype, frame in reader:
            segment = decode(linktype, frame)
            assert segment is not None
            segments.append((timestamp, segment))
    client = segments[0][1]
    last = segments[-1][0]
    for timestamp, segment in segments:
        table.datagram(timestamp, segment)
    assert not reports  # followed past both Finished: the key log can read what comes next
    body = bytes(16_000)
    sequence = 100
    while not reports:
        sequence += 1
        record = bytes((23, 0xFE, 0xFD, 0, 1)) + sequence.to_bytes(6, "big") + len(body).to_bytes(2, "big") + body
        table.datagram(last + sequence / 1000, client._replace(payload=record))
        assert sequence < 100 + 2 * MAX_PROTECTED_BYTES // len(body)
    (report,) = reports
    event = build_event(report, Observer("test"))
    decryption = event["helloscope"]["decryption"]
    assert decryption["status"] == "decrypted"
    assert "does not open" in decryption["reason"]
    assert [(alert["sender"], alert["code"]) for alert in event["helloscope"]["alerts"]] == [
        ("client", 0), ("server", 0)
    ]  # fmt: skip


def test_without_keys_nothing_is_kept_or_followed() -> None:
    capture = DTLS / "dtls12-openssl-noauth.pcap"
    reports: list[ConnectionReport] = []
    table = DtlsTable(reports.append, RunStats(), keys=keylog_of(""))
    with open_capture(str(capture)) as reader:
        for timestamp, linktype, frame in reader:
            segment = decode(linktype, frame)
            assert segment is not None
            table.datagram(timestamp, segment)
    (report,) = reports  # settled at both Finished, as before keys existed
    assert report.decryption.status == "no_keys"


# --- DTLS 1.3 ------------------------------------------------------------------------------------


def test_illustrated_dtls13_decrypts(corpus: Path) -> None:
    folder = corpus / ILLUSTRATED
    (event,) = analyze_with(folder / "capture.pcap", (folder / "keylog.txt").read_text())
    scope = event["helloscope"]
    assert event["tls"]["version"] == "1.3"
    decryption = scope["decryption"]
    assert (decryption["status"], decryption["records"], decryption["reason"]) == ("decrypted", 9, None)
    assert decryption["client_finished"] and decryption["server_finished"]
    assert scope["certificate_request"] == {"seen": False, "evidence": "decrypted"}
    assert scope["client_certificate"] == {"state": "absent", "evidence": "decrypted"}
    assert (scope["outcome"], scope["outcome_evidence"]) == ("not_requested", "decrypted")
    assert [(a["sender"], a["description"], a["evidence"]) for a in scope["alerts"]] == [
        ("server", "close_notify", "decrypted")
    ]


def test_illustrated_dtls13_with_a_wrong_key_log_is_decrypt_failed(corpus: Path) -> None:
    folder = corpus / ILLUSTRATED
    lines = [line.split() for line in (folder / "keylog.txt").read_text().splitlines() if line.strip()]
    wrong = "".join(f"{label} {random} {bytes(32).hex()}\n" for label, random, _ in lines)
    (event,) = analyze_with(folder / "capture.pcap", wrong)
    scope = event["helloscope"]
    assert scope["decryption"]["status"] == "decrypt_failed"
    assert scope["certificate_request"]["evidence"] == "decrypt_failed"
    assert scope["outcome"] == "unknown"


def test_wolfssl_dtls13_mutual_auth_from_the_capture_secrets(corpus: Path) -> None:
    """nDPI's dtls.pcap ends with a wolfSSL DTLS 1.3 handshake whose secrets travel in the capture
    (pcapng Decryption Secrets Block): CertificateRequest, the client's certificate (wolfSSL's test
    certificate), both Finished and close_notify both ways, all in epoch 2 and 3 records."""
    capture = corpus / "nDPI/tests/cfgs/default/pcap/dtls.pcap"
    found, _ = analyze_files([open_capture(str(capture))], Observer("test"))  # an open key log: the capture's
    events = [event for event in found if event["tls"].get("version") == "1.3"]
    (event,) = events
    scope = event["helloscope"]
    decryption = scope["decryption"]
    assert (decryption["status"], decryption["source"], decryption["reason"]) == ("decrypted", "pcapng", None)
    assert decryption["client_finished"] and decryption["server_finished"] and decryption["certificate_verify"]
    assert (scope["certificate_request"]["seen"], scope["certificate_request"]["evidence"]) == (True, "decrypted")
    certificate = scope["client_certificate"]
    assert (certificate["state"], certificate["evidence"]) == ("presented", "decrypted")
    assert "O=wolfSSL_2048" in certificate["chain"][0]["subject"]
    assert (scope["outcome"], scope["outcome_evidence"]) == ("authenticated", "decrypted")
    assert [(a["sender"], a["code"], a["evidence"]) for a in scope["alerts"]] == [
        ("server", 0, "decrypted"),
        ("client", 0, "decrypted"),
    ]


_SECRET = (
    "CLIENT_RANDOM "
    + "11" * 32
    + " "
    + "22" * 48
    + "\n"
    + "".join(
        f"{label} {'11' * 32} {'33' * 32}\n"
        for label in (
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        )
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from([0xFEFD, 0xFEFC]),
    suite=st.sampled_from([0xC02F, 0xC030, 0xCCA8, 0x1301, 0x1302, 0x1303, 0x1304, 0x0035]),
    datagrams=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=80)), max_size=8),
)
def test_arbitrary_protected_records_never_crash(version: int, suite: int, datagrams: list) -> None:
    """Whatever is in the kept records (forged, truncated, any suite), the answer is a Decryption."""
    session = Session(bytes.fromhex("11" * 32), bytes(32), suite, version, 0)
    kept = []
    for index, (from_client, body) in enumerate(datagrams):
        epoch = 1 + index % 3
        if version == 0xFEFC:
            header = bytes((0x24 | epoch & 3, index))  # unified header: 8-bit sequence, length
            datagram = header + len(body).to_bytes(2, "big") + body
        else:
            datagram = (
                bytes((23, 0xFE, 0xFD, 0, epoch)) + index.to_bytes(6, "big") + len(body).to_bytes(2, "big") + body
            )
        for record in iter_records(datagram):
            kept.append(DtlsProtectedRecord(Sender.CLIENT if from_client else Sender.SERVER, record, float(index)))
    result = decrypt_dtls(session, kept, keylog_of(_SECRET))
    assert result.status in {
        DecryptionStatus.DECRYPT_FAILED,
        DecryptionStatus.UNSUPPORTED,
        DecryptionStatus.NOT_NEEDED,
    }
