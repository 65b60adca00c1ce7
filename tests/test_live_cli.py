"""Command-line pieces ``live`` shares with ``analyze``: repeatable URL-style outputs, and SIGTERM.

``analyze`` stops on SIGTERM as on SIGINT: connections still open are reported and the outputs closed.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from helloscope.sniffer.capture.decode import decode

from tests.helpers import PCAPS, REPO

CLI = [sys.executable, "-m", "helloscope.sniffer"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
FIN_OR_RST = 0x05


def pcap_records(path: Path) -> tuple[bytes, list[bytes]]:
    """A classic little-endian pcap's file header and its records (header and frame), unchanged."""
    data = path.read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1")
    records, offset = [], 24
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        records.append(data[offset : offset + 16 + length])
        offset += 16 + length
    return data[:24], records


def test_analyze_on_sigterm_reports_the_open_connection_and_exits_143(tmp_path: Path):
    header, unfinished = pcap_records(PCAPS / "tls13-required-missing.pcap")
    _, complete = pcap_records(PCAPS / "tls12-noauth.pcap")
    # The first connection up to its teardown (so it stays open), then a whole second one: once the
    # second is reported, the first one's packets have been read.
    teardown = next(
        index
        for index, record in enumerate(unfinished)
        if (segment := decode(1, record[16:])) is not None and segment.flags & FIN_OR_RST
    )
    events_path = tmp_path / "events.jsonl"
    analyze = subprocess.Popen(
        [*CLI, "analyze", "-q", "-o", f"file:{events_path}", "-"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert analyze.stdin is not None
        analyze.stdin.write(header + b"".join(unfinished[:teardown]) + b"".join(complete))
        analyze.stdin.flush()  # and keep the pipe open: analyze waits for more
        deadline = time.monotonic() + 30
        while not events_path.exists() or not events_path.read_text():
            assert time.monotonic() < deadline and analyze.poll() is None
            time.sleep(0.05)
        analyze.send_signal(signal.SIGTERM)
        _, stderr = analyze.communicate(timeout=30)
    finally:
        if analyze.poll() is None:
            analyze.kill()
            analyze.wait()
    assert analyze.returncode == 128 + signal.SIGTERM and b"Traceback" not in stderr
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [event["destination"]["port"] for event in events] == [47401, 47413]
    assert events[1]["helloscope"]["end_reason"] == "capture_end"


def test_several_outputs_get_every_event_and_a_bad_one_is_refused_before_any_is_written(tmp_path: Path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    fixture = str(PCAPS / "tls13-flag62-honored.pcap")
    result = subprocess.run(
        [*CLI, "analyze", "-q", "-o", f"file:{first}", "-o", str(second), "-o", "-", fixture],
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1 and first.read_text().splitlines() == second.read_text().splitlines() == lines
    assert json.loads(lines[0])["helloscope"]["flag_outcome"] == "honored"

    refused = subprocess.run(
        [*CLI, "analyze", "-q", "-o", str(tmp_path / "c.jsonl"), "-o", "gopher://example.invalid/", fixture],
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert refused.returncode == 2 and refused.stdout == b""
    assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith(b"helloscope: error: ")
    unused = tmp_path / "c.jsonl"
    assert not unused.exists() or unused.read_text() == ""
