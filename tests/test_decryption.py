"""TLS 1.3 and 1.2 with key logs: the decrypted reports equal what tshark decrypts with the same keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.pipeline import analyze_files

from tests.helpers import PCAPS, tshark_fields

KEYED_FIXTURES = sorted(path for path in PCAPS.glob("tls13-*.expected.json") if Path(str(path)).exists())


def analyze_with_keys(capture: Path, *keylogs: Path) -> list[dict]:
    keys = KeyLog()
    for keylog in keylogs:
        keys.feed(keylog.read_text())
        keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    return events


def _keylog_for(expectation: Path) -> Path:
    return PCAPS / json.loads(expectation.read_text())["keylog"]


@pytest.mark.parametrize("expectation", KEYED_FIXTURES, ids=lambda path: path.name.removesuffix(".expected.json"))
def test_decrypted_tls13_reports_equal_the_truth(expectation: Path):
    spec = json.loads(expectation.read_text())
    capture = expectation.with_name(expectation.name.removesuffix(".expected.json") + ".pcap")
    events = analyze_with_keys(capture, PCAPS / spec["keylog"])
    assert len(events) == len(spec["connections"])
    for event, connection in zip(events, spec["connections"], strict=True):
        truth, scope = connection["truth"], event["helloscope"]
        assert scope["decryption"]["status"] == "decrypted"
        assert scope["certificate_request"] == {
            **scope["certificate_request"],
            "seen": truth["certificate_request"],
            "evidence": "decrypted",
        }
        assert (scope["client_certificate"]["state"], scope["client_certificate"]["evidence"]) == (
            truth["client_certificate"],
            "decrypted",
        )
        server_alerts = [
            alert["code"] for alert in scope["alerts"] if alert["sender"] == "server" and alert["level"] == "fatal"
        ]
        assert server_alerts == ([truth["server_alert"]] if truth["server_alert"] is not None else [])
        assert (scope["outcome"], scope["flag_outcome"]) == (truth["outcome"], truth["flag_outcome"])
        assert scope["outcome_evidence"] == "decrypted"


@pytest.mark.parametrize(
    "name", ["tls13-required-missing", "tls13-untrusted", "tls13-flag62-honored", "client-abort-gnutls"]
)
def test_decrypted_messages_match_tshark_with_the_same_key_log(name: str):
    capture, keylog = PCAPS / f"{name}.pcap", PCAPS / f"{name}.keylog"
    (event,) = analyze_with_keys(capture, keylog)
    keyed = ("-o", f"tls.keylog_file:{keylog}")
    requests = tshark_fields(capture, "tls.handshake.type == 13", ["frame.number"], *keyed)
    alerts = tshark_fields(capture, "tls.alert_message.desc", ["tls.alert_message.desc"], *keyed)
    assert event["helloscope"]["certificate_request"]["seen"] is bool(requests)
    codes = [alert["code"] for alert in event["helloscope"]["alerts"]]
    assert codes == [int(code) for row in alerts for code in row[0].split(",")]


def test_certificate_request_details_are_read_when_decrypted():
    (event,) = analyze_with_keys(PCAPS / "tls13-flag62-honored.pcap", PCAPS / "tls13-flag62-honored.keylog")
    request = event["helloscope"]["certificate_request"]
    assert request["signature_algorithms"] and request["certificate_authorities"]
    assert request["echoes_request_mtls"] is False  # OpenSSL does not echo the flag
    leaf = event["helloscope"]["client_certificate"]["chain"][0]
    assert leaf["client_auth"] is True and "client" in leaf["subject"]


def test_a_wrong_secret_says_decrypt_failed_and_the_run_goes_on(tmp_path: Path):
    keylog = tmp_path / "wrong.keylog"
    lines = []
    for line in (PCAPS / "tls13-required-missing.keylog").read_text().splitlines():
        label, random, secret = (line.split() + ["", "", ""])[:3]
        if label.endswith("SECRET") or label.endswith("SECRET_0"):
            secret = ("0" if secret[0] != "0" else "1") + secret[1:]  # one nibble off
        lines.append(" ".join((label, random, secret)) if secret else line)
    keylog.write_text("\n".join(lines) + "\n")
    events = analyze_with_keys(PCAPS / "tls13-required-missing.pcap", keylog)
    (event,) = events
    scope = event["helloscope"]
    assert scope["decryption"]["status"] == "decrypt_failed"
    assert scope["certificate_request"] == {"seen": None, "evidence": "decrypt_failed"}
    assert scope["outcome"] == "unknown" and scope["outcome_evidence"] == "decrypt_failed"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unusable_key_logs_exit_2_with_one_line(tmp_path: Path):
    garbage = tmp_path / "garbage.keylog"
    garbage.write_text("this is not\na key log\n")
    for keylog in (tmp_path / "missing.keylog", garbage):
        result = run_cli("--keylog", str(keylog), str(PCAPS / "tls13-noauth.pcap"))
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_secrets_are_never_printed():
    keylog = PCAPS / "tls13-required-presented.keylog"
    secrets = [line.split()[2] for line in keylog.read_text().splitlines() if line and not line.startswith("#")]
    result = run_cli("--keylog", str(keylog), "--format", "table", str(PCAPS / "tls13-required-presented.pcap"))
    json_run = run_cli("--keylog", str(keylog), str(PCAPS / "tls13-required-presented.pcap"))
    assert result.returncode == 0 and json_run.returncode == 0
    output = (result.stdout + result.stderr + json_run.stdout + json_run.stderr).lower()
    assert secrets and not any(secret.lower() in output for secret in secrets)


def test_secrets_embedded_in_pcapng_are_used(tmp_path: Path):
    if shutil.which("editcap") is None:
        pytest.skip("editcap (wireshark-common) is not installed")
    name = "tls13-untrusted"
    embedded = tmp_path / f"{name}.pcapng"
    subprocess.run(
        ["editcap", "--inject-secrets", f"tls,{PCAPS / f'{name}.keylog'}", str(PCAPS / f"{name}.pcap"), str(embedded)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (event,) = analyze_with_keys(embedded)
    assert event["helloscope"]["decryption"]["status"] == "decrypted"
    assert event["helloscope"]["outcome"] == "rejected"
    assert [alert["description"] for alert in event["helloscope"]["alerts"]] == ["unknown_ca"]


def test_corpus_captures_with_embedded_secrets_decrypt(corpus: Path):
    events = analyze_with_keys(corpus / "ja4/pcap/http2-with-cookies.pcapng")
    assert events and all(event["helloscope"]["decryption"]["status"] == "decrypted" for event in events)
    assert all(event["helloscope"]["certificate_request"]["evidence"] == "decrypted" for event in events)


def test_corpus_tls13_with_key_log_matches_tshark(corpus: Path):
    capture, keylog = corpus / "mercury/test/data/test_decrypt.pcap", corpus / "mercury/test/data/sslkeylogfile.log"
    events = analyze_with_keys(capture, keylog)
    tls13 = [event for event in events if event["tls"]["version"] == "1.3"]
    assert len(tls13) >= 10
    requests = tshark_fields(capture, "tls.handshake.type == 13", ["tcp.dstport"], "-o", f"tls.keylog_file:{keylog}")
    requested_ports = {int(row[0]) for row in requests}
    for event in tls13:
        scope = event["helloscope"]
        assert scope["decryption"]["status"] == "decrypted"
        assert scope["certificate_request"]["seen"] is (event["source"]["port"] in requested_ports)


@pytest.mark.parametrize("name", ["tls12-noauth", "tls12-optional-missing", "tls12-required-presented"])
def test_tls12_alerts_after_change_cipher_spec_are_decrypted(name: str):
    capture, keylog = PCAPS / f"{name}.pcap", PCAPS / f"{name}.keylog"
    (plain,) = analyze_with_keys(capture)
    (keyed,) = analyze_with_keys(capture, keylog)
    assert keyed["helloscope"]["decryption"]["status"] == "decrypted"
    assert plain["helloscope"]["decryption"]["status"] == "no_keys"
    opened = [alert for alert in keyed["helloscope"]["alerts"] if alert["evidence"] == "decrypted"]
    assert opened and all(alert["code"] is not None for alert in opened)
    expected = tshark_fields(
        capture, "tls.alert_message.desc", ["tls.alert_message.desc"], "-o", f"tls.keylog_file:{keylog}"
    )
    assert [alert["code"] for alert in keyed["helloscope"]["alerts"]] == [int(row[0]) for row in expected]
    # The plaintext conclusions are unchanged by decryption in TLS 1.2.
    assert keyed["helloscope"]["outcome"] == plain["helloscope"]["outcome"]


def test_tls12_stream_ciphers_are_reported_unsupported(corpus: Path):
    folder = corpus / "wireshark-notes/tls/works"
    events = analyze_with_keys(folder / "dump.pcapng", folder / "premaster.txt")
    assert events and {event["helloscope"]["decryption"]["status"] for event in events} == {"unsupported"}


@pytest.mark.parametrize("name", ["tls13-flag62-honored", "tls13-optional-missing", "tls13-required-presented"])
def test_decrypted_handshake_details_match_tshark(name: str):
    capture, keylog = PCAPS / f"{name}.pcap", PCAPS / f"{name}.keylog"
    (event,) = analyze_with_keys(capture, keylog)
    details = event["helloscope"]["decryption"]
    keyed = ("-o", f"tls.keylog_file:{keylog}")
    tickets = tshark_fields(capture, "tls.handshake.type == 4", ["tls.handshake.type"], *keyed)
    verifies = tshark_fields(capture, "tls.handshake.type == 15", ["tcp.srcport"], *keyed)
    client_port = event["source"]["port"]
    assert details["new_session_tickets"] == sum(row[0].split(",").count("4") for row in tickets)
    assert details["certificate_verify"] is any(int(row[0]) == client_port for row in verifies)
    assert details["client_finished"] and details["server_finished"]


CLIENT_ABORT = "client-abort-gnutls"  # s_client refuses gnutls-serv's certificate: pcaps/README.md


def test_after_the_clients_fatal_alert_the_servers_encrypted_answer_is_read_with_keys():
    capture, keylog = PCAPS / f"{CLIENT_ABORT}.pcap", PCAPS / f"{CLIENT_ABORT}.keylog"
    (truth,) = (
        connection["truth"]
        for connection in json.loads(capture.with_suffix(".expected.json").read_text())["connections"]
    )
    (event,) = analyze_with_keys(capture, keylog)
    scope = event["helloscope"]
    # The client's plaintext unknown_ca, then the server's bad_record_mac, which comes after tickets the
    # server had queued: waiting for the server's next record only would have read a ticket.
    assert [(alert["sender"], alert["code"], alert["evidence"]) for alert in scope["alerts"]] == [
        ("client", 48, "plaintext"),
        ("server", truth["server_alert"], "decrypted"),
    ]
    assert (scope["outcome"], scope["outcome_evidence"]) == (truth["outcome"], "plaintext")
    assert scope["certificate_request"] == {"seen": truth["certificate_request"], "evidence": "decrypted"}
    tickets = tshark_fields(
        capture, "tls.handshake.type == 4", ["tls.handshake.type"], "-o", f"tls.keylog_file:{keylog}"
    )
    assert scope["decryption"]["new_session_tickets"] == sum(row[0].split(",").count("4") for row in tickets) == 2
    assert scope["end_reason"] == "closed"  # followed until the teardown, not settled at the client's alert


def test_without_keys_for_it_the_aborted_connection_settles_at_the_clients_alert():
    capture = PCAPS / f"{CLIENT_ABORT}.pcap"
    (plain,) = analyze_with_keys(capture)
    # A key log that names other connections only: nothing can read the server's answer here either.
    (unrelated,) = analyze_with_keys(capture, PCAPS / "tls13-untrusted.keylog")
    assert unrelated == plain
    scope = plain["helloscope"]
    assert [(alert["sender"], alert["code"]) for alert in scope["alerts"]] == [("client", 48)]
    assert scope["outcome"] == "failed" and scope["decryption"]["status"] == "no_keys"
    assert scope["end_reason"] == "handshake_settled"
