"""Every event helloscope emits validates against its schema in schema/ (JSON Schema 2020-12).

Events come from every bundled fixture, without and with its key log (decrypted events carry fields
plaintext ones do not), and from the shared corpus when present, for the odd hellos of the wild.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import CORPUS, PCAPS, REPO, analyze, analyze_with_keys, assert_schema_valid, schema_validator

FIXTURES = sorted(PCAPS.rglob("*.pcap"))  # TLS, QUIC, DTLS and the hostile-strings capture
CORPUS_CAPTURES = sorted((CORPUS / "ja4" / "pcap").glob("*.pcap*")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_fixture_events_validate(capture: Path) -> None:
    events = analyze(capture)
    assert events
    assert_schema_valid(events, capture.name)
    if capture.with_suffix(".keylog").exists():
        assert_schema_valid(analyze_with_keys(capture), f"{capture.name} with keys")


@pytest.mark.parametrize("capture", CORPUS_CAPTURES, ids=lambda path: path.name)
def test_corpus_events_validate(capture: Path) -> None:
    assert_schema_valid(analyze(capture), capture.name)


def test_the_schema_rejects_what_the_builder_must_not_emit() -> None:
    (event,) = analyze(PCAPS / "tls13-noauth.pcap")
    assert_schema_valid([event], "baseline")
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
        assert not schema_validator("helloscope.tls").is_valid(broken), path


def test_the_stats_schema_rejects_a_count_that_is_not_one() -> None:
    text = (REPO / "docs" / "EVENTS.md").read_text()
    (example,) = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S) if "stats" in block]
    assert_schema_valid([example], "stats example")
    stats = schema_validator("helloscope.stats")
    for name, bad in [("packets", -1), ("kernel_dropped", "0"), ("decryption_decrypted", 1.5)]:
        broken = json.loads(json.dumps(example))
        broken["helloscope"]["stats"][name] = bad
        assert not stats.is_valid(broken), name
    del example["helloscope"]["stats"]["kernel_dropped"]  # a live run always says what the kernel dropped
    assert not stats.is_valid(example)


def test_the_documented_examples_validate() -> None:
    """docs/EVENTS.md shows real events; they must stay valid as the schema changes."""
    text = (REPO / "docs" / "EVENTS.md").read_text()
    examples = [json.loads(block.split("```", 1)[0]) for block in text.split("```json\n")[1:]]
    outcomes = {example["helloscope"]["outcome"] for example in examples if "outcome" in example["helloscope"]}
    assert outcomes >= {"authenticated", "declined", "not_requested", "rejected", "unknown"}
    assert any(example["event"]["dataset"] == "helloscope.stats" for example in examples)
    assert_schema_valid(examples, "docs/EVENTS.md")
