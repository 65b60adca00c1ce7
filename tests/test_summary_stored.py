"""Issue 16 items 4-5: `helloscope summary` reads what helloscope writes, and answers by server name and address."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helloscope.sniffer.run.cli import cli

from tests.helpers import PCAPS, REPO, analyze

FIXTURES = sorted(PCAPS.glob("*.pcap"))
STATS = {
    "@timestamp": "2026-12-01T00:00:00Z",
    "event": {"kind": "metric", "module": "helloscope", "dataset": "helloscope.stats"},
    "helloscope": {"stats": {"packets": 120, "tls_connections": 3, "kernel_dropped": 2}},
}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return analyze(*FIXTURES)


def _lines(events: list[dict]) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def _summary(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """A real process: stdin, stderr and the exit status as a user gets them."""
    done = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "summary", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def _doc(*args: str, stdin: bytes | None = None) -> dict:
    done = _summary("--json", *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_live_log_ending_with_its_stats_event_is_read(tmp_path: Path, events: list[dict]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(_lines(events) + json.dumps(STATS) + "\n")
    doc = _doc(str(path))
    assert doc["connections"] == len(events)
    assert doc["run_statistics"] == STATS["helloscope"]["stats"]
    tables = _summary(str(path))
    assert tables.returncode == 0 and "Run statistics" in tables.stdout and "kernel dropped" in tables.stdout


def test_events_trimmed_with_fields_are_summarised_and_what_is_missing_is_said(tmp_path: Path) -> None:
    trimmed = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "--fields", "source.ip,helloscope.outcome"]
        + [str(path) for path in FIXTURES],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    path = tmp_path / "trimmed.jsonl"
    path.write_text(trimmed)
    done = _summary("--json", str(path))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    count = len(trimmed.splitlines())
    assert doc["connections"] == count and sum(doc["outcomes"].values()) == count
    assert sum(group["connections"] for group in doc["by_client"].values()) == count
    assert doc["missing_fields"]["helloscope.request_mtls"] == count
    assert "source.ip" not in doc["missing_fields"]
    (warning,) = done.stderr.splitlines()
    assert "helloscope.request_mtls" in warning and "helloscope.flag_outcome" in warning


def test_several_files_globs_compressed_logs_and_stdin_add_up(tmp_path: Path, events: list[dict]) -> None:
    text = _lines(events).encode()
    (tmp_path / "events.jsonl").write_bytes(text)
    (tmp_path / "events.jsonl.1.gz").write_bytes(gzip.compress(text))
    (tmp_path / "events.jsonl.2.xz").write_bytes(lzma.compress(text))
    (tmp_path / "events.jsonl.3.bz2").write_bytes(bz2.compress(text))
    files = 4
    try:
        import zstandard

        (tmp_path / "events.jsonl.4.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
        files += 1
    except ImportError:
        pass
    # Quoted, so helloscope expands the glob itself (as from a service's ExecStart, without a shell).
    assert _doc(str(tmp_path / "events.jsonl*"))["connections"] == files * len(events)
    assert _doc(str(tmp_path / "events.jsonl"), "-", stdin=gzip.compress(text))["connections"] == 2 * len(events)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ((PCAPS / "tls12-noauth.pcap").read_bytes(), "a capture file, not JSON lines"),
        (gzip.compress((PCAPS / "tls12-noauth.pcap").read_bytes()), "a capture file, not JSON lines"),
        (b"\xff\xfe\x00garbage\n", "not UTF-8"),
        (b"[" * 200_000 + b"\n", "nested too deeply"),
        (b'{"source": {"ip": ' + b"9" * 5000 + b"}}\n", "not JSON"),
        (b'{"source": {"ip": "192.0.2.1"}, "helloscope": {"request_mtls": "yes"}}\n', "request_mtls is a string"),
        (b'{"source": {"ip": "192.0.2.1"}, "destination": {"ip": "192.0.2.2", "port": 1e999}}\n', "port is a number"),
        (b'{"source": {"ip": ["192.0.2.1"]}}\n', "source.ip is a list"),
        (b'{"event": {"dataset": "helloscope.stats"}, "helloscope": {"stats": {"packets": "many"}}}\n', "counts"),
        (b"[]\n", "a list, not a JSON object"),
        (b"\x1f\x8b\x08\x00broken", "cannot read"),
    ],
    ids=["pcap", "gzipped-pcap", "binary", "deep", "huge-int", "bool-type", "inf", "list", "stats", "array", "bad-gz"],
)
def test_what_is_not_helloscope_json_lines_is_one_line_and_exit_2(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    done = _summary(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"helloscope: error: {path}") and message in line, line


def test_servers_are_keyed_by_name_and_address_so_no_connection_vanishes(events: list[dict]) -> None:
    without_sni = [json.loads(json.dumps(event)) for event in events[:5]]
    for event in without_sni:
        event["tls"]["client"]["server_name"] = None
    stored = _lines(events + without_sni).encode()
    doc = _doc("-", stdin=stored)
    assert sum(server["connections"] for server in doc["by_server"]) == len(events) + 5
    nameless = [server for server in doc["by_server"] if server["server_name"] is None]
    assert sum(server["connections"] for server in nameless) == 5
    assert all(server["address"].startswith("127.0.0.1:") for server in nameless)
    tables = _summary("-", stdin=stored)
    assert "(no SNI)" in tables.stdout


def test_clients_are_listed_as_advertising_the_flag_only_if_they_do(events: list[dict]) -> None:
    unflagged = [event for event in events if not event["helloscope"]["request_mtls"]]
    tables = _summary("-", stdin=_lines(unflagged).encode())
    assert tables.returncode == 0
    assert "Clients advertising request-mTLS" not in tables.stdout
    assert f"No client advertises request-mTLS (0 of {len(unflagged)} connections)" in tables.stdout
    flagged = _summary("-", stdin=_lines(events).encode()).stdout
    assert "Clients advertising request-mTLS" in flagged


def test_top_n_and_the_flag_answers_per_server(events: list[dict]) -> None:
    stored = _lines(events).encode()
    doc = _doc("--top", "3", "-", stdin=stored)
    assert len(doc["by_server"]) == 3 and len(doc["by_ja4"]) <= 3
    everything = _doc("-", stdin=stored)
    for server in everything["by_server"]:
        answers = server["flag_outcomes"]
        mine = [
            e
            for e in events
            if e["tls"]["client"]["server_name"] == server["server_name"]
            and f"{e['destination']['ip']}:{e['destination']['port']}" == server["address"]
        ]
        for answer in ("honored", "ignored", "unsolicited", "unknown"):
            assert answers.get(answer, 0) == sum(e["helloscope"]["flag_outcome"] == answer for e in mine)
    tables = _summary("--top", "2", "-", stdin=stored).stdout
    assert "By server (name and address), top 2 of" in tables
    assert "honored" in tables and "ignored" in tables and "unsolicited" in tables and "unknown" in tables


def test_a_missing_file_or_a_glob_that_matches_nothing_is_exit_2(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.jsonl", tmp_path / "absent*.jsonl"):
        result = CliRunner().invoke(cli, ["summary", str(path)])
        assert result.exit_code == 2 and "Traceback" not in result.output
