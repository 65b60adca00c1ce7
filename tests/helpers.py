"""Test helpers: where the bundled fixtures and the public corpus live, tshark, and running the pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
# HELLOSCOPE_CORPUS names another copy of the public corpus; pointed at a missing folder it shows what a
# fresh clone without ../shared runs: every test that needs the corpus must then skip (.ci/run checks).
CORPUS = Path(os.environ.get("HELLOSCOPE_CORPUS") or REPO.parent / "shared" / "corpus")
CORPUS_ABSENT = f"{CORPUS} is absent (the public corpus: see README, Tests)"
# Each kind of event helloscope writes, by event.dataset, and the JSON Schema that describes it.
SCHEMAS = {"helloscope.tls": "event.schema.json", "helloscope.stats": "stats.schema.json"}
# How a report lists a server alert seen without keys: sent under encryption, so no level or code.
ENCRYPTED_SERVER_ALERT = {
    "sender": "server",
    "level": None,
    "description": None,
    "code": None,
    "evidence": "plaintext",
    "encrypted": True,
}


def need_corpus(path: Path) -> Path:
    """``path`` under the public corpus, or skip the test when it is not there."""
    if not path.exists():
        pytest.skip(CORPUS_ABSENT if not CORPUS.is_dir() else f"{path} is not in the corpus")
    return path


def in_corpus(value: object) -> bool:
    """A test parameter that names something in the public corpus."""
    return isinstance(value, Path) and value.is_relative_to(CORPUS)


def tshark_fields(
    capture: Path, display_filter: str, fields: list[str], *extra: str, aggregator: str = ","
) -> list[list[str]]:
    """Rows of tshark -T fields output (one list per packet), or skip when tshark is not installed.

    A field that occurs several times in a packet is joined with ``aggregator``.
    """
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (.ci/run installs it)")
    cmd = [
        "tshark",
        "-n",
        "-r",
        str(capture),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        f"aggregator={aggregator}",
        *extra,
    ]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    # One line per matching packet, even when every field is empty.
    return [line.split("\t") for line in out.splitlines()]


def analyze(*captures: Path, **limits: object) -> list[dict]:
    """Events helloscope reports for some capture files, run in-process through the real pipeline."""
    from helloscope.sniffer.capture.files import open_capture
    from helloscope.sniffer.report.events import Observer
    from helloscope.sniffer.run.pipeline import analyze_files
    from helloscope.sniffer.transport.lifecycle import Limits

    events, _ = analyze_files([open_capture(str(path)) for path in captures], Observer("test"), Limits(**limits))
    return events


def without_capture(event: dict) -> dict:
    """An event without what names where it was read (log.file.path, and event.id, which hashes it)."""
    return {**{key: value for key, value in event.items() if key != "log"}, "event": {**event["event"], "id": None}}


def analyze_with_keys(capture: Path) -> list[dict]:
    """Events of a fixture decrypted with the key log beside it (NAME.keylog)."""
    from helloscope.parsers.keylog import KeyLog
    from helloscope.sniffer.capture.files import open_capture
    from helloscope.sniffer.report.events import Observer
    from helloscope.sniffer.run.pipeline import analyze_files

    keys = KeyLog()
    keys.feed(capture.with_suffix(".keylog").read_text())
    keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    return events


def segments_of(capture: Path) -> list[tuple[float, Any]]:
    """The decoded TCP segments and UDP datagrams of a capture, with their timestamps."""
    from helloscope.sniffer.capture.decode import decode
    from helloscope.sniffer.capture.files import open_capture

    with open_capture(str(capture)) as reader:
        decoded = [(timestamp, decode(linktype, frame)) for timestamp, linktype, frame in reader]
    return [(timestamp, segment) for timestamp, segment in decoded if segment is not None]


class TableRun:
    """Connection tables fed segment by segment, with their stats and the events the CLI would write."""

    def __init__(self, **limits: Any) -> None:
        from helloscope.sniffer.report.events import Observer, build_event
        from helloscope.sniffer.stats import RunStats
        from helloscope.sniffer.transport.lifecycle import Limits
        from helloscope.sniffer.transport.tables import ConnectionTables

        self.stats = RunStats()
        self.events: list[dict[str, Any]] = []
        observer = Observer("test")
        self.table = ConnectionTables(
            lambda report: self.events.append(build_event(report, observer)), self.stats, Limits(**limits)
        )

    def feed(self, packets: list[tuple[float, Any]]) -> TableRun:
        for timestamp, segment in packets:
            self.table.segment(timestamp, segment)
        return self


def field(event: dict, dotted: str) -> object:
    """A value by its dotted ECS path (``tls.client.server_name``)."""
    value: object = event
    for part in dotted.split("."):
        assert isinstance(value, dict), dotted
        value = value[part]
    return value


@cache
def schema_validator(dataset: str) -> jsonschema.Draft202012Validator:
    """The validator for one event.dataset's schema in schema/, itself checked against the metaschema."""
    schema = json.loads((REPO / "schema" / SCHEMAS[dataset]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_schema_valid(events: list[dict], where: str) -> None:
    """Every event validates against the schema of its event.dataset; the first errors are shown."""
    for index, event in enumerate(events):
        validator = schema_validator(event["event"]["dataset"])
        errors = sorted(validator.iter_errors(event), key=lambda error: list(error.absolute_path))
        assert not errors, f"{where} event {index}: " + "; ".join(
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors[:5]
        )
