"""Resource limits at small scale: every hit is counted and no connection already seen is lost."""

from __future__ import annotations

from pathlib import Path

from sniffer.capture import open_capture
from sniffer.events import Observer
from sniffer.flows import Limits
from sniffer.pipeline import analyze_files
from tests.helpers import PCAPS


def run(*captures: Path, **limits: object) -> tuple[list[dict], dict[str, int]]:
    events, stats = analyze_files([open_capture(str(path)) for path in captures], Observer("t"), Limits(**limits))
    return events, stats.as_dict()


def _clients(events: list[dict]) -> set[tuple[str, int]]:
    return {(event["source"]["ip"], event["source"]["port"]) for event in events}


def test_flow_cap_evicts_the_oldest_and_still_reports_it(corpus: Path):
    capture = corpus / "mercury/unit_tests/pcaps/surfshark.pcap"  # 64 TLS connections, many at once
    unbounded, _ = run(capture)
    capped, stats = run(capture, max_flows=4)
    assert stats["flow_cap_evictions"] > 0
    assert _clients(unbounded) <= _clients(capped)  # every hello seen is reported, evicted or not
    evicted = [event for event in capped if event["helloscope"]["end_reason"] == "flow_cap"]
    assert evicted


def test_byte_cap_stops_reading_and_says_so():
    events, stats = run(PCAPS / "large-clienthello.pcap", max_stream_bytes=1024)
    (event,) = events
    assert stats["stream_byte_cap_hits"] >= 1
    assert event["helloscope"]["tcp"]["byte_cap_reached"] is True
    assert event["helloscope"]["client_hello"] is None  # the 1.7 kB hello did not fit
    assert any("client_hello_incomplete" in anomaly for anomaly in event["helloscope"]["anomalies"])


def _first_packet_time(capture: Path) -> float:
    with open_capture(str(capture)) as reader:
        return next(iter(reader))[0]


def test_idle_timeout_reports_silent_flows_and_counts_them(tmp_path: Path):
    # A connection whose capture stops mid-handshake stays open until a later packet passes its timeout.
    first, later = sorted(PCAPS.glob("tls1[23]-noauth.pcap"), key=_first_packet_time)
    cut = tmp_path / "cut.pcap"
    data = first.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    events, stats = run(cut, later, idle_timeout=1.0)
    assert stats["idle_evictions"] >= 1
    assert [event["helloscope"]["end_reason"] for event in events][0] == "idle_timeout"
    assert len(events) == 2
