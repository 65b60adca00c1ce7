"""`analyze --fields a,b,c`: JSON output reduced to the chosen dotted paths, for shell use."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helloscope.sniffer.run.cli import cli

from tests.helpers import PCAPS, analyze

CAPTURE = PCAPS / "tls12-required-presented.pcap"


def _run(*args: str):
    return CliRunner().invoke(cli, ["analyze", "-q", *args, str(CAPTURE)])


def test_only_the_chosen_paths_remain_nested_as_in_the_event() -> None:
    (full,) = analyze(CAPTURE)
    result = _run("--fields", "source.ip, tls.client.ja4,helloscope.outcome,network.community_id")
    assert result.exit_code == 0, result.output
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event == {
        "source": {"ip": full["source"]["ip"]},
        "tls": {"client": {"ja4": full["tls"]["client"]["ja4"]}},
        "helloscope": {"outcome": "authenticated"},
        "network": {"community_id": full["network"]["community_id"]},
    }


def test_a_whole_object_can_be_chosen_and_absent_paths_are_null() -> None:
    result = _run("--fields", "destination,helloscope.preamble.protocol")
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(event["destination"]) == {"ip", "port", "domain", "bytes"}
    assert event["helloscope"] == {"preamble": {"protocol": None}}  # direct TLS: no preamble


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "table", "--fields", "source.ip"), "no effect with --format table"),
        (("--fields", "source..ip"), "dotted paths"),
        (("--fields", ","), "dotted paths"),
        (("--fields", "tls,tls.version"), "already includes"),
        (("--fields", "source.ip,tls.clinet.ja4"), "not a field of helloscope's events (did you mean tls.client.ja4?)"),
        (("--fields", "tls.client.ja4.x"), "not a field"),
    ],
)
def test_unusable_field_lists_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2 and message in result.output


def test_known_fields_are_the_schemas_paths() -> None:
    """--fields knows a path exactly when schema/ describes it; after a schema change this names the command."""
    from helloscope.sniffer.report.fields import KNOWN_FIELDS, schema_paths

    from tests.helpers import REPO

    described: set[str] = set()
    for name in ("event.schema.json", "stats.schema.json"):
        described |= schema_paths(json.loads((REPO / "schema" / name).read_text()))
    assert described == KNOWN_FIELDS, "python -m helloscope.sniffer.report.fields schema/*.schema.json"


def test_open_objects_take_any_member() -> None:
    from helloscope.sniffer.report.fields import is_known

    assert is_known("helloscope.stats.some_future_counter") and not is_known("helloscope.statz")
