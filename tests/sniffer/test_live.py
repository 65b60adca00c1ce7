"""The live sensor's loop without a network: frames of real fixture captures through a stand-in source.

The capture itself (AF_PACKET) and the whole command in namespaces are tested in tests/test_live.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.capture.rings import KernelStats
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.run.keylog_follow import KeyLogFollower
from helloscope.sniffer.run.live import Sensor, SensorSettings, Signals, run_sensor, stats_event
from helloscope.sniffer.run.pcapwriter import HandshakeBounds, HandshakePcap
from helloscope.sniffer.run.pipeline import Frame, analyze_files, feed_frames
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables

from tests.helpers import PCAPS

OBSERVER = Observer("test-sensor")


def frames_of(name: str) -> list[Frame]:
    with open_capture(str(PCAPS / name)) as reader:
        return [(timestamp, linktype, bytes(frame)) for timestamp, linktype, frame in reader]


class FakeSource:
    """Hands out prepared frames a few at a time, as a capture's poll would; then nothing."""

    def __init__(self, frames: Sequence[Frame], batch: int = 3) -> None:
        self.frames = list(frames)
        self.batch = batch
        self.delivered = 0
        self.polls = 0

    def poll(self, timeout: float) -> list[Frame]:
        self.polls += 1
        batch = self.frames[self.delivered : self.delivered + self.batch]
        self.delivered += len(batch)
        return batch

    def kernel_stats(self) -> KernelStats:
        return KernelStats(self.delivered, 0)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.reopened = 0
        self.closed = False

    def write(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))

    def reopen(self) -> None:
        self.reopened += 1

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True

    def counters(self) -> dict[str, int]:
        return {"events_written": len(self.events)}


def sensor_for(source: FakeSource, sink: list[dict[str, Any]], **settings: Any) -> Sensor:
    limits = settings.pop("limits", Limits(idle_timeout=time.time()))  # fixtures' clocks are in the past
    return Sensor(source, SensorSettings(limits, OBSERVER, **settings), sink.append, lambda message: None)


def drain(sensor: Sensor, source: FakeSource) -> None:
    while source.delivered < len(source.frames):
        sensor.step(0)


@pytest.mark.parametrize("name", ["tls13-flag62-honored.pcap", "tls12-required-missing.pcap"])
def test_sensor_reports_what_analyze_reports(name: str):
    source = FakeSource(frames_of(name))
    events: list[dict[str, Any]] = []
    # The fixture's clock is in the past: an idle timeout spanning it keeps "now" from ageing it out.
    limits = Limits(idle_timeout=time.time())
    sensor = sensor_for(source, events, limits=limits)
    drain(sensor, source)
    sensor.finish()
    with open_capture(str(PCAPS / name)) as reader:
        expected, stats = analyze_files([reader], OBSERVER, limits)
    # What differs is where the connection was read: an interface here (none named), a file there.
    for event in (*events, *expected):
        del event["event"]["id"]
    assert [event.pop("log") for event in expected] == [{"file": {"path": str(PCAPS / name)}}]
    assert events == expected and len(events) == 1
    assert sensor.stats.packets == stats.packets == len(source.frames)
    assert sensor.stats.kernel_received == len(source.frames)  # brought up to date by finish()


def test_quiet_link_still_reports_an_idle_connection():
    # The connection's first frames, stamped "now", then silence: no packet advances the clock.
    frames = frames_of("tls13-noauth.pcap")[:5]
    now = time.time()
    source = FakeSource([(now, linktype, frame) for _, linktype, frame in frames], batch=5)
    events: list[dict[str, Any]] = []
    sensor = sensor_for(source, events, limits=Limits(idle_timeout=0.2))
    sensor.step(0)
    assert events == []
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        sensor.step(0.05)
    assert [event["helloscope"]["end_reason"] for event in events] == ["idle_timeout"]
    assert sensor.stats.idle_evictions == 1


@pytest.mark.parametrize("written", [True, False])
def test_a_key_logged_after_the_handshake_but_before_the_report_is_used(tmp_path: Path, written: bool):
    frames = frames_of("tls13-required-presented.pcap")
    keylog = tmp_path / "client.keylog"
    keylog.write_text("")
    # Everything but the teardown: the connection is captured and still open.
    last_data = max(index for index, frame in enumerate(frames) if len(frame[2]) > 80)
    source = FakeSource(frames[: last_data + 1])
    events: list[dict[str, Any]] = []
    sensor = sensor_for(source, events, keylogs=(str(keylog),))
    drain(sensor, source)
    assert events == []
    if written:
        keylog.write_text((PCAPS / "tls13-required-presented.keylog").read_text())
    sensor.step(0)
    sensor.finish()
    assert [event["helloscope"]["decryption"]["status"] for event in events] == ["decrypted" if written else "no_keys"]


def test_key_log_follower_reads_appends_split_lines_truncation_and_replacement(tmp_path: Path):
    text = (PCAPS / "tls13-required-presented.keylog").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    assert len(lines) >= 5
    path = tmp_path / "keys"
    keys = KeyLog()
    follower = KeyLogFollower(str(path), keys)
    path.write_text(lines[0] + lines[1][:20])  # the second line is still being written
    assert follower.poll() == 1
    with path.open("a") as handle:
        handle.write(lines[1][20:])
    assert follower.poll() == 1 and follower.poll() == 0
    path.write_text(lines[2])  # truncated and rewritten (shorter than what was read)
    assert follower.poll() == 1
    replacement = tmp_path / "keys.new"
    replacement.write_text("".join(lines[2:5]))  # the same size as before or not: a new inode
    os.replace(replacement, path)
    assert follower.poll() == 2  # lines[2] was already known
    assert len(keys) == 5 and follower.problems == 0


def test_handshake_pcap_keeps_the_reported_connection_up_to_its_report(tmp_path: Path):
    frames = frames_of("tls12-noauth.pcap")
    pcap = tmp_path / "handshakes.pcapng"
    source = FakeSource(frames, batch=1)
    events: list[dict[str, Any]] = []
    sensor = sensor_for(source, events, write_pcap=str(pcap))
    # Step frame by frame to learn which frame made the report.
    reported_at = None
    while source.delivered < len(frames):
        sensor.step(0)
        if events and reported_at is None:
            reported_at = source.delivered
    sensor.finish()
    assert reported_at is not None and reported_at < len(frames)  # later frames exist and are left out
    with open_capture(str(pcap)) as reader:
        kept = [(timestamp, linktype, bytes(frame)) for timestamp, linktype, frame in reader]
    # Microsecond timestamps in the file, like the fixture's.
    assert [(round(t, 6), lt, f) for t, lt, f in kept] == [(round(t, 6), lt, f) for t, lt, f in frames[:reported_at]]


def test_run_sensor_reopens_on_hangup_and_ends_with_a_stats_event_on_terminate():
    frames = frames_of("tls13-flag62-honored.pcap")

    class SignallingSource(FakeSource):
        def poll(self, timeout: float) -> list[Frame]:
            if self.polls == 0:
                os.kill(os.getpid(), signal.SIGHUP)
            elif self.delivered == len(self.frames):
                os.kill(os.getpid(), signal.SIGTERM)
            return super().poll(timeout)

    source = SignallingSource(frames)
    sink = RecordingSink()
    logged: list[str] = []
    signals = Signals()
    settings = SensorSettings(Limits(idle_timeout=time.time()), OBSERVER)
    with signals.installed():
        stopped_by = run_sensor(source, settings, sink, lambda event: event, signals, 3600, logged.append)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert stopped_by == signal.SIGTERM and sink.reopened == 1 and sink.closed
    connection, stats = sink.events
    assert connection["helloscope"]["flag_outcome"] == "honored"
    assert stats["event"]["kind"] == "metric" and stats["event"]["dataset"] == "helloscope.stats"
    counters = stats["helloscope"]["stats"]
    assert counters["packets"] == counters["kernel_received"] == len(frames)
    assert counters["events_written"] == 1 and counters["tls_connections"] == 1
    assert logged[-1].startswith("stats ") and f"packets={len(frames)}" in logged[-1]


def test_a_stop_first_feeds_what_the_kernel_already_captured():
    frames = frames_of("tls13-flag62-honored.pcap")

    class StoppingSource(FakeSource):
        def poll(self, timeout: float) -> list[Frame]:
            if self.polls == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # the whole connection is still queued
            return super().poll(timeout)

    source = StoppingSource(frames, batch=2)
    sink = RecordingSink()
    signals = Signals()
    settings = SensorSettings(Limits(idle_timeout=time.time()), OBSERVER)
    with signals.installed():
        run_sensor(source, settings, sink, lambda event: event, signals, 3600, lambda message: None)
    connection, stats = sink.events
    assert connection["helloscope"]["end_reason"] != "capture_end"  # it concluded: every packet was fed
    assert stats["helloscope"]["stats"]["packets"] == len(frames)


def test_stats_event_is_an_ecs_metric_with_flat_counters():
    event = stats_event({"packets": 3, "kernel_dropped": 0}, OBSERVER, 0.0, 1.5)
    assert event["@timestamp"] == "1970-01-01T00:00:01.500000Z"
    assert event["event"]["start"] == "1970-01-01T00:00:00.000000Z"
    assert event["observer"]["name"] == "test-sensor"
    assert event["helloscope"] == {"stats": {"packets": 3, "kernel_dropped": 0}}


def test_handshake_pcap_bounds_what_it_holds_and_counts_what_it_lets_go(tmp_path: Path):
    frames = frames_of("tls13-noauth.pcap")
    segments = [(timestamp, linktype, frame, decode(linktype, frame)) for timestamp, linktype, frame in frames]
    stats = RunStats()
    bounds = HandshakeBounds(packets_per_flow=4, bytes_per_flow=1 << 20, total_bytes=1 << 20, flows=2)
    pcap = HandshakePcap(str(tmp_path / "h.pcapng"), stats, bounds)
    # Three flows for room for two: the first packets of two other connections, then this one's.
    for other in ("tls12-noauth.pcap", "tls13-required-missing.pcap"):
        timestamp, linktype, frame = frames_of(other)[0]
        segment = decode(linktype, frame)
        assert segment is not None
        pcap.keep(timestamp, linktype, frame, segment)
    for timestamp, linktype, frame, segment in segments:
        assert segment is not None
        pcap.keep(timestamp, linktype, frame, segment)
    assert stats.handshake_flows_dropped == 1
    reports: list[ConnectionReport] = []
    with open_capture(str(PCAPS / "tls13-noauth.pcap")) as reader:
        table = ConnectionTables(reports.append, RunStats(), Limits(idle_timeout=time.time()))
        feed_frames(reader, table, RunStats())
        table.flush()
    (report,) = reports
    pcap.reported(report)
    pcap.close()
    with open_capture(str(tmp_path / "h.pcapng")) as reader:
        kept = [bytes(frame) for _, _, frame in reader]
    assert kept == [frame for _, _, frame in frames[:4]]  # the first packets_per_flow packets only
    assert stats.handshake_packets_written == 4


@pytest.mark.parametrize(("interfaces", "named"), [(("eth0",), "eth0"), (("eth0", "eth1"), ["eth0", "eth1"])])
def test_live_events_name_the_capture_interface(interfaces: tuple[str, ...], named: object):
    source = FakeSource(frames_of("tls12-noauth.pcap"))
    events: list[dict[str, Any]] = []
    settings = SensorSettings(Limits(idle_timeout=time.time()), Observer("test-sensor", interfaces=interfaces))
    sensor = Sensor(source, settings, events.append, lambda message: None)
    drain(sensor, source)
    sensor.finish()
    (event,) = events
    assert event["observer"]["ingress"] == {"interface": {"name": named}} and "log" not in event
