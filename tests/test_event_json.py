"""Events as JSON lines: the serializer writes the same bytes as the standard library, one line per event
for every reader, including those that split on Unicode line breaks (U+2028, U+2029, U+0085)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helloscope.sniffer.report.events import to_json_line

from tests.helpers import PCAPS, analyze

FIXTURES = sorted(PCAPS.rglob("*.pcap"))


def _reference(event: dict) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.name)
def test_lines_equal_the_standard_library_on_real_events(capture: Path) -> None:
    events = analyze(capture)
    assert events
    for event in events:
        assert to_json_line(event) == _reference(event)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_breaks_in_attacker_strings_are_escaped(separator: str) -> None:
    event = analyze(PCAPS / "tls13-noauth.pcap")[0]
    event["tls"]["client"]["server_name"] = f"a{separator}b.example"
    line = to_json_line(event)
    assert separator not in line
    assert len(line.splitlines()) == 1  # str.splitlines breaks on all three
    assert json.loads(line) == event
