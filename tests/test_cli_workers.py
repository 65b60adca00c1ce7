"""``analyze --workers N`` and the progress bar, as a user meets them on the command line.

The worker machinery itself (flow split, signals, failures) is tested in tests/test_parallel.py; here:
the command gives the same events and counters with workers as without, says when it cannot split,
keeps the outputs working, and draws the bar only on a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PCAPS, without_capture

FIXTURES = sorted(str(path) for path in PCAPS.glob("*.pcap"))
LARGEST = max(FIXTURES, key=os.path.getsize)


def analyze(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", *args],
        input=None if stdin is None else stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=120,
        check=False,
    )


def event_set(stdout: str) -> list[str]:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in stdout.splitlines())


def summary_json(path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "summary", "--json", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("workers", ["2", "3"])
def test_workers_give_the_same_events_as_one_process_for_many_files_and_for_one(workers: str):
    for captures in (FIXTURES, [LARGEST]):  # whole files shared out; one file split by flow
        one = analyze("-q", *captures)
        many = analyze("-q", "--workers", workers, *captures)
        assert one.returncode == many.returncode == 0, many.stderr
        assert event_set(many.stdout) == event_set(one.stdout) and one.stdout


def test_workers_write_every_output_and_the_same_run_statistics(tmp_path: Path):
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    single = analyze("--format", "table", "-o", str(one), *FIXTURES)
    split = analyze("--format", "table", "--workers", "2", "-o", str(many), "-o", f"file:{many}.copy", *FIXTURES)
    assert single.returncode == split.returncode == 0, split.stderr
    assert event_set(many.read_text()) == event_set(one.read_text()) == event_set(Path(f"{many}.copy").read_text())
    assert summary_json(many) == summary_json(one)
    statistics = single.stdout[single.stdout.index("Run statistics") :]
    assert statistics == split.stdout[split.stdout.index("Run statistics") :]  # counters summed over workers


def test_json_output_made_by_the_workers_keeps_field_selection_and_the_summary():
    """With JSON output the workers write the lines (fields selected) and count the summary themselves."""
    selected = "source.ip,destination.port,tls.client.ja4,helloscope.outcome,helloscope.flag_outcome"
    for captures in (FIXTURES, [LARGEST]):
        one = analyze("--fields", selected, *captures)
        many = analyze("--fields", selected, "--workers", "2", *captures)
        assert one.returncode == many.returncode == 0, many.stderr
        assert event_set(many.stdout) == event_set(one.stdout)
        assert {frozenset(json.loads(line)) for line in many.stdout.splitlines()} == {
            frozenset({"source", "destination", "tls", "helloscope"})
        }
        assert "TLS connections by outcome" in one.stderr and many.stderr == one.stderr


def test_standard_input_is_read_by_one_worker_with_a_note():
    capture = Path(LARGEST).read_bytes()
    result = analyze("-q", "--workers", "2", "-", stdin=capture)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "helloscope: warning: standard input cannot be split between workers: reading it with one"
    ]
    from_file = [without_capture(json.loads(line)) for line in analyze("-q", LARGEST).stdout.splitlines()]
    from_stdin = [without_capture(json.loads(line)) for line in result.stdout.splitlines()]
    assert sorted(map(json.dumps, from_stdin)) == sorted(map(json.dumps, from_file))


def test_a_bad_output_with_workers_is_one_line_and_exit_2():
    result = analyze("--workers", "2", "-o", "gopher://x", *FIXTURES[:2])
    assert result.returncode == 2 and not result.stdout
    assert len(result.stderr.splitlines()) == 1 and "unknown scheme" in result.stderr


def run_with_terminal_stderr(*args: str) -> tuple[int, str]:
    """Run analyze with stderr on a pseudo-terminal (stdout to a pipe); return its exit code and what the
    terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", *args],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(terminal)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    return process.wait(timeout=60), shown.decode("utf-8", "replace")


def test_the_progress_bar_shows_on_a_terminal_and_not_with_quiet_or_off_a_terminal():
    code, shown = run_with_terminal_stderr("-o", os.devnull, *FIXTURES)
    assert code == 0
    assert "connections:" in shown and "pkt/s" in shown  # the bar was drawn, then the summary
    code, shown = run_with_terminal_stderr("-q", "-o", os.devnull, *FIXTURES)
    assert code == 0 and shown == ""
    piped = analyze("-o", os.devnull, *FIXTURES)  # stderr is a pipe: the summary, no bar
    assert "connections:" not in piped.stderr and "TLS connections by outcome" in piped.stderr
