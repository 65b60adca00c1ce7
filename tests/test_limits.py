"""Resource limits at small scale: every hit is counted and no connection already seen is lost."""

from __future__ import annotations

from pathlib import Path

import dpkt
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.parallel import analyze_parallel
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.transport.lifecycle import Limits

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


def _frames(capture: Path) -> list[tuple[float, bytes]]:
    with open_capture(str(capture)) as reader:
        return [(timestamp, bytes(frame)) for timestamp, _, frame in reader]


def _write(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle)  # Ethernet, like the fixtures
        for timestamp, frame in frames:
            writer.writepkt(frame, ts=timestamp)
    return path


def _bare_ack(frame: bytes) -> bool:
    segment = decode(1, frame)
    return segment is not None and not segment.payload and not segment.flags & 0x07  # no FIN, SYN or RST


def _same_with_workers(capture: Path, limits: Limits) -> list[dict]:
    """One process's events, after checking that 2 and 3 workers report the same set."""
    events, stats = analyze_files([open_capture(str(capture))], Observer("t"), limits)
    for workers in (2, 3):
        shared: list[dict] = []
        outcome = analyze_parallel([str(capture)], workers, Observer("t"), shared.append, limits=limits)
        assert sorted(map(repr, shared)) == sorted(map(repr, events)), workers
        assert outcome.stats.as_dict() == stats.as_dict(), workers
    return events


def test_a_flow_silent_past_the_timeout_when_the_capture_ends_ended_idle(tmp_path: Path):
    # The hello's connection stops mid-handshake; the capture's last frame, much later, is a bare ACK of a
    # flow nobody follows, so no sweep runs on it: the end of the capture still finds the silence.
    frames = _frames(PCAPS / "tls12-noauth.pcap")
    other = _frames(PCAPS / "tls13-noauth.pcap")
    bare_ack = next(frame for _, frame in reversed(other) if _bare_ack(frame))
    cut = frames[: len(frames) // 2]
    capture = _write(tmp_path / "idle-at-end.pcap", [*cut, (cut[-1][0] + 10, bare_ack)])
    (event,) = _same_with_workers(capture, Limits(idle_timeout=5.0))
    assert event["helloscope"]["end_reason"] == "idle_timeout"


def test_a_packet_after_a_silence_past_the_timeout_finds_its_flow_already_ended(tmp_path: Path):
    # The same connection, its second half sent long after its first: the first half is a connection that
    # went idle (whenever a sweep would have come by), and the second starts a flow of its own mid-stream.
    frames = _frames(PCAPS / "tls12-noauth.pcap")
    half = len(frames) // 2
    capture = _write(tmp_path / "gap.pcap", [*frames[:half], *((t + 10, f) for t, f in frames[half:])])
    (event,) = _same_with_workers(capture, Limits(idle_timeout=5.0))
    assert event["helloscope"]["end_reason"] == "idle_timeout"
    assert event["helloscope"]["client_hello"] is not None
