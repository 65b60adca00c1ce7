"""The command line as a user meets it: exit codes, one-line errors, streams, formats, damaged input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helloscope.sniffer.run.cli import cli

from tests.helpers import PCAPS, REPO, field, without_capture

FIXTURE = PCAPS / "tls12-required-missing.pcap"
# The fields later tools rely on (issue #2's fixed contract), with the JSON types they may take.
CONTRACT = {
    "source.ip": (str,),
    "source.port": (int,),
    "destination.ip": (str,),
    "destination.port": (int,),
    "network.transport": (str,),
    "tls.version": (str, type(None)),
    "tls.client.server_name": (str, type(None)),
    "helloscope.request_mtls": (bool,),
    "helloscope.tls_flags.flags": (list,),
    "helloscope.tls_flags.codepoint": (int, type(None)),
    "helloscope.certificate_request.seen": (bool, type(None)),
    "helloscope.certificate_request.evidence": (str,),
    "helloscope.client_certificate.state": (str, type(None)),
    "helloscope.alerts": (list,),
    "helloscope.outcome": (str,),
    "helloscope.flag_outcome": (str,),
}
OUTCOMES = {"incomplete", "rejected", "authenticated", "declined", "not_requested", "failed", "unknown"}
FLAG_OUTCOMES = {"honored", "ignored", "unsolicited", "none", "unknown"}
EVIDENCE = {"plaintext", "decrypted", "inferred", "unknown"}


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def events_of(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_every_event_honours_the_output_contract():
    result = run("analyze", "-q", *map(str, sorted(PCAPS.glob("*.pcap"))))
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    expected = sum(len(json.loads(path.read_text())["connections"]) for path in PCAPS.glob("*.expected.json"))
    assert len(events) == expected
    for event in events:
        for path, types in CONTRACT.items():
            assert isinstance(field(event, path), types), path
        scope = event["helloscope"]
        assert scope["outcome"] in OUTCOMES and scope["flag_outcome"] in FLAG_OUTCOMES
        assert scope["certificate_request"]["evidence"] in EVIDENCE
        for alert in scope["alerts"]:
            assert alert["sender"] in {"client", "server"} and alert["evidence"] in EVIDENCE


@pytest.mark.parametrize(
    "make_path",
    [
        lambda tmp: tmp / "missing.pcap",
        lambda tmp: tmp,
        lambda tmp: (tmp / "notes.txt").write_text("not a capture\n") and tmp / "notes.txt",
        lambda tmp: (tmp / "empty.pcap").write_bytes(b"") or tmp / "empty.pcap",
    ],
)
def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path, make_path):
    result = run("analyze", str(FIXTURE), str(make_path(tmp_path)))
    assert result.returncode == 2
    assert result.stdout == b""  # refused before any event is written
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helloscope: error: ")
    assert "Traceback" not in result.stderr.decode()


def test_truncated_capture_reports_what_came_before_and_warns_with_the_offset(tmp_path: Path):
    data = (PCAPS / "tls13-noauth.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])
    result = run("analyze", "-q", str(cut))
    assert result.returncode == 0
    (event,) = events_of(result.stdout)
    assert event["tls"]["client"]["server_name"] == "server.helloscope.test"
    warning = result.stderr.decode()
    assert "damaged at byte offset" in warning and "Traceback" not in warning
    assert run("analyze", "-q", "--strict", str(cut)).returncode == 1


def test_stdin_gives_the_same_events_as_the_file():
    from_file = events_of(run("analyze", "-q", str(FIXTURE)).stdout)
    from_stdin = events_of(run("analyze", "-q", "-", stdin=FIXTURE.read_bytes()).stdout)
    assert [without_capture(event) for event in from_stdin] == [without_capture(event) for event in from_file]
    assert len(from_file) == 1 and "log" not in from_stdin[0] and from_file[0]["log"]["file"]["path"] == str(FIXTURE)


def test_output_file_gets_the_events_and_stdout_stays_empty(tmp_path: Path):
    target = tmp_path / "events.jsonl"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["analyze", "-q", "-o", str(target), str(FIXTURE)])
        assert result.exit_code == 0 and result.stdout == ""
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(events) == 2  # appended, never truncated
    assert events[0]["helloscope"]["outcome"] == "rejected"


def test_table_format_shows_connections_and_summary():
    result = CliRunner().invoke(
        cli, ["analyze", "--format", "table", str(FIXTURE), str(PCAPS / "tls13-flag62-honored.pcap")]
    )
    assert result.exit_code == 0
    assert "{" not in result.stdout  # no JSON in table mode
    for text in (
        "rejected",
        "server:handshake_failure",
        "server.helloscope.test",
        "Clients advertising request-mTLS",
    ):
        assert text in result.stdout


def test_port_filter_limits_the_flows_examined():
    spec = json.loads((PCAPS / "tls12-required-missing.expected.json").read_text())
    runner = CliRunner()
    matching = runner.invoke(cli, ["analyze", "-q", "--port", str(spec["server_port"]), str(FIXTURE)])
    other = runner.invoke(cli, ["analyze", "-q", "--port", "1", str(FIXTURE)])
    assert len(matching.stdout.splitlines()) == 1 and other.stdout == ""


def test_summary_goes_to_stderr_with_run_statistics():
    result = run("analyze", str(FIXTURE))
    stderr = result.stderr.decode()
    assert "TLS connections by outcome" in stderr and "Run statistics" in stderr
    assert len(events_of(result.stdout)) == 1


def test_garbage_inside_a_stream_is_an_anomaly_not_a_failure(tmp_path: Path):
    # Overwrite the server's second record header (after the ServerHello) with bytes no TLS record has.
    data = bytearray(FIXTURE.read_bytes())
    hello = data.find(bytes.fromhex("16030300"))
    while data[hello + 5] != 2:  # the ServerHello record, not the ClientHello
        hello = data.find(bytes.fromhex("16030300"), hello + 1)
    following = hello + 5 + int.from_bytes(data[hello + 3 : hello + 5], "big")
    assert data[following : following + 3] == bytes.fromhex("160303")
    data[following : following + 3] = b"\x99\x99\x99"
    damaged = tmp_path / "garbage.pcap"
    damaged.write_bytes(bytes(data))
    result = run("analyze", "-q", str(damaged), str(FIXTURE))
    assert result.returncode == 0
    broken, intact = events_of(result.stdout)
    assert any("record_layer" in anomaly for anomaly in broken["helloscope"]["anomalies"])
    assert intact["helloscope"]["outcome"] == "rejected"
    assert run("analyze", "-q", "--strict", str(damaged)).returncode == 1


def test_output_dash_means_stdout(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "-o", "-", str(FIXTURE)],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp_path,  # where a file named "-" would appear
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0 and len(events_of(result.stdout)) == 1
    assert not (tmp_path / "-").exists()
