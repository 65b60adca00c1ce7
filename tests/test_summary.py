"""`helloscope summary` and the end-of-run summary: aggregates by client, JA4 and server name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helloscope.sniffer.report.summary import Summary
from helloscope.sniffer.run.cli import cli

from tests.helpers import PCAPS, analyze

FIXTURES = sorted(PCAPS.glob("*.pcap"))


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return analyze(*FIXTURES)


@pytest.fixture
def stored(tmp_path: Path, events: list[dict]) -> Path:
    """The fixtures' events as analyze writes them, plus one whose stored copy carries findings."""
    with_findings = json.loads(json.dumps(events[0]))
    with_findings["helloscope"]["client_certificate"]["findings"] = ["expired", "weak_key"]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in [*events, with_findings]) + "\n")
    return path


def test_aggregates_agree_with_the_events(events: list[dict]) -> None:
    summary = Summary()
    for event in events:
        summary.add(event)
    doc = summary.as_dict()
    flagged = [event for event in events if event["helloscope"]["request_mtls"]]
    assert doc["connections"] == len(events) and doc["flagged"] == len(flagged) > 0
    assert doc["flag_outcomes"]["honored"] == sum(e["helloscope"]["flag_outcome"] == "honored" for e in events)
    assert sum(doc["outcomes"].values()) == len(events)
    # Every group partitions what it can see: all events by client, those with a hello by JA4.
    assert sum(group["connections"] for group in doc["by_client"].values()) == len(events)
    with_ja4 = [event for event in events if event["tls"]["client"].get("ja4")]
    assert sum(group["connections"] for group in doc["by_ja4"].values()) == len(with_ja4)
    for ja4, group in doc["by_ja4"].items():
        assert group["flagged"] == sum(
            e["helloscope"]["request_mtls"] for e in with_ja4 if e["tls"]["client"]["ja4"] == ja4
        )
    # The group with the flag comes first, so the tables lead with what the sensor is for.
    first = next(iter(doc["by_ja4"].values()))
    assert first["flagged"] == max(group["flagged"] for group in doc["by_ja4"].values())


def test_summary_json_counts_certificate_findings(stored: Path, events: list[dict]) -> None:
    result = CliRunner().invoke(cli, ["summary", "--json", str(stored)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["connections"] == len(events) + 1
    assert doc["certificate_findings"] == {"expired": 1, "weak_key": 1}
    client = events[0]["source"]["ip"]
    assert doc["by_client"][client]["certificate_findings"] == {"expired": 1, "weak_key": 1}


def test_summary_tables(stored: Path) -> None:
    result = CliRunner().invoke(cli, ["summary", str(stored)])
    assert result.exit_code == 0, result.output
    for title in (
        "TLS connections by outcome",
        "Clients advertising request-mTLS",
        "By JA4",
        "By server (name and address)",
        "Client cert findings",
        "weak_key",
    ):
        assert title in result.stdout
    assert "Run statistics" not in result.stdout  # stored events carry no run counters


def test_server_names_are_shown_inert(tmp_path: Path, events: list[dict]) -> None:
    hostile = json.loads(json.dumps(events[0]))
    hostile["tls"]["client"]["server_name"] = "evil\x1b[2J[red]name"
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(hostile) + "\n")
    result = CliRunner().invoke(cli, ["summary", str(path)])
    assert "\x1b" not in result.stdout
    assert "evil\\u001b[2J[red]name" in result.stdout


def test_analyze_ends_with_the_same_summary() -> None:
    result = CliRunner().invoke(cli, ["analyze", "--format", "table", str(PCAPS / "tls13-flag62-honored.pcap")])
    assert result.exit_code == 0
    assert "By JA4" in result.stdout and "t13d010700_0f2cb44170f4_f2fe50445384" in result.stdout


@pytest.mark.parametrize("content", ["not json\n", '{"source": 1}\n', '{"event": {"dataset": "other"}}\n'])
def test_a_line_that_is_not_an_event_is_a_usage_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["summary", str(path)])
    assert result.exit_code == 2
    assert "bad.jsonl: line 1: not" in result.output


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["summary", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2
