"""Issue 16 items 6-7 in a real terminal (tmux): tables and the summary at 80 and 200 columns, and one line
per connection when events go to a terminal."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import PCAPS, REPO, analyze

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")

CAPTURES = [
    PCAPS / name
    for name in ("tls13-flag62-honored.pcap", "tls12-noauth.pcap", "tls12-untrusted.pcap", "quic-mtls-rejected.pcap")
]
HOSTILE = PCAPS / "hostile" / "hostile-strings.pcap"
DONE = "__helloscope_done__"


def _terminal(args: list[str], width: int, tmp_path: Path) -> list[str]:
    """What a terminal ``width`` columns wide shows of a helloscope command, wrapped lines joined again, so a
    line longer than the terminal shows up as longer."""
    socket = f"hs-{os.getpid()}-{width}-{time.monotonic_ns()}"
    command = " ".join(shlex.quote(part) for part in [sys.executable, "-m", "helloscope.sniffer", *args])
    script = tmp_path / f"run-{width}.sh"
    script.write_text(f"cd {shlex.quote(str(REPO))}\n{command}\necho {DONE} $?\nsleep 60\n")
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", str(width), "-y", "50", "sh", str(script)],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        subprocess.run([*tmux, "set-option", "-g", "history-limit", "10000"], check=True)
        deadline = time.monotonic() + 60
        while True:
            shown = subprocess.run(
                [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-"], capture_output=True, text=True, check=True
            ).stdout
            if DONE in shown or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    lines = [line.rstrip() for line in shown.splitlines()]
    assert f"{DONE} 0" in lines, shown
    return lines[: lines.index(f"{DONE} 0")]


def _addresses(events: list[dict]) -> set[str]:
    return {f"{e[side]['ip']}:{e[side]['port']}" for e in events for side in ("source", "destination")}


def _readable(lines: list[str], width: int, events: list[dict]) -> None:
    assert lines and max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "…" not in text  # no header or value cut
    for address in _addresses(events):
        assert re.search(rf"(?<![\d.:]){re.escape(address)}(?!\d)", text), address  # whole, on one line


@pytest.mark.parametrize("width", [80, 200])
def test_table_and_summary_are_readable_at_80_and_200_columns(width: int, tmp_path: Path) -> None:
    events = analyze(*CAPTURES)
    lines = _terminal(["analyze", "--format", "table", *map(str, CAPTURES)], width, tmp_path)
    _readable(lines, width, events)
    text = "\n".join(lines)
    for word in ("cert req", "client cert", "flag outcome", "connections", "unsolicited", "By server"):
        assert word in text
    if width == 200:  # wide enough for the connections table itself, with its header row
        assert re.search(r"start\s+client\s+server", text)


@pytest.mark.parametrize("width", [80, 200])
def test_stored_summary_is_readable(width: int, tmp_path: Path) -> None:
    events = analyze(*sorted(PCAPS.glob("*.pcap")))
    stored = tmp_path / "events.jsonl"
    stored.write_text("".join(json.dumps(event) + "\n" for event in events))
    lines = _terminal(["summary", str(stored)], width, tmp_path)
    assert max(len(line) for line in lines) <= width
    assert "…" not in "\n".join(lines)


def test_events_to_a_terminal_are_one_line_each(tmp_path: Path) -> None:
    events = analyze(*CAPTURES)
    lines = _terminal(["analyze", "-q", *map(str, CAPTURES)], 200, tmp_path)
    assert len(lines) == len(events) and not any("{" in line for line in lines)
    for line, event in zip(lines, events, strict=True):
        assert f"{event['source']['ip']}:{event['source']['port']} → " in line
        assert event["tls"]["client"]["server_name"] in line
        assert event["helloscope"]["outcome"] in line and f"({event['helloscope']['outcome_evidence']})" in line
    # --format json still gives JSON on a terminal
    (first, *_) = _terminal(["analyze", "-q", "--format", "json", str(CAPTURES[0])], 200, tmp_path)
    assert first.startswith("{")


def test_hostile_names_stay_escaped_in_terminal_lines(tmp_path: Path) -> None:
    lines = _terminal(["analyze", "-q", str(HOSTILE)], 200, tmp_path)
    text = "\n".join(lines)
    assert "\\u001b[31mansi[red]markup[/red]\\u202ebid" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_piped_output_uses_a_sensible_width() -> None:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "--format", "table", *map(str, CAPTURES)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    widths = [len(line.rstrip()) for line in done.stdout.splitlines()]
    assert max(widths) <= 120
