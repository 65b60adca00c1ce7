"""``helloscope live``: capture → decode → flow table → outputs, until SIGTERM or SIGINT.

One :class:`Sensor` owns a frame source (a :class:`sniffer.livecapture.LiveCapture`), a flow table, the
followed key logs and the optional handshake pcap; :func:`run_sensor` drives it and owns the signals,
the periodic stats line and the outputs. Connections are reported when they conclude or go idle
(``FlowTable.expire`` about once a second, also on a quiet link); on SIGTERM/SIGINT every pending one is
reported before the outputs close. SIGHUP reopens the output files and the pcap (logrotate).

The final stats event (written to the outputs after the last connection) is shaped like an ECS metric::

    {"@timestamp": ..., "event": {"kind": "metric", "module": "helloscope", "dataset": "helloscope.stats",
     "start": ..., "end": ...}, "ecs": {...}, "observer": {...}, "helloscope": {"stats": {COUNTER: N, ...}}}
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final, Protocol

from parsers.keylog import KeyLog
from sniffer.events import ECS_VERSION, Observer, _iso, build_event
from sniffer.flows import FlowTable, Limits
from sniffer.keylog_follow import KeyLogFollower
from sniffer.livecapture import KernelStats
from sniffer.pcapwriter import HandshakePcap
from sniffer.pipeline import Frame, feed_frames
from sniffer.report import ConnectionReport
from sniffer.stats import RunStats, sensor_counters

POLL_SECONDS: Final = 0.25  # longest wait for frames: bounds how late a signal or an idle sweep is seen
EXPIRE_SECONDS: Final = 1.0  # idle sweeps on a quiet link
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

Event = dict[str, Any]
Log = Callable[[str], None]


class FrameSource(Protocol):
    """What the sensor needs of a capture (LiveCapture; a fake in unit tests)."""

    def poll(self, timeout: float) -> Sequence[Frame]: ...

    def kernel_stats(self) -> KernelStats: ...


class EventSink(Protocol):
    """What the sensor needs of its outputs (sniffer.outputs.Outputs)."""

    def write(self, event: Mapping[str, Any]) -> None: ...

    def reopen(self) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...

    def counters(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class SensorSettings:
    limits: Limits
    observer: Observer
    ports: frozenset[int] = frozenset()
    keylogs: tuple[str, ...] = ()  # followed as they grow
    write_pcap: str | None = None


class Sensor:
    """One frame source and its flow table; every reported connection goes to ``emit`` as an event."""

    def __init__(self, source: FrameSource, settings: SensorSettings, emit: Callable[[Event], None], log: Log) -> None:
        self.stats = RunStats()
        self._source = source
        self._settings = settings
        self._emit = emit
        self._log = log
        self._keys = KeyLog()
        self._followers = [KeyLogFollower(path, self._keys) for path in settings.keylogs]
        self._unreadable: set[str] = set()  # key logs already warned about, until readable again
        self._pcap = HandshakePcap(settings.write_pcap) if settings.write_pcap else None
        self._table = FlowTable(self._report, self.stats, settings.limits, settings.ports, self._keys)
        self._next_expiry = 0.0
        self.follow_keylogs(strict=True)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for frames and feed them; age out idle flows about once a second."""
        frames = self._source.poll(timeout)
        # After the poll, before the table: a secret logged before those packets were sent is in the
        # file now, and decryption runs when the connection is reported.
        self.follow_keylogs()
        if frames:
            pcap = self._pcap
            feed_frames(frames, self._table, self.stats, tap=None if pcap is None else pcap.keep)
        now = time.time()
        if now >= self._next_expiry:
            self._next_expiry = now + EXPIRE_SECONDS
            self._table.expire(now)
            if self._pcap is not None:
                self._pcap.expire(now, self._settings.limits.idle_timeout)

    def follow_keylogs(self, strict: bool = False) -> None:
        """Read what the key logs gained; ``strict``: an unreadable one raises OSError (startup)."""
        for follower in self._followers:
            try:
                added = follower.poll()
            except OSError as error:
                if strict:
                    raise
                if follower.path not in self._unreadable:
                    self._unreadable.add(follower.path)
                    self._log(f"warning: cannot read key log {follower.path}: {error.strerror}; will retry")
                continue
            self._unreadable.discard(follower.path)
            self.stats.keylog_secrets += added

    def finish(self) -> None:
        """Report every pending connection (stop requested)."""
        self.follow_keylogs()
        self._table.flush()
        if self._pcap is not None:
            self._pcap.close()

    def reopen(self) -> None:
        if self._pcap is not None:
            try:
                self._pcap.open()
            except OSError as error:
                self._log(f"warning: cannot reopen {self._pcap.path}: {error.strerror}; still writing the old file")

    def kernel_stats(self) -> KernelStats:
        return self._source.kernel_stats()

    def _report(self, report: ConnectionReport) -> None:
        if self._pcap is not None:
            self._pcap.reported(report)
        self._emit(build_event(report, self._settings.observer))
        hello = report.client_hello
        if hello is not None:
            # A sensor runs for days: a reported connection's secrets are not needed again.
            self._keys.discard(hello.random)


class Signals:
    """SIGTERM/SIGINT ask to stop (the first one wins), SIGHUP asks to reopen files."""

    def __init__(self) -> None:
        self.stop: int | None = None
        self._reopen = False

    def take_reopen(self) -> bool:
        requested, self._reopen = self._reopen, False
        return requested

    @contextmanager
    def installed(self) -> Iterator[Signals]:
        def on_stop(number: int, frame: FrameType | None) -> None:
            if self.stop is None:
                self.stop = number

        def on_hangup(number: int, frame: FrameType | None) -> None:
            self._reopen = True

        previous = {number: signal.getsignal(number) for number in (*STOP_SIGNALS, signal.SIGHUP)}
        for number in STOP_SIGNALS:
            signal.signal(number, on_stop)
        signal.signal(signal.SIGHUP, on_hangup)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def stats_event(counters: Mapping[str, int], observer: Observer, start: float, end: float) -> Event:
    """The run's counters as one ECS metric event (``event.dataset: helloscope.stats``)."""
    return {
        "@timestamp": _iso(end),
        "event": {
            "kind": "metric",
            "category": ["network"],
            "type": ["info"],
            "module": "helloscope",
            "dataset": "helloscope.stats",
            "start": _iso(start),
            "end": _iso(end),
        },
        "ecs": {"version": ECS_VERSION},
        "observer": {"name": observer.name, "product": "helloscope", "type": "sensor", "version": observer.version},
        "helloscope": {"stats": dict(counters)},
    }


def stats_line(counters: Mapping[str, int]) -> str:
    return "stats " + " ".join(f"{name}={value}" for name, value in counters.items())


def run_sensor(
    sensor: Sensor,
    outputs: EventSink,
    signals: Signals,
    observer: Observer,
    stats_interval: float,
    log: Log,
) -> int:
    """Run until a stop signal; report everything pending, write the stats event, close the outputs.

    Returns the signal that stopped the run. The caller installs ``signals`` before opening the capture
    so that no signal can arrive unhandled.
    """
    started = time.time()
    next_stats = time.monotonic() + stats_interval
    while signals.stop is None:
        if signals.take_reopen():
            outputs.reopen()
            sensor.reopen()
        sensor.step(POLL_SECONDS)
        if time.monotonic() >= next_stats:
            next_stats += stats_interval
            log(stats_line(sensor_counters(sensor.stats, sensor.kernel_stats(), outputs.counters())))
    sensor.finish()
    counters = sensor_counters(sensor.stats, sensor.kernel_stats(), outputs.counters())
    log(stats_line(counters))
    outputs.write(stats_event(counters, observer, started, time.time()))
    outputs.close()
    return signals.stop
