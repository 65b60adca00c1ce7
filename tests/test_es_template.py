"""Issue 16 item 11: schema/elasticsearch-template.json maps every field helloscope emits, with a type
that accepts the values it emits (ip for addresses, date for times, keyword for fingerprints).

Events come from every bundled fixture, without and with its key log (TLS <= 1.2, TLS 1.3, QUIC, DTLS,
the hostile strings), and the live run's stats event.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.fields import KNOWN_FIELDS, OPEN_OBJECTS
from helloscope.sniffer.run.live import stats_event

from tests.helpers import PCAPS, REPO, analyze, analyze_with_keys

TEMPLATE = json.loads((REPO / "schema" / "elasticsearch-template.json").read_text())
MAPPINGS = TEMPLATE["template"]["mappings"]
FIXTURES = sorted(PCAPS.rglob("*.pcap"))


def _mapped(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, mapping in properties.items():
        path = prefix + name
        yield path, mapping
        yield from _mapped(mapping.get("properties", {}), path + ".")


MAPPED = dict(_mapped(MAPPINGS["properties"]))


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, scalar) for every value of an event; arrays (of objects too) as Elasticsearch flattens them."""
    if isinstance(value, dict):
        for name, child in value.items():
            yield from _leaves(child, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, path)
    elif value is not None:
        yield path, value


def _is_date(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


ACCEPTS = {
    "ip": _is_ip,
    "date": _is_date,
    "long": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    # Elasticsearch indexes a number given to a keyword field as its text (QUIC transport parameter values).
    "keyword": lambda value: isinstance(value, str | int) and not isinstance(value, bool),
}


def _type_of(path: str) -> str:
    mapping = MAPPED.get(path)
    if mapping is None:
        parent = next((prefix for prefix in OPEN_OBJECTS if path.startswith(prefix + ".")), None)
        assert parent is not None and MAPPED[parent].get("dynamic") is True, f"{path} has no mapping"
        return "long"  # an open object's new counters, mapped as Elasticsearch maps a JSON integer
    assert "type" in mapping, f"{path} is mapped as an object and holds a value"
    return mapping["type"]


def _check(events: list[dict[str, Any]], where: str) -> int:
    checked = 0
    for event in events:
        for path, value in _leaves(event):
            kind = _type_of(path)
            assert ACCEPTS[kind](value), f"{where}: {path} = {value!r} does not fit {kind}"
            checked += 1
    return checked


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_every_emitted_field_has_a_compatible_mapping(capture: Path) -> None:
    assert _check(analyze(capture), capture.name)
    if capture.with_suffix(".keylog").exists():
        assert _check(analyze_with_keys(capture), f"{capture.name} with keys")


def test_the_stats_event_fits_too() -> None:
    counters = {"packets": 10, "kernel_dropped": 0, "a_counter_of_a_later_version": 3}
    assert _check([stats_event(counters, Observer("s", interfaces=("eth0",)), 0.0, 1.5)], "stats")


def test_the_mapping_and_the_schema_name_the_same_fields() -> None:
    """No field of the schemas without a mapping, no mapping of a field helloscope does not write (members
    of arrays of objects, such as helloscope.alerts.sender, are mapped under their array's field)."""
    assert set(KNOWN_FIELDS) <= set(MAPPED)
    stale = [path for path in MAPPED if path not in KNOWN_FIELDS and path.rsplit(".", 1)[0] not in KNOWN_FIELDS]
    assert not stale


def test_the_types_a_soc_relies_on() -> None:
    expected = {
        "source.ip": "ip",
        "destination.ip": "ip",
        "@timestamp": "date",
        "event.start": "date",
        "tls.server.not_after": "date",
        "tls.server.x509.not_before": "date",
        "tls.client.x509.not_after": "date",
        "tls.server.hash.sha256": "keyword",
        "tls.client.hash.sha1": "keyword",
        "tls.client.ja3": "keyword",
        "tls.client.ja4": "keyword",
        "helloscope.server_certificate.chain_sha256": "keyword",
        "network.community_id": "keyword",
        "event.id": "keyword",
        "event.duration": "long",
        "source.bytes": "long",
        "tls.established": "boolean",
    }
    assert {path: MAPPED[path]["type"] for path in expected} == expected
    # Fields helloscope does not know stay in _source without changing the mapping; nested arrays of
    # objects are plain objects (no nested type: every query works as on any ECS index).
    assert MAPPINGS["dynamic"] is False and MAPPINGS["date_detection"] is False
    assert all(mapping.get("type") != "nested" for mapping in MAPPED.values())


def test_the_template_covers_the_bulk_outputs_default_index_and_is_pointed_to() -> None:
    from click.testing import CliRunner
    from helloscope.sniffer.run.cli import cli

    # "helloscope" is the _bulk output's index unless ?index= says otherwise (tests/test_output_http.py).
    assert all(fnmatch(index, TEMPLATE["index_patterns"][1]) for index in ("helloscope-2026.11", "helloscope-tls"))
    assert "helloscope" in TEMPLATE["index_patterns"]
    assert "schema/elasticsearch-template.json" in (REPO / "README.md").read_text()
    help_text = CliRunner().invoke(cli, ["analyze", "--help"], terminal_width=200).output
    assert "elasticsearch-template.json" in " ".join(help_text.split())
