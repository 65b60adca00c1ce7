"""Attacker-chosen SNI and ALPN from a real socket capture reach JSON intact and terminals inert.

pcaps/hostile/hostile-strings.pcap (pcaps/make_hostile_fixture.py) holds two ClientHellos sent over
loopback to openssl s_server: one whose host name and ALPN carry a newline, NUL, an ANSI colour escape,
rich markup, a right-to-left override and invalid UTF-8, one with a 1,000-byte host name ending in a
clear-screen escape and a 211-byte ALPN ending in a window-title escape.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helloscope.sniffer.run.cli import cli

from tests.helpers import PCAPS, field

CAPTURE = PCAPS / "hostile" / "hostile-strings.pcap"
EXPECTED = json.loads(CAPTURE.with_name("hostile-strings.expected.json").read_text())
# What must never reach a terminal raw: each would move the cursor, recolour, retitle, clear the
# screen, reverse the text or cut the line in a table cell.
RAW_HAZARDS = ("\x00", "\n" + "line", "\x1b[31mansi", "\x1b[2J", "\x1b]0;", "\x07", "\u202e")


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")  # invalid UTF-8 on stdout is itself a failure


@pytest.fixture(scope="module")
def json_lines() -> list[str]:
    return _cli("analyze", "-q", str(CAPTURE)).splitlines()


def test_expected_document_is_the_recorder_truth():
    # The expectation comes from the bytes the recorder sent, never from helloscope's output.
    spec = importlib.util.spec_from_file_location("make_hostile_fixture", PCAPS / "make_hostile_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.expected() == EXPECTED


def test_each_event_is_one_valid_json_line_that_round_trips(json_lines: list[str]):
    assert len(json_lines) == len(EXPECTED["connections"])  # a raw newline would have split an event
    for line, connection in zip(json_lines, EXPECTED["connections"], strict=True):
        assert not any(unicodedata.category(char) == "Cc" for char in line)  # control bytes are \u-escaped
        event: dict[str, Any] = json.loads(line)
        assert json.loads(json.dumps(event)) == event
        for path, value in connection["expected"].items():
            actual: Any = field(event, path)
            if path == "helloscope.alerts":
                actual = [{"sender": alert["sender"], "code": alert["code"]} for alert in actual]
            assert actual == value, path


def test_invalid_utf8_is_escaped_per_byte_and_nothing_else_is_lost(json_lines: list[str]):
    for line, connection in zip(json_lines, EXPECTED["connections"], strict=True):
        name = json.loads(line)["tls"]["client"]["server_name"]
        raw = bytes.fromhex(connection["sent"]["server_name_hex"])
        # Turning each \xNN back into its byte gives exactly the wire bytes (these names hold no backslash).
        assert re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes.fromhex(m[1].decode()), name.encode()) == raw
    assert "\\x80\\xff\\xe2\\x80.example" in json.loads(json_lines[0])["tls"]["client"]["server_name"]


def _assert_inert(text: str) -> None:
    for hazard in RAW_HAZARDS:
        assert hazard not in text, repr(hazard)
    # The first name's hazards are shown as escapes, and its markup as the literal brackets.
    assert "evil\\u000aline\\u0000nul\\u001b[31mansi[red]markup[/red]\\u202ebid" in text


def test_table_shows_escapes_and_interprets_nothing():
    result = CliRunner().invoke(cli, ["analyze", "--format", "table", str(CAPTURE)])
    assert result.exit_code == 0, result.output
    _assert_inert(result.stdout)
    # Not a terminal: rich adds no styling either, so no control character at all but line ends.
    assert not [char for char in result.stdout if unicodedata.category(char) == "Cc" and char != "\n"]
    assert "a" * 60 in result.stdout and "a" * 200 not in result.stdout  # the long name is cut in its cell


def test_table_on_a_colour_terminal_is_inert_too():
    # With colours forced rich writes its own escapes; the wire's must still come out escaped.
    _assert_inert(_cli("analyze", "--format", "table", str(CAPTURE), env={"FORCE_COLOR": "1", "TERM": "xterm"}))


def test_summary_of_stored_events_is_inert(tmp_path: Path, json_lines: list[str]):
    stored = tmp_path / "events.jsonl"
    stored.write_text("\n".join(json_lines) + "\n", encoding="utf-8")
    tables = CliRunner().invoke(cli, ["summary", str(stored)])
    assert tables.exit_code == 0, tables.output
    _assert_inert(tables.stdout)
    document = CliRunner().invoke(cli, ["summary", "--json", str(stored)])
    assert document.exit_code == 0, document.output
    names = {server["server_name"] for server in json.loads(document.stdout)["by_server"]}
    assert names == {connection["expected"]["tls.client.server_name"] for connection in EXPECTED["connections"]}
