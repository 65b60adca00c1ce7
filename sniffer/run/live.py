"""``helloscope live``: capture → decode → flow table → outputs, until SIGTERM or SIGINT.

One :class:`Sensor` owns a frame source (a :class:`helloscope.sniffer.capture.rings.LiveCapture`), a flow table, the
followed key logs and the optional handshake pcap; :func:`serve` runs it. :func:`run_sensor` does so in
this process; :func:`run_sensor_workers` in N worker processes (helloscope.sniffer.run.parallel), one capture each in
one fanout group, with the events written by the parent. Connections are reported when they conclude or
go idle (``ConnectionTables.expire`` about once a second, also on a quiet link); on SIGTERM/SIGINT every
pending one is reported before the outputs close. SIGHUP reopens the output files and the pcap files
(logrotate); the parent passes it on to its workers. With workers, ``--write-pcap NAME.EXT`` becomes one
file per worker, ``NAME.wN.EXT``: a pcapng section cannot have two writers.

The final stats event (written to the outputs after the last connection) is shaped like an ECS metric::

    {"@timestamp": ..., "event": {"kind": "metric", "module": "helloscope", "dataset": "helloscope.stats",
     "start": ..., "end": ...}, "ecs": {...}, "observer": {...}, "helloscope": {"stats": {COUNTER: N, ...}}}
"""

from __future__ import annotations

import importlib
import io
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.rings import KernelStats
from helloscope.sniffer.report.events import ECS_VERSION, Observer, build_event, iso_time
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.run.keylog_follow import KeyLogFollower
from helloscope.sniffer.run.parallel import Job, Worker, run_workers
from helloscope.sniffer.run.pcapwriter import HandshakePcap
from helloscope.sniffer.run.pipeline import Frame, feed_frames
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables

# What runs import when they first need it (start-up time, issue 13). A sensor that gives up root loads it
# all first: after the drop, the interpreter's own files may be unreadable (a venv in /root).
DEFERRED_MODULES: Final = (
    "helloscope.sniffer.transport.quic",
    "helloscope.sniffer.transport.dtls",
    "helloscope.parsers.dtls",
    "helloscope.parsers.x509",
    "helloscope.sniffer.report.render",
    "helloscope.sniffer.outputs.http",
    "helloscope.sniffer.outputs.syslog",
    "helloscope.sniffer.outputs.delivery",
    "helloscope.sniffer.outputs.spool",
    "helloscope.parsers.decrypt",
    "helloscope.parsers.tickets",
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.hashes",
    "cryptography.hazmat.primitives.kdf.hkdf",
    "cryptography.utils",
    "encodings.idna",  # a network output's host name
    "pathlib",  # an output file, a spool directory
    "urllib.parse",  # a network output's URL
)


def load_deferred_modules() -> None:
    """Import every module a run may import later (call it before dropping privileges)."""
    for name in DEFERRED_MODULES:
        importlib.import_module(name)
    # rich loads its emoji and Unicode width tables when it first draws them (module names that change
    # with its version): draw once, to nowhere
    from rich.console import Console

    Console(file=io.StringIO(), width=80).print(":a: ─ →")


POLL_SECONDS: Final = 0.25  # longest wait for frames: bounds how late a signal or an idle sweep is seen
EXPIRE_SECONDS: Final = 1.0  # idle sweeps on a quiet link
DRAIN_SECONDS: Final = 2.0  # at most this long feeding what was captured before a stop
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

Event = dict[str, Any]
Log = Callable[[str], None]


class FrameSource(Protocol):
    """What the sensor needs of a capture (LiveCapture; a fake in unit tests)."""

    def poll(self, timeout: float) -> Sequence[Frame]: ...

    def kernel_stats(self) -> KernelStats: ...


class EventSink(Protocol):
    """What the sensor needs of its outputs (helloscope.sniffer.outputs.Outputs)."""

    def write(self, event: Mapping[str, Any]) -> None: ...

    def reopen(self) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...

    def counters(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class SensorSettings:
    """What a live sensor analyses with: limits, observer, ports, the key logs it follows, the handshake pcap."""

    limits: Limits
    observer: Observer
    ports: frozenset[int] = frozenset()
    keylogs: tuple[str, ...] = ()  # followed as they grow
    write_pcap: str | None = None


class Sensor:
    """One frame source and its flow table; every reported connection goes to ``emit`` as an event."""

    def __init__(
        self,
        source: FrameSource,
        settings: SensorSettings,
        emit: Callable[[Event], None],
        log: Log,
        stats: RunStats | None = None,
    ) -> None:
        self.stats = RunStats() if stats is None else stats
        self._source = source
        self._settings = settings
        self._emit = emit
        self._log = log
        self._keys = KeyLog()
        self._followers = [KeyLogFollower(path, self._keys) for path in settings.keylogs]
        if not self._followers:
            self._keys.seal()  # no key can arrive: the flow table need not keep encrypted records
        self._unreadable: set[str] = set()  # key logs already warned about, until readable again
        self._flawed: set[str] = set()  # key logs whose unusable lines were already warned about
        self._pcap = HandshakePcap(settings.write_pcap, self.stats) if settings.write_pcap else None
        self._table = ConnectionTables(self._report, self.stats, settings.limits, settings.ports, self._keys)
        self._next_expiry = 0.0
        self.follow_keylogs(strict=True)

    def step(self, timeout: float) -> int:
        """Wait up to ``timeout`` for frames and feed them; age out idle flows about once a second.
        Returns how many frames came."""
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
        return len(frames)

    def drain(self) -> None:
        """Feed the frames the kernel already holds (stop requested); bounded, as a busy link never empties."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.step(0) and time.monotonic() < deadline:
            pass

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
            if follower.first_problem is not None and follower.path not in self._flawed:
                self._flawed.add(follower.path)
                problem = follower.first_problem
                first = f"line {problem.line}: {problem.reason}"
                self._log(f"warning: key log {follower.path}: unusable lines ignored (first: {first})")

    def finish(self) -> None:
        """Report every pending connection (stop requested); the counters are final after this."""
        self.follow_keylogs()
        self._table.flush()
        if self._pcap is not None:
            self._pcap.close()
        self.counters()

    def reopen(self) -> None:
        if self._pcap is not None:
            try:
                self._pcap.open()
            except OSError as error:
                self._log(f"warning: cannot reopen {self._pcap.path}: {error.strerror}; still writing the old file")

    def counters(self) -> RunStats:
        """The counters, with the kernel's brought up to date."""
        kernel = self._source.kernel_stats()
        self.stats.kernel_received = kernel.received
        self.stats.kernel_dropped = kernel.dropped
        return self.stats

    def _report(self, report: ConnectionReport) -> None:
        if self._pcap is not None:
            self._pcap.reported(report)
        self._emit(build_event(report, self._settings.observer))
        hello = report.client_hello
        if hello is not None and not self._keys.sealed:
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
    def installed(self, stops: bool = True) -> Iterator[Signals]:
        """Handle SIGHUP, and with ``stops`` SIGTERM/SIGINT; the previous handlers come back after."""

        def on_stop(number: int, frame: FrameType | None) -> None:
            if self.stop is None:
                self.stop = number

        def on_hangup(number: int, frame: FrameType | None) -> None:
            self._reopen = True

        numbers = (*STOP_SIGNALS, signal.SIGHUP) if stops else (signal.SIGHUP,)
        previous = {number: signal.getsignal(number) for number in numbers}
        if stops:
            for number in STOP_SIGNALS:
                signal.signal(number, on_stop)
        signal.signal(signal.SIGHUP, on_hangup)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def serve(
    sensor: Sensor, signals: Signals, stats_interval: float, on_stats: Callable[[], None], on_hangup: Callable[[], None]
) -> None:
    """Feed the sensor until ``signals.stop`` is set or a worker is stopped (helloscope.sniffer.run.parallel raises
    KeyboardInterrupt in it), calling ``on_stats`` every ``stats_interval`` seconds; then feed what the
    kernel already captured and report everything pending. Another exception only reports."""
    next_stats = time.monotonic() + stats_interval
    stopped = False
    try:
        while signals.stop is None:
            if signals.take_reopen():
                on_hangup()
                sensor.reopen()
            sensor.step(POLL_SECONDS)
            if time.monotonic() >= next_stats:
                next_stats += stats_interval
                on_stats()
        stopped = True
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        if stopped:
            sensor.drain()
        sensor.finish()


def stats_event(counters: Mapping[str, int], observer: Observer, start: float, end: float) -> Event:
    """The run's counters as one ECS metric event (``event.dataset: helloscope.stats``)."""
    return {
        "@timestamp": iso_time(end),
        "event": {
            "kind": "metric",
            "category": ["network"],
            "type": ["info"],
            "module": "helloscope",
            "dataset": "helloscope.stats",
            "start": iso_time(start),
            "end": iso_time(end),
        },
        "ecs": {"version": ECS_VERSION},
        "observer": {"name": observer.name, "product": "helloscope", "type": "sensor", "version": observer.version},
        "helloscope": {"stats": dict(counters)},
    }


# Counters of capture files: a live run reads none, and its stats lines would carry them as noise zeros.
_FILE_ONLY = frozenset({"files", "truncated_files"})


def stats_line(counters: Mapping[str, int]) -> str:
    return "stats " + " ".join(f"{name}={value}" for name, value in counters.items() if name not in _FILE_ONLY)


def run_sensor(
    source: FrameSource,
    settings: SensorSettings,
    outputs: EventSink,
    select: Callable[[Event], Event],
    signals: Signals,
    stats_interval: float,
    log: Log,
) -> int:
    """Run in this process until a stop signal; returns that signal. The caller installed ``signals``
    before opening the capture, so no signal can arrive unhandled. The outputs are closed however the
    run ends; OSError for an unusable key log or pcap file, or a capture that fails."""
    started = time.time()
    try:
        sensor = Sensor(source, settings, lambda event: outputs.write(select(event)), log)
    except BaseException:
        outputs.close()
        raise

    def log_stats() -> None:
        log(stats_line(sensor.counters().as_dict() | outputs.counters()))

    try:
        serve(sensor, signals, stats_interval, log_stats, outputs.reopen)
    finally:
        _conclude(sensor.stats, outputs, settings.observer, started, log)
    assert signals.stop is not None  # serve returns only once a stop signal came
    return signals.stop


def run_sensor_workers(
    sources: Sequence[FrameSource],
    settings: SensorSettings,
    open_outputs: Callable[[], EventSink],
    select: Callable[[Event], Event],
    stats_interval: float,
    log: Log,
) -> int | None:
    """Run one sensor per source, each in a worker process; the parent writes their events.

    The sources must be open before (they are inherited by the forked workers) and privileges dropped.
    The outputs are opened by the parent once its workers are forked (``on_start``): an output's sender
    threads must not exist at a fork. Returns the stop signal; raises helloscope.sniffer.run.parallel.WorkerError when
    a worker fails, and whatever ``open_outputs`` raises.
    """
    started = time.time()
    opened: list[EventSink] = []

    def on_hangup(number: int, frame: FrameType | None) -> None:
        if opened:
            opened[0].reopen()
        for child in multiprocessing.active_children():
            if child.pid is not None:
                os.kill(child.pid, signal.SIGHUP)

    jobs = [_sensor_job(source, settings, stats_interval) for source in sources]
    previous = signal.signal(signal.SIGHUP, on_hangup)
    try:
        outcome = run_workers(
            jobs,
            lambda event: opened[0].write(select(event)),
            on_note=log,
            on_start=lambda: opened.append(open_outputs()),
        )
    except BaseException:
        if opened:
            opened[0].close()  # what the workers sent before the failure is delivered or spooled
        raise
    finally:
        signal.signal(signal.SIGHUP, previous)
    _conclude(outcome.stats, opened[0], settings.observer, started, log)
    return outcome.stopped_by


def _sensor_job(source: FrameSource, settings: SensorSettings, stats_interval: float) -> Job:
    def job(worker: Worker) -> None:
        name = f"worker {worker.index + 1} of {worker.count}"
        mine = settings
        if settings.write_pcap is not None:
            mine = replace(settings, write_pcap=_worker_path(settings.write_pcap, worker.index))
        signals = Signals()
        with signals.installed(stops=False):  # the worker's stop is helloscope.sniffer.run.parallel's SIGTERM
            sensor = Sensor(source, mine, worker.emit, worker.note, worker.stats)
            worker.note(f"{name} started")

            def note_stats() -> None:
                worker.note(f"{name}: {stats_line(sensor.counters().as_dict())}")

            serve(sensor, signals, stats_interval, note_stats, lambda: None)

    return job


def _worker_path(path: str, index: int) -> str:
    """Worker ``index``'s own handshake file: a pcapng section cannot be shared by two writers."""
    original = Path(path)
    return str(original.with_name(f"{original.stem}.w{index + 1}{original.suffix}"))


def _conclude(stats: RunStats, outputs: EventSink, observer: Observer, started: float, log: Log) -> None:
    """The final stats line and event, then close the outputs."""
    counters = stats.as_dict() | outputs.counters()
    log(stats_line(counters))
    outputs.write(stats_event(counters, observer, started, time.time()))
    outputs.close()
