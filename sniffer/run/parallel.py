"""Worker processes that stream their events to one parent: ``analyze --workers N`` and ``live --workers N``.

The generic piece is :func:`run_workers`. Each job runs in its own forked process and is handed a
:class:`Worker`; the parent calls ``on_event`` for every event as the workers send it (so the output
order is the order in which workers report; one worker keeps report order), ``on_note`` for one-line
warnings, ``on_progress`` for progress, and returns the workers' :class:`~helloscope.sniffer.stats.RunStats`
summed into one :class:`Outcome`::

    def job(worker: Worker) -> None:            # runs in the worker process
        table = ConnectionTables(lambda report: worker.emit(build_event(report, observer)), worker.stats, ...)
        try:
            ...                                  # feed packets; worker.progress(bytes, packets) now and then
        finally:
            table.flush()                        # also runs when the parent asks the worker to stop

    outcome = run_workers([job] * n, on_event=write_event, on_note=warn)

- Finite jobs (``analyze``): the run ends when every job has returned.
- Long-running jobs (``live``: one LiveCapture per worker in one fanout group): the run ends when the
  parent gets SIGINT (Ctrl-C) or SIGTERM. It then sends SIGTERM to every worker; in the worker that
  raises :class:`KeyboardInterrupt` out of whatever it was doing (never in the middle of sending a
  message), so the job's ``finally`` flushes its pending connections, their events reach the parent,
  and :attr:`Outcome.stopped_by` names the signal. Workers ignore SIGINT themselves: a terminal's
  Ctrl-C reaches the whole process group, and the parent alone decides how a worker stops.
- A job that raises, a worker that dies (killed, crashed), or one that does not stop within ``grace``
  seconds of being asked: the other workers are stopped the same way (their last events are still
  delivered), then :class:`WorkerError` is raised with one line that says which worker and why.
  Leaving :func:`run_workers` in any other way (a callback raised) kills the workers: no orphans.

Workers are forked (jobs may be closures; nothing is pickled but the messages), so the parent must not
run other threads while it starts them: start the workers before anything that starts a thread.

:func:`analyze_parallel` is ``analyze --workers N`` on top of it; its docstring gives the semantics.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any, Final, cast

from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import CaptureReader, open_capture
from helloscope.sniffer.capture.filter import frame_filter
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.summary import Summary
from helloscope.sniffer.run.pipeline import CaptureEvents, absorb_secrets, count_sieved, damage_note, feed_frames
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Limits
from helloscope.sniffer.transport.tables import ConnectionTables

DEFAULT_GRACE: Final = 10.0  # seconds a stopping worker has to flush and send its last events
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG: Final = 1
_PROGRESS_EVERY: Final = 8192  # frames between two progress messages of a worker
_BATCH: Final = 32  # events an analysis worker sends in one message

Event = dict[str, Any] | str  # what a job sends: a build_event dict, or that event as its JSON line


class WorkerError(Exception):
    """A worker failed, died or would not stop; the message is one line meant for the user."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run in workers ended: the summed counters and the signal that stopped it."""

    stats: RunStats  # every worker's counters, summed
    stopped_by: int | None  # the signal (SIGINT, SIGTERM) that ended the run early, or None
    summary: Summary | None = None  # the summaries the jobs kept of their own events, merged


class Worker:
    """A job's side of the channel to the parent (lives in the worker process).

    ``stats`` is the worker's RunStats: the job counts into it and it is sent to the parent when the
    job ends, however it ends; so is ``summary``, when the job keeps one of the events it sends (as
    lines: the parent then has no event to count). ``index`` is this worker's number, 0 to ``count - 1``.
    """

    def __init__(self, index: int, count: int, channel: Connection, batch: int = 1) -> None:
        self.index = index
        self.count = count
        self.stats = RunStats()
        self.summary: Summary | None = None
        self._channel = channel
        self._batch = batch
        self._events: list[Event] = []
        self._sending = False
        self._stop_pending = False

    def emit(self, event: Event) -> None:
        """Send one event (a ``build_event`` dict, or its JSON line) to the parent (see ``batch``)."""
        self._events.append(event)
        if len(self._events) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Send the events held back for a batch now."""
        if self._events:
            self._sending = True  # from here on a stop signal waits until the events are sent
            events, self._events = self._events, []
            self._send(("events", events))

    def note(self, text: str) -> None:
        """Send a one-line warning for the user (after the events reported before it)."""
        self.flush()
        self._send(("note", text))

    def progress(self, size: int, packets: int) -> None:
        """Add ``size`` bytes read and ``packets`` packets handled to the parent's progress."""
        self.flush()
        self._send(("progress", size, packets))

    def _send(self, message: tuple[Any, ...]) -> None:
        self._sending = True
        try:
            self._channel.send(message)
        finally:
            self._sending = False
        if self._stop_pending:  # the stop signal came while the message was half written
            self._stop_pending = False
            raise KeyboardInterrupt

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the flush that follows must not be cut short
        if self._sending:
            self._stop_pending = True
        else:
            raise KeyboardInterrupt


Job = Callable[[Worker], None]


def run_workers(
    jobs: Sequence[Job],
    on_event: Callable[[Any], None],
    *,
    on_note: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    grace: float = DEFAULT_GRACE,
    batch: int = 1,
) -> Outcome:
    """Run each job in its own worker process; deliver what they send; return their summed counters.

    Callbacks run in the calling thread. ``on_start`` is called once every worker has been forked, before
    any other callback: the place to open what starts threads (an output's sender) or must not be
    inherited by the workers. Raises :class:`WorkerError` when a worker fails. With ``batch``
    above 1 a worker sends its events that many at a time (fewer messages, fewer wake-ups of the
    parent), and also whenever it sends progress or a note and when its job ends: for jobs that end, not
    for a live sensor, whose events must not wait.
    """
    context = multiprocessing.get_context("fork")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # a child would flush the parent's buffered output again
    stop: list[int] = []  # the signal the parent got, if any
    main_thread = threading.current_thread() is threading.main_thread()
    # Signals wait until the children have their own handlers and the parent has its.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    previous: dict[int, Any] = {}
    workers: list[_Remote] = []
    try:
        try:
            for index, job in enumerate(jobs):
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker_main,
                    args=(job, index, len(jobs), sender, mask, batch),
                    name=f"helloscope-worker-{index}",
                )
                process.daemon = True
                process.start()
                sender.close()
                workers.append(_Remote(index, len(jobs), process, receiver))
            if main_thread:
                for number in _STOP_SIGNALS:
                    previous[number] = signal.signal(number, lambda signum, frame: stop.append(signum))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if on_start is not None:
            on_start()
        return _collect(workers, stop, on_event, on_note, on_progress, grace)
    finally:
        for remote in workers:  # all gone already, unless a callback raised: then none is left behind
            if remote.process.is_alive():
                remote.process.kill()
            remote.process.join()
            remote.channel.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Remote:
    """The parent's view of one worker."""

    def __init__(self, index: int, count: int, process: Any, channel: Connection) -> None:
        self.name = f"worker {index + 1} of {count}"
        self.process = process
        self.channel = channel
        self.stats: RunStats | None = None  # set when the worker says it is done
        self.summary: Summary | None = None  # sent with the stats, by a job that keeps one
        self.failure: str | None = None


def _collect(
    workers: list[_Remote],
    stop: list[int],
    on_event: Callable[[Any], None],
    on_note: Callable[[str], None] | None,
    on_progress: Callable[[int, int], None] | None,
    grace: float,
) -> Outcome:
    running = {remote.channel: remote for remote in workers}
    failure: str | None = None
    deadline: float | None = None  # set once the workers were asked to stop
    while running:
        if deadline is None and (stop or failure):
            deadline = time.monotonic() + grace
            for remote in running.values():
                _signal(remote, signal.SIGTERM)
        if deadline is not None and time.monotonic() > deadline:
            for remote in running.values():
                _signal(remote, signal.SIGKILL)
                failure = failure or f"{remote.name} did not stop within {grace:g} s"
            break
        for channel in wait(list(running), timeout=0.2):
            remote = running[cast(Connection, channel)]
            try:
                while True:
                    _dispatch(remote, remote.channel.recv(), on_event, on_note, on_progress)
                    if not remote.channel.poll():
                        break
            except EOFError:  # the worker is gone: it said done, failed, or died
                del running[remote.channel]
                remote.process.join()
                if remote.stats is None and remote.failure is None:
                    remote.failure = f"{remote.name} died ({_exit_text(remote.process.exitcode)})"
                failure = failure or remote.failure
    if failure is not None:
        raise WorkerError(failure)
    total = RunStats()
    summary: Summary | None = None
    for remote in workers:
        if remote.stats is not None:
            add_stats(total, remote.stats)
        if remote.summary is not None:
            summary = summary or Summary()
            summary.merge(remote.summary)
    return Outcome(total, stop[0] if stop else None, summary)


def _dispatch(
    remote: _Remote,
    message: tuple[Any, ...],
    on_event: Callable[[Any], None],
    on_note: Callable[[str], None] | None,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    kind = message[0]
    if kind == "events":
        for event in message[1]:
            on_event(event)
    elif kind == "progress":
        if on_progress is not None:
            on_progress(message[1], message[2])
    elif kind == "note":
        if on_note is not None:
            on_note(message[1])
    elif kind == "done":
        remote.stats, remote.summary = message[1], message[2]
    else:  # "failed"
        remote.failure = f"{remote.name} failed: {message[1]}"


def _signal(remote: _Remote, number: int) -> None:
    pid = remote.process.pid
    if pid is not None and remote.process.exitcode is None:
        with contextlib.suppress(ProcessLookupError):  # it exited since the check
            os.kill(pid, number)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def add_stats(total: RunStats, part: RunStats) -> None:
    """Add ``part``'s counters to ``total``."""
    for item in fields(RunStats):
        if item.name == "decryption":
            total.decryption.update(part.decryption)
        else:
            setattr(total, item.name, getattr(total, item.name) + getattr(part, item.name))


def _worker_main(job: Job, index: int, count: int, channel: Connection, mask: set[signal.Signals], batch: int) -> None:
    """The worker process: run the job, then send its counters, or one line saying why it failed."""
    worker = Worker(index, count, channel, batch)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, worker._on_stop)
    _die_with_parent()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        try:
            try:
                job(worker)
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except KeyboardInterrupt:  # asked to stop: the job has flushed what it had
            pass
        except Exception as error:  # noqa: BLE001 - any failure of a job becomes the one line the user sees
            worker.flush()
            channel.send(("failed", _failure_text(error)))
            channel.close()
            os._exit(1)
        worker.flush()
        channel.send(("done", worker.stats, worker.summary))
        channel.close()
    except OSError:  # the parent is gone: nobody is left to tell
        os._exit(1)


def _failure_text(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        text += f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return text


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this worker when the parent dies (Linux), so none is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the broken pipe ends the worker at its next message
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


# ----- analyze --workers N -----------------------------------------------------------------------


def analyze_parallel(
    paths: Sequence[str],
    workers: int,
    observer: Observer,
    on_event: Callable[[Any], None],
    *,
    limits: Limits = DEFAULT_LIMITS,
    ports: frozenset[int] = frozenset(),
    keys: KeyLog | None = None,
    on_note: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    bpf: str | None = None,
    lines: Callable[[dict[str, Any]], str] | None = None,
) -> Outcome:
    """Analyse capture files with ``workers`` processes; the same events (as a set) and counters as one.

    ``bpf``: only frames matching this tcpdump filter, as if the others were not in the files.

    ``lines``: each worker turns its events into what the parent writes with this (the JSON line, fields
    selected) and counts them in a :class:`Summary` of its own; ``on_event`` then gets the lines and
    :attr:`Outcome.summary` is the workers' summaries merged. The parent is left only the writing,
    on cores the workers need.

    - At least as many files as workers: whole files are shared out, largest first to the least loaded
      worker. Each file is then a capture of its own: a connection that continues from one file into
      the next (a ring of rotated files) is reported once per file, one still open at the end of its
      file ends as ``capture_end`` (one process may find it idle by a later file's clock), and secrets
      embedded in one file decrypt only that file. Keys given in ``keys`` serve every worker; sealing
      them (:meth:`helloscope.parsers.keylog.KeyLog.seal`) has the effect it has in one process.
    - Fewer files: every worker reads every file and keeps the packets whose flow is its own
      (:func:`flow_owner`: a hash of the TCP/UDP 5-tuple that is the same in both directions), so each
      connection is followed whole by one worker; pcapng Decryption Secrets Blocks reach every worker.
      A frame that decodes to no flow is owned by worker 0. Each packet, file and embedded secret is
      counted by one worker only, so the summed counters equal one worker's. A worker's idle sweeps
      run on the capture clock of every frame, its own and the others', and the file's last frame
      expires what went silent, as in one process; since a flow silent past the idle timeout ended
      then whenever a sweep comes by (helloscope.sniffer.transport.tcp), the reports are the same. Only a capture whose
      timestamps go backwards can still differ in ``end_reason`` and ``idle_evictions``.
    - Each worker's flow table holds ``ceil(max_flows / workers)`` flows, so the flow cap bounds memory
      as with one worker; the cap is hit per worker.
    - Events reach ``on_event`` as workers report them (not merged by time). Damaged files give one
      note each through ``on_note`` (``stats.truncated_files`` counts them). ``on_progress(bytes,
      packets)`` adds bytes read and packets handled; ``on_start`` is as for :func:`run_workers`. Ask
      :func:`worker_count` first: ``paths`` may be pipes only if each gets a worker of its own.
    """
    limits = replace(limits, max_flows=-(-limits.max_flows // workers))
    settings = _Settings(observer, limits, ports, keys if keys is not None else KeyLog(), bpf, lines)
    if len(paths) >= workers:
        groups = _share_files(paths, workers)
        jobs: list[Job] = [_AnalysisJob(group, settings, split=False) for group in groups]
    else:
        jobs = [_AnalysisJob(paths, settings, split=True) for _ in range(workers)]
    return run_workers(jobs, on_event, on_note=on_note, on_progress=on_progress, on_start=on_start, batch=_BATCH)


def worker_count(paths: Sequence[str], workers: int) -> tuple[int, str | None]:
    """How many workers ``paths`` can use, and a note for the user when it is fewer than asked.

    Splitting by flow has every worker read every file, which a pipe cannot give: standard input is read
    by one worker, and named pipes (``<(tcpdump -w - ...)``) each by its own.
    """
    if workers > 1 and "-" in paths:
        return 1, "standard input cannot be split between workers: reading it with one"
    if len(paths) < workers and any(_stream(path) for path in paths):
        return len(paths), f"a pipe cannot be split between workers: {len(paths)} worker(s), one per file"
    return workers, None


def _stream(path: str) -> bool:
    """Whether ``path`` is something other than a regular file (a pipe): it can be read only once."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # opening it will say what is wrong
        return False


@dataclass(frozen=True, slots=True)
class _Settings:
    """What each worker analyses with, sent to it when it starts."""

    observer: Observer
    limits: Limits
    ports: frozenset[int]
    keys: KeyLog
    bpf: str | None = None
    lines: Callable[[dict[str, Any]], str] | None = None  # see analyze_parallel


def _share_files(paths: Sequence[str], workers: int) -> list[list[str]]:
    """Files shared out by size, largest first to the least loaded worker, each group in command-line order."""
    order = {path: position for position, path in enumerate(paths)}
    loads = [0] * workers
    groups: list[list[str]] = [[] for _ in range(workers)]
    for path in sorted(paths, key=_size, reverse=True):
        lightest = min(range(workers), key=lambda worker: (loads[worker], len(groups[worker])))
        groups[lightest].append(path)
        loads[lightest] += _size(path)
    return [sorted(group, key=order.__getitem__) for group in groups]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@dataclass(frozen=True, slots=True)
class _AnalysisJob:
    """One worker's whole files, or (``split``) its share of the flows of every file."""

    paths: Sequence[str]
    settings: _Settings
    split: bool

    def __call__(self, worker: Worker) -> None:
        _analyze(worker, self.paths, self.settings, split=self.split)


def _analyze(worker: Worker, paths: Sequence[str], settings: _Settings, *, split: bool) -> None:
    stats = worker.stats
    emit = CaptureEvents(settings.observer, _sender(worker, settings.lines))
    table = ConnectionTables(emit, stats, settings.limits, settings.ports, settings.keys)
    # compiled here: libpcap's programs live in this process
    matches = frame_filter(settings.bpf) if settings.bpf is not None else None
    counts = not split or worker.index == 0  # whose are the per-file counters when all read every file
    try:
        for path in paths:
            emit.reading(path)
            with open_capture(path) as reader:
                share = _Share(reader, worker, settings.keys, split, table, settings.limits.idle_timeout, matches)
                try:
                    feed_frames(share, table, stats)  # the share adds embedded secrets to the keys itself
                finally:
                    if reader.sieve is not None:
                        count_sieved(reader.sieve, stats)
                share.report_progress()
                if counts:
                    stats.files += 1
                    if reader.truncation is not None:
                        stats.truncated_files += 1
                        worker.note(damage_note(reader, reader.truncation))
    finally:
        table.flush()


def _sender(worker: Worker, lines: Callable[[dict[str, Any]], str] | None) -> Callable[[dict[str, Any]], None]:
    """How the worker sends an event: as it is, or (``lines``) as its line, counted in the worker's summary."""
    if lines is None:
        return worker.emit
    summary = worker.summary = Summary()

    def send(event: dict[str, Any]) -> None:
        summary.add(event)
        worker.emit(lines(event))

    return send


class _Share:
    """The frames of one capture that belong to one worker.

    Embedded key log secrets are added to the key log here, before the next frame of the file whoever
    owns it, so every worker knows a key when its packets need it, and only worker 0 counts them. It also
    sends the worker's progress now and then.

    Without a filter, the reader's sieve (the C core) takes the others' frames that do not move ``tick``
    and the own packets the flow table would only skim, so this loop meets only the rest.
    """

    __slots__ = (
        "_counted",
        "_keys",
        "_matches",
        "_packets",
        "_reader",
        "_reported_bytes",
        "_reported_packets",
        "_split",
        "_step",
        "_table",
        "_worker",
        "tick",
    )

    def __init__(
        self,
        reader: CaptureReader,
        worker: Worker,
        keys: KeyLog,
        split: bool,
        table: ConnectionTables,
        idle: float,
        matches: Callable[[int, bytes], bool] | None = None,
    ) -> None:
        self._table = table
        self._matches = matches
        self._step = max(1.0, idle / 10)
        self._reader = reader
        self._worker = worker
        self._keys = keys
        self._split = split
        self._counted = worker.index == 0 or not split
        self._reported_bytes = 0
        self._reported_packets = 0
        self._packets = 0
        # When the others' frames next move this worker's sweep clock (the sieve reads it too).
        self.tick = 0.0
        if matches is None:
            reader.sieve = table.sieve(self, worker.index, worker.count) if split else table.sieve()

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        reader = self._reader
        secrets = reader.secrets
        absorbed = 0
        me, count = self._worker.index, self._worker.count
        owner = flow_owner if self._split else None
        owned = 0
        step, expire = self._step, self._table.expire
        matches, sieve = self._matches, reader.sieve
        last: float | None = None
        for frames, item in enumerate(reader, 1):
            if len(secrets) != absorbed:
                absorbed = absorb_secrets(secrets, absorbed, self._keys, self._worker.stats if self._counted else None)
            if not frames % _PROGRESS_EVERY:
                self._packets = owned + (sieve.skimmed if sieve is not None else 0)
                self.report_progress()
            if matches is not None and not matches(item[1], item[2]):
                continue  # as if the frame were not in the file, as with one process
            last = item[0]
            if owner is None or owner(item[1], item[2], count) == me:
                owned += 1
                yield item
            elif item[0] >= self.tick:  # the clock moves on the others' packets too: sweep as one process would
                self.tick = item[0] + step
                expire(item[0])
        if sieve is not None:  # the last frames may be ones it took
            last = reader.last_timestamp
        if last is not None:  # at the capture's last frame, whoever owns it, as pipeline.feed_capture does
            expire(last)
        self._packets = owned + (sieve.skimmed if sieve is not None else 0)

    def report_progress(self) -> None:
        """Send the bytes and packets since the last report (bytes by one worker when all read the file)."""
        size = self._reader.bytes_read if self._counted else 0
        self._worker.progress(size - self._reported_bytes, self._packets - self._reported_packets)
        self._reported_bytes, self._reported_packets = size, self._packets


# ----- which worker owns a frame -----------------------------------------------------------------

_MIX: Final = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads the low bits that differ between flows


def flow_owner(linktype: int, frame: bytes, workers: int) -> int:
    """The worker (0 to ``workers - 1``) that follows the flow of this frame; 0 for a frame with no flow.

    The hash is symmetric (both directions of a flow give the same worker) and computed from the
    innermost TCP/UDP header that :func:`helloscope.sniffer.capture.decode.decode` finds: the one decoder
    there is, so a worker owns exactly the flows its table will see.
    """
    if fast.flow_owner is not None:  # every worker hashes every frame: in C when it is built
        owner = fast.flow_owner(linktype, frame, workers)
        if owner is not fast.NOT_MINE:
            return owner  # type: ignore[no-any-return]
    segment = decode(linktype, frame)
    if segment is None:
        return 0
    addresses = int.from_bytes(segment.src, "big") ^ int.from_bytes(segment.dst, "big")
    return owner_of(addresses, segment.sport ^ segment.dport, workers)


def owner_of(addresses: int, ports: int, workers: int) -> int:
    """The flow hash of XORed addresses and XORed ports (capture._core.flow_owner computes the same in C)."""
    return ((((addresses << 16) | ports) * _MIX) >> 40) % workers
