"""JA4 against FoxIO's own output: ../shared/corpus/ja4/python/test/testdata/*.json (their tool's
result for each capture of ja4/pcap/), every TCP stream, every ClientHello of it (JA4.1, JA4.2...).

QUIC entries (JA4 starting with "q") belong to the QUIC work and are left out here.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import pytest
from helloscope.parsers.fingerprints import ja4, ja4_o, ja4_r, ja4_ro
from helloscope.parsers.hello import ClientHello

from tests.helpers import CORPUS, analyze

JA4_CORPUS = CORPUS / "ja4"
EXPECTED = sorted((JA4_CORPUS / "python" / "test" / "testdata").glob("*.json"))
VARIANTS = ("JA4", "JA4_r", "JA4_o", "JA4_ro")
# Event object holding FoxIO's hello number N.
HELLO_FIELDS = {1: "client_hello", 2: "second_client_hello"}


def _tcp_entries(expected: Path) -> list[dict]:
    return [entry for entry in json.loads(expected.read_text()) if not entry.get("JA4.1", "q").startswith("q")]


def _hello_numbers(entry: dict) -> list[int]:
    return sorted(int(key.split(".")[1]) for key in entry if key.startswith("JA4."))


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda path: path.name.removesuffix(".json"))
def test_ja4_equals_foxio_reference(expected: Path) -> None:
    capture = JA4_CORPUS / "pcap" / expected.name.removesuffix(".json")
    entries = _tcp_entries(expected)
    if not entries:
        pytest.skip("no TCP ClientHello in FoxIO's output for this capture")
    events_by_flow: defaultdict[tuple, list[dict]] = defaultdict(list)
    for event in analyze(capture):
        source, destination = event["source"], event["destination"]
        events_by_flow[(source["ip"], source["port"], destination["ip"], destination["port"])].append(event)
    for entry in entries:
        flow = (entry["src"], int(entry["srcport"]), entry["dst"], int(entry["dstport"]))
        assert events_by_flow[flow], f"stream {entry['stream']}: no event for {flow}"
        event = events_by_flow[flow].pop(0)
        assert event["tls"]["client"]["ja4"] == entry["JA4.1"], f"stream {entry['stream']}"
        for number in _hello_numbers(entry):
            hello = event["helloscope"][HELLO_FIELDS[number]]
            assert hello is not None, f"stream {entry['stream']}: no ClientHello {number}"
            for variant in VARIANTS:
                assert hello[variant.lower()] == entry[f"{variant}.{number}"], f"stream {entry['stream']} {variant}"


def test_the_golden_covers_hello_retry_and_many_streams() -> None:
    """Guard against a corpus change that would leave the comparison above nearly empty."""
    entries = [entry for path in EXPECTED for entry in _tcp_entries(path)]
    if not entries:
        pytest.skip("../shared/corpus/ja4 is absent")
    assert len(entries) >= 150
    assert sum(1 for entry in entries if "JA4.2" in entry) >= 10  # several hellos: HelloRetryRequest


# --- properties the goldens do not pin down, on real hellos from the corpus ---------------------


@pytest.fixture(scope="module")
def chrome_hello() -> ClientHello:
    """A Chrome ClientHello from the corpus (tls-alpn-h2: GREASE ciphers and extensions, h2 ALPN)."""
    from helloscope.sniffer.capture.files import open_capture
    from helloscope.sniffer.run.pipeline import feed_capture
    from helloscope.sniffer.stats import RunStats
    from helloscope.sniffer.transport.lifecycle import Limits
    from helloscope.sniffer.transport.tables import ConnectionTables

    capture = JA4_CORPUS / "pcap" / "tls-alpn-h2.pcap"
    if not capture.exists():
        pytest.skip("../shared/corpus/ja4 is absent")
    reports: list = []
    stats = RunStats()
    table = ConnectionTables(reports.append, stats, Limits())
    feed_capture(open_capture(str(capture)), table, stats)
    table.flush()
    hello = reports[0].client_hello
    assert hello is not None
    return hello


def test_grease_in_signature_algorithms_is_ignored(chrome_hello: ClientHello) -> None:
    # Chrome 152 sends a GREASE signature algorithm; JA4 drops GREASE everywhere.
    greased = dataclasses.replace(
        chrome_hello, signature_algorithms=(0x3A3A, *chrome_hello.signature_algorithms, 0xDADA)
    )
    for variant in (ja4, ja4_r, ja4_o, ja4_ro):
        assert variant(greased) == variant(chrome_hello)
    assert "3a3a" not in ja4_r(greased)


@pytest.mark.parametrize(
    ("alpn", "code"),
    [
        ((b"h2", b"http/1.1"), "h2"),
        ((b"http/1.1",), "h1"),
        ((b"h3",), "h3"),
        ((), "00"),
        ((b"",), "00"),
        ((b"x",), "xx"),
        # An ASCII end that is not alphanumeric: ends of the hex form (0x2f -> "2", 0x2d -> "d").
        ((b"/a-",), "2d"),
        # A non-ASCII first byte is "99" in FoxIO's reference (tls-non-ascii-alpn golden).
        ((b"\xba\xad",), "99"),
    ],
)
def test_alpn_code(chrome_hello: ClientHello, alpn: tuple[bytes, ...], code: str) -> None:
    assert ja4(dataclasses.replace(chrome_hello, alpn=alpn))[8:10] == code


def test_transport_letter(chrome_hello: ClientHello) -> None:
    assert ja4(chrome_hello, "q")[0] == "q"
    assert ja4(chrome_hello, "q")[1:] == ja4(chrome_hello)[1:]
    with pytest.raises(ValueError):
        ja4(chrome_hello, "u")
