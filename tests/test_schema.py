"""Every event helloscope emits validates against schema/event.schema.json (JSON Schema 2020-12).

Events come from every bundled fixture, without and with its key log (decrypted events carry fields
plaintext ones do not), and from the shared corpus when present, for the odd hellos of the wild.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest

from parsers.keylog import KeyLog
from sniffer.capture import open_capture
from sniffer.events import Observer
from sniffer.pipeline import analyze_files
from tests.helpers import CORPUS, PCAPS, REPO, analyze

SCHEMA_PATH = REPO / "schema" / "event.schema.json"
FIXTURES = sorted(PCAPS.glob("*.pcap"))
CORPUS_CAPTURES = sorted((CORPUS / "ja4" / "pcap").glob("*.pcap*")) if CORPUS.is_dir() else []


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _assert_valid(events: list[dict], where: str) -> None:
    for index, event in enumerate(events):
        errors = sorted(_validator().iter_errors(event), key=lambda error: list(error.absolute_path))
        assert not errors, f"{where} event {index}: " + "; ".join(
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors[:5]
        )


def _decrypted(capture: Path) -> list[dict]:
    keys = KeyLog()
    keys.feed(capture.with_suffix(".keylog").read_text())
    keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    return events


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_fixture_events_validate(capture: Path) -> None:
    events = analyze(capture)
    assert events
    _assert_valid(events, capture.name)
    if capture.with_suffix(".keylog").exists():
        _assert_valid(_decrypted(capture), f"{capture.name} with keys")


@pytest.mark.parametrize("capture", CORPUS_CAPTURES, ids=lambda path: path.name)
def test_corpus_events_validate(capture: Path) -> None:
    _assert_valid(analyze(capture), capture.name)


def test_the_schema_rejects_what_the_builder_must_not_emit() -> None:
    (event,) = analyze(PCAPS / "tls13-noauth.pcap")
    _assert_valid([event], "baseline")
    for path, bad in [
        (("helloscope", "outcome"), "maybe"),
        (("helloscope", "certificate_request", "evidence"), "guessed"),
        (("network", "community_id"), "2:abc"),
        (("tls", "client", "ja4"), "t13d0107_short"),
        (("helloscope", "undocumented"), 1),
    ]:
        broken = json.loads(json.dumps(event))
        target = broken
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = bad
        assert not _validator().is_valid(broken), path


def test_the_documented_examples_validate() -> None:
    """docs/EVENTS.md shows real events; they must stay valid as the schema changes."""
    text = (REPO / "docs" / "EVENTS.md").read_text()
    examples = [json.loads(block.split("```", 1)[0]) for block in text.split("```json\n")[1:]]
    outcomes = {example["helloscope"]["outcome"] for example in examples}
    assert outcomes >= {"authenticated", "declined", "not_requested", "rejected", "unknown"}
    _assert_valid(examples, "docs/EVENTS.md")
