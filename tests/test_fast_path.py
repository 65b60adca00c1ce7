"""The fast path against the reference path: the same events, byte for byte.

- The flow table's fast path (``Limits.fast_path``, the default) drops encrypted records that no key can
  open once the key log is sealed, and allocates a flow's reassemblers and tracker only with its first
  payload. Every fixture in pcaps/ (with and without its key log) and every capture of the corpus must
  give the same events as the reference path (``fast_path=False``, key log left open). With the C core,
  the fast path also lets the flow skimmer take the packets of reported TCP connections whole.
- The event builder computes the four JA4 forms in one pass (``ja4_variants``); it is held to a plain
  per-form reference, the computation as it was before that shortcut, on every fixture hello.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helloscope.parsers.fingerprints import ja4_variants
from helloscope.parsers.hello import ClientHello
from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.registry import ALPN, SERVER_NAME, is_grease
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import PCAP, CaptureError, open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables
from helloscope.sniffer.transport.tcp import SYN

from tests.helpers import PCAPS, analyze

FIXTURES = sorted(PCAPS.glob("*.pcap"))
ALL_FIXTURES = sorted(PCAPS.rglob("*.pcap*"))


def _events(capture: Path, fast: bool, keylog: Path | None) -> tuple[str, dict[str, int]]:
    """Events (as the JSON text written) and run statistics of one capture on one path.

    The fast path gets the most it can use: its key log is sealed when the capture is pcap (which cannot
    carry secrets); the reference path keeps its key log open, so it keeps every protected record.
    """
    keys = KeyLog()
    if keylog is not None:
        keys.feed(keylog.read_text())
        keys.finish()
    reader = open_capture(str(capture))
    if fast and reader.format == PCAP:
        keys.seal()
    events, stats = analyze_files([reader], Observer("test"), Limits(fast_path=fast), keys)
    return json.dumps(events, sort_keys=True), stats.as_dict()


def _assert_same_on_both_paths(capture: Path, keylog: Path | None = None) -> None:
    fast, reference = _events(capture, True, keylog), _events(capture, False, keylog)
    assert fast[0] == reference[0]
    assert fast[1] == reference[1]


@pytest.mark.parametrize("capture", ALL_FIXTURES, ids=lambda path: path.relative_to(PCAPS).as_posix())
def test_fast_path_reports_equal_reference_on_fixture(capture: Path) -> None:
    keylog = capture.with_suffix(".keylog")
    _assert_same_on_both_paths(capture)
    if keylog.exists():
        _assert_same_on_both_paths(capture, keylog)


def test_fast_path_reports_equal_reference_on_corpus(corpus: Path) -> None:
    compared = 0
    for capture in sorted(corpus.rglob("*.pcap*")):
        try:
            open_capture(str(capture)).close()
        except CaptureError:
            continue  # not a capture (the corpus also holds expected-output files named *.pcap.json)
        _assert_same_on_both_paths(capture)
        compared += 1
    assert compared > 250


def _table(fast: bool, keys: KeyLog) -> tuple[ConnectionTables, list[ConnectionReport]]:
    reports: list[ConnectionReport] = []
    return ConnectionTables(reports.append, RunStats(), Limits(fast_path=fast), keys=keys), reports


def _feed(table: ConnectionTables, capture: Path, keep: int, payload: bool) -> None:
    """TCP segments of ``capture`` whose flags intersect ``keep``, and (if ``payload``) every one with data."""
    for timestamp, linktype, frame in open_capture(str(capture)):
        segment = decode(linktype, frame)
        if segment is not None and segment.proto == 6 and ((payload and segment.payload) or segment.flags & keep):
            table.segment(timestamp, segment)


@pytest.mark.parametrize(("fast", "sealed", "kept"), [(True, True, False), (True, False, True), (False, True, True)])
def test_protected_records_are_kept_only_while_a_key_can_arrive(fast: bool, sealed: bool, kept: bool) -> None:
    keys = KeyLog()
    table, _ = _table(fast, keys)
    if sealed:
        keys.seal()  # after the table was made, as a caller that learns it late would
    # No FIN or RST: the connection is still open (and its tracker readable) after its last record.
    _feed(table, PCAPS / "tls13-required-presented.pcap", keep=SYN, payload=True)
    trackers = [flow.tracker for flow in table.tcp._flows.values() if flow.tracker is not None]
    assert trackers, "the TLS 1.3 connection is still open"
    assert all(tracker.protected_seen for tracker in trackers)
    assert all(bool(tracker.protected) == kept for tracker in trackers)


def test_half_open_flows_allocate_no_stream_state() -> None:
    table, reports = _table(True, KeyLog())
    _feed(table, PCAPS / "tls12-noauth.pcap", keep=SYN, payload=False)  # SYN and SYN-ACK only
    flows = list(table.tcp._flows.values())
    assert len(table) == 1 and flows
    assert all(flow.sides is None and flow.tracker is None for flow in flows)
    table.flush()
    assert reports == []  # never TLS: nothing to report


_EMPTY = "0" * 12


def _reference_ja4(hello: ClientHello, transport: str, original_order: bool, raw: bool) -> str:
    """One JA4 form, computed on its own from FoxIO's JA4.md (no shared work between forms)."""
    ciphers = [f"{v:04x}" for v in hello.cipher_suites if not is_grease(v)]
    extensions = [f"{v:04x}" for v in hello.extension_types if not is_grease(v)]
    alpn = hello.alpn[0] if hello.alpn else b""
    if not alpn:
        code = "00"
    elif alpn[0] > 0x7F:
        code = "99"
    elif alpn[:1].isalnum() and alpn[-1:].isalnum() and alpn[-1:].isascii():
        code = (alpn[:1] + alpn[-1:]).decode()
    else:
        code = f"{alpn[0]:02x}"[0] + f"{alpn[-1]:02x}"[1]
    versions = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
    prefix = (
        f"{transport}{versions.get(hello.max_version, '00')}{'d' if SERVER_NAME in hello.extension_types else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{code}"
    )
    fingerprinted = [e for e in extensions if e not in (f"{SERVER_NAME:04x}", f"{ALPN:04x}")]
    listed = extensions if original_order else sorted(fingerprinted)
    cipher_text = ",".join(ciphers if original_order else sorted(ciphers))
    extension_text = ",".join(listed)
    sigalgs = [f"{v:04x}" for v in hello.signature_algorithms if not is_grease(v)]
    if sigalgs and extension_text:
        extension_text += "_" + ",".join(sigalgs)
    if raw:
        return f"{prefix}_{cipher_text}_{extension_text}"

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else _EMPTY

    return f"{prefix}_{digest(cipher_text)}_{digest(extension_text) if fingerprinted else _EMPTY}"


def _hellos(capture: Path) -> list[tuple[ClientHello, str]]:
    reports: list[ConnectionReport] = []
    table = ConnectionTables(reports.append, RunStats())
    for timestamp, linktype, frame in open_capture(str(capture)):
        segment = decode(linktype, frame)
        if segment is not None:
            table.segment(timestamp, segment)
    table.flush()
    return [
        (hello, "q" if report.quic is not None else "t")
        for report in reports
        for hello in report.handshake.client_hellos
    ]


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_one_pass_ja4_equals_per_form_reference(capture: Path) -> None:
    hellos = _hellos(capture)
    assert hellos, "every fixture holds at least one ClientHello"
    for hello, transport in hellos:
        forms = ja4_variants(hello, transport)
        assert forms.ja4 == _reference_ja4(hello, transport, original_order=False, raw=False)
        assert forms.ja4_r == _reference_ja4(hello, transport, original_order=False, raw=True)
        assert forms.ja4_o == _reference_ja4(hello, transport, original_order=True, raw=False)
        assert forms.ja4_ro == _reference_ja4(hello, transport, original_order=True, raw=True)


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_event_shows_the_first_hellos_ja4_in_both_places(capture: Path) -> None:
    for event in analyze(capture):
        hello = event["helloscope"]["client_hello"]
        if hello is not None:
            assert event["tls"]["client"]["ja4"] == hello["ja4"]
