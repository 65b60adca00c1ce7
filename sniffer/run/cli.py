"""Command line: ``helloscope analyze FILE...``, ``helloscope live -i IFACE`` and ``helloscope summary FILE.jsonl``.

Exit status: 0 success (and ``live`` stopped by SIGTERM); 1 ``--strict`` and the run met damage or
anomalies; 2 the user must act (unreadable input, bad option, no capture permission); 130 interrupted
(SIGINT), 143 ``analyze`` stopped by SIGTERM. Messages are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any, TypeAlias

import click
from rich.console import Console

from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer import __version__
from helloscope.sniffer.capture.files import PCAP, CaptureError, CaptureReader, open_capture
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Limits
from helloscope.sniffer.transport.tables import ConnectionTables
from helloscope.sniffer.run.live import SensorSettings, Signals, run_sensor, run_sensor_workers
from helloscope.sniffer.capture.rings import (
    DEFAULT_BUFFER_MB,
    DEFAULT_SNAPLEN,
    CaptureOptions,
    LiveCapture,
    LiveCaptureError,
    drop_privileges,
)
from helloscope.sniffer.outputs import DeliveryOptions, OutputError, Outputs, open_outputs
from helloscope.sniffer.run.parallel import WorkerError, analyze_parallel, damage_note, worker_count
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.run.progress import NoProgress, ProgressBar, progress_bar, with_progress
from helloscope.sniffer.report.render import Summary, connections_table, print_summary
from helloscope.sniffer.stats import RunStats

EXIT_STRICT = 1
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

FieldPaths: TypeAlias = tuple[tuple[str, ...], ...]  # --fields, split at the dots


class _Fail(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"helloscope: error: {self.format_message()}", err=True)


def _warn(message: str) -> None:
    click.echo(f"helloscope: warning: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="helloscope")
def cli() -> None:
    """Passive TLS sensor: who advertises the request-mTLS flag, and how servers answer."""


def main() -> None:
    """Console entry point: a reader that closes the pipe (``| head``) ends the run quietly."""
    try:
        cli()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_STRICT)


def _limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The flow-table bounds and port filter, shared by analyze and live."""
    for option in reversed(
        (
            click.option(
                "--port",
                "ports",
                type=click.IntRange(0, 65535),
                multiple=True,
                help="Only examine TCP flows with this port on either side (repeatable). Default: every flow.",
            ),
            click.option(
                "--max-flows",
                type=click.IntRange(1),
                default=DEFAULT_LIMITS.max_flows,
                show_default=True,
                help="Flows tracked at once; the oldest is reported and evicted beyond this.",
            ),
            click.option(
                "--max-stream-bytes",
                type=click.IntRange(1024),
                default=DEFAULT_LIMITS.max_stream_bytes,
                show_default=True,
                help="Bytes examined per direction of a flow.",
            ),
            click.option(
                "--max-preamble-bytes",
                type=click.IntRange(0),
                default=DEFAULT_LIMITS.max_preamble_bytes,
                show_default=True,
                help="Plaintext searched for the start of TLS (STARTTLS and similar) before a flow is dropped.",
            ),
            click.option(
                "--idle-timeout",
                type=click.FloatRange(0, min_open=True),
                default=DEFAULT_LIMITS.idle_timeout,
                show_default=True,
                help="Seconds of capture time after which a silent flow is reported and dropped.",
            ),
        )
    ):
        command = option(command)
    return command


def _event_options(keylog_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Key logs, outputs, field selection and the sensor's name, shared by analyze and live."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option("--keylog", "keylogs", type=click.Path(dir_okay=False), multiple=True, help=keylog_help),
                click.option(
                    "-o",
                    "--output",
                    "outputs",
                    multiple=True,
                    metavar="SPEC",
                    help="Where events go (repeatable): - (stdout), PATH or file:PATH (JSON lines, appended), "
                    "syslog+udp|tcp|tls://HOST:PORT, http(s)://HOST:PORT/_bulk, hec(s)://HOST:PORT?token=T.",
                ),
                click.option(
                    "--spool-dir",
                    type=click.Path(file_okay=False),
                    default=None,
                    help="Where events for a slow or unreachable network output wait on disk, replayed in order.",
                ),
                click.option(
                    "--spool-limit",
                    type=click.IntRange(1),
                    default=DeliveryOptions().spool_limit,
                    show_default=True,
                    help="Bytes spooled per network output; beyond it events are dropped and counted.",
                ),
                click.option(
                    "--fields",
                    default=None,
                    metavar="A,B,C",
                    help="JSON output keeps only these dotted paths (e.g. source.ip,tls.client.ja4); "
                    "absent ones are null.",
                ),
                click.option("--sensor-name", default=None, help="observer.name in events (default: host name)."),
            )
        ):
            command = option(command)
        return command

    return decorate


@cli.command()
@click.argument("captures", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="json: one event per line on stdout; table: a readable table and the summary on stdout.",
)
@_limit_options
@_event_options("SSLKEYLOGFILE to decrypt with (repeatable). Secrets embedded in pcapng files are used too.")
@click.option("--strict", is_flag=True, help="Exit 1 if a capture is damaged or a connection had parse anomalies.")
@click.option("-q", "--quiet", is_flag=True, help="No summary and no progress bar on stderr.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes. With as many files as workers, whole files are shared out; with fewer, every "
    "worker reads each file and follows its share of the flows. Events come as workers report them.",
)
def analyze(
    captures: tuple[str, ...],
    output_format: str,
    ports: tuple[int, ...],
    max_flows: int,
    max_stream_bytes: int,
    max_preamble_bytes: int,
    idle_timeout: float,
    keylogs: tuple[str, ...],
    outputs: tuple[str, ...],
    spool_dir: str | None,
    spool_limit: int,
    fields: str | None,
    sensor_name: str | None,
    strict: bool,
    quiet: bool,
    workers: int,
) -> None:
    """Read pcap/pcapng FILEs (or - for stdin) and report every TLS connection.

    SIGINT and SIGTERM stop the run: connections still open are reported and the outputs closed.
    """
    if captures.count("-") > 1:
        raise _Fail("standard input (-) can be read only once")
    selected = _field_paths(fields, output_format, outputs)
    formats = set()
    for path in captures:
        if path != "-":
            with _open(path) as reader:  # refuse a bad file list before any event is written
                formats.add(reader.format)
    keys = KeyLog()
    for path in keylogs:
        _load_keylog(keys, path)
    if formats == {PCAP} and "-" not in captures:
        keys.seal()  # classic pcap has no Decryption Secrets Blocks: no key can arrive during the run
    workers, note = worker_count(captures, workers)
    if note is not None:
        _warn(note)
    summary = Summary()
    table_events: list[dict[str, Any]] = []
    observer = Observer(sensor_name or socket.gethostname())
    limits = Limits(max_flows, max_stream_bytes, 64 * 1024, max_preamble_bytes, idle_timeout)
    specs = outputs or (("-",) if output_format == "json" else ())
    sinks: list[Outputs] = []  # opened in this process, with workers only once they are forked

    def deliver(event: dict[str, Any]) -> None:
        bar.advance(reports=1)
        summary.add(event)
        if output_format == "table":
            table_events.append(event)
        for sink in sinks:
            sink.write(select_fields(event, selected) if selected else event)

    def open_sink() -> None:
        if specs:
            sinks.append(_open_outputs(specs, spool_dir, spool_limit))

    # Events streaming to the terminal the bar would be drawn on would tear it apart.
    streaming = "-" in specs and sys.stdout.isatty()
    with progress_bar(captures, quiet=quiet or streaming) as bar:
        try:
            if workers > 1:
                stats, stopped_by = _analyze_in_workers(
                    captures, workers, observer, deliver, limits, frozenset(ports), keys, bar, open_sink
                )
            else:
                open_sink()
                stats, stopped_by = _analyze_here(captures, observer, deliver, limits, frozenset(ports), keys, bar)
        finally:
            for sink in sinks:
                sink.close()
    damaged = stats.truncated_files > 0

    if output_format == "table":
        stdout_console = _console(sys.stdout)
        stdout_console.print(connections_table(table_events))
        print_summary(stdout_console, summary, stats.as_dict())
    elif not quiet:
        print_summary(_console(sys.stderr), summary, stats.as_dict())
    if stopped_by is not None:
        sys.exit(128 + stopped_by)
    if strict and (damaged or stats.connections_with_anomalies or stats.overlap_conflicts):
        _warn("--strict: the run met damaged input or protocol anomalies")
        sys.exit(EXIT_STRICT)


def _analyze_here(
    captures: tuple[str, ...],
    observer: Observer,
    deliver: Callable[[dict[str, Any]], None],
    limits: Limits,
    ports: frozenset[int],
    keys: KeyLog,
    bar: ProgressBar | NoProgress,
) -> tuple[RunStats, int | None]:
    """One process: every capture through one flow table; the counters and the signal that stopped it."""
    stats = RunStats()
    table = ConnectionTables(lambda report: deliver(build_event(report, observer)), stats, limits, ports, keys)
    try:
        with _stop_signals_interrupt():
            for path in captures:
                with _open(path) as reader:
                    truncation = feed_capture(reader, table, stats, keys, with_progress(reader, bar))
                    if truncation is not None:
                        _warn(damage_note(reader, truncation))
    except _Stopped as stop:
        return stats, stop.signal
    finally:
        table.flush()
    return stats, None


def _analyze_in_workers(
    captures: tuple[str, ...],
    workers: int,
    observer: Observer,
    deliver: Callable[[dict[str, Any]], None],
    limits: Limits,
    ports: frozenset[int],
    keys: KeyLog,
    bar: ProgressBar | NoProgress,
    open_sink: Callable[[], None],
) -> tuple[RunStats, int | None]:
    """``workers`` processes (helloscope.sniffer.run.parallel); the outputs open once they are forked (threads)."""
    try:
        outcome = analyze_parallel(
            captures,
            workers,
            observer,
            deliver,
            limits=limits,
            ports=ports,
            keys=keys,
            on_note=_warn,
            on_progress=lambda size, packets: bar.advance(size, packets),
            on_start=open_sink,
        )
    except WorkerError as error:
        raise _Failed(str(error)) from None
    return outcome.stats, outcome.stopped_by


class _Stopped(Exception):
    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.signal = number


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM end a file analysis where it is (as Ctrl-C always did), by exception."""

    def stop(number: int, frame: FrameType | None) -> None:
        raise _Stopped(number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@cli.command()
@click.option(
    "-i", "--interface", "interfaces", multiple=True, required=True, help="Capture on this interface (repeatable)."
)
@click.option("--bpf", default=None, metavar="EXPR", help="Capture filter in tcpdump syntax, e.g. 'tcp port 443'.")
@click.option(
    "--snaplen",
    type=click.IntRange(64, DEFAULT_SNAPLEN),
    default=DEFAULT_SNAPLEN,
    show_default=True,
    help="Bytes kept of each frame.",
)
@click.option(
    "--buffer-mb",
    type=click.IntRange(1, 4096),
    default=DEFAULT_BUFFER_MB,
    show_default=True,
    help="Kernel ring buffer per interface (and per worker), in MiB: room for bursts before the kernel drops.",
)
@click.option("--no-promisc", is_flag=True, help="Do not put the interfaces in promiscuous mode.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Capture processes sharing the load (Linux AF_PACKET fanout; a flow stays on one worker).",
)
@click.option("--user", default=None, metavar="NAME", help="Drop root for this user once the capture is open.")
@click.option(
    "--stats-interval",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds between counter lines on stderr.",
)
@click.option(
    "--write-pcap",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also keep the handshake packets of reported connections in this pcapng file (appended; "
    "with --workers, one file per worker: NAME.wN.EXT).",
)
@_limit_options
@_event_options("SSLKEYLOGFILE to decrypt with, followed as it grows (repeatable).")
def live(
    interfaces: tuple[str, ...],
    bpf: str | None,
    snaplen: int,
    buffer_mb: int,
    no_promisc: bool,
    workers: int,
    user: str | None,
    stats_interval: float,
    write_pcap: str | None,
    ports: tuple[int, ...],
    max_flows: int,
    max_stream_bytes: int,
    max_preamble_bytes: int,
    idle_timeout: float,
    keylogs: tuple[str, ...],
    outputs: tuple[str, ...],
    spool_dir: str | None,
    spool_limit: int,
    fields: str | None,
    sensor_name: str | None,
) -> None:
    """Capture from interfaces and report every TLS connection until SIGTERM or SIGINT.

    Connections are reported when they conclude or go idle; on SIGTERM/SIGINT the pending ones are
    reported, a final stats event is written and the outputs are closed. SIGHUP reopens output files
    and the --write-pcap file. Counters go to stderr every --stats-interval seconds and at exit.
    """
    selected = _field_paths(fields, "json", outputs)
    observer = Observer(sensor_name or socket.gethostname())
    settings = SensorSettings(
        Limits(max_flows, max_stream_bytes, 64 * 1024, max_preamble_bytes, idle_timeout),
        observer,
        frozenset(ports),
        tuple(keylogs),
        write_pcap,
    )
    # One capture per worker, all in one fanout group (the kernel hashes each flow to one of them).
    capture = CaptureOptions(
        tuple(interfaces),
        bpf,
        snaplen,
        not no_promisc,
        fanout_group=os.getpid() & 0xFFFF if workers > 1 else None,
        buffer_mb=buffer_mb,
    )

    def select(event: dict[str, Any]) -> dict[str, Any]:
        return select_fields(event, selected) if selected else event

    def open_sink() -> Outputs:
        sink = _open_outputs(outputs or ("-",), spool_dir, spool_limit)
        _log(f"listening on {', '.join(interfaces)}" + (f" with {workers} workers" if workers > 1 else ""))
        return sink

    signals = Signals()
    with signals.installed():
        sources: list[LiveCapture] = []
        try:
            for _ in range(workers):
                sources.append(_capture(capture))
            if user is not None:
                _drop_privileges(user)  # the sockets are open; nothing else is yet
            for path in keylogs:
                _check_readable(path)
            if write_pcap is not None:
                _check_writable(write_pcap)
            if workers == 1:
                stopped_by: int | None = _run_in_process(
                    sources[0], settings, open_sink(), select, signals, stats_interval
                )
            else:
                try:
                    stopped_by = run_sensor_workers(sources, settings, open_sink, select, stats_interval, _log)
                except WorkerError as error:
                    raise _Failed(str(error)) from None
        finally:
            for source in sources:
                source.close()
    if stopped_by == signal.SIGINT:
        sys.exit(EXIT_INTERRUPTED)


class _Failed(_Fail):
    """The run broke down (a worker died): what was reported is delivered, the rest is lost."""

    exit_code = EXIT_FAILED


def _run_in_process(
    source: LiveCapture,
    settings: SensorSettings,
    sink: Outputs,
    select: Callable[[dict[str, Any]], dict[str, Any]],
    signals: Signals,
    stats_interval: float,
) -> int:
    try:
        return run_sensor(source, settings, sink, select, signals, stats_interval, _log)
    except (OSError, LiveCaptureError) as error:  # an unwritable --write-pcap file; a capture that broke
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _Failed(f"{where}{detail}") from None


def _capture(options: CaptureOptions) -> LiveCapture:
    try:
        return LiveCapture(options)
    except LiveCaptureError as error:
        raise _Fail(str(error)) from None


def _drop_privileges(user: str) -> None:
    try:
        drop_privileges(user)
    except LiveCaptureError as error:
        raise _Fail(str(error)) from None


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise _Fail(f"cannot read key log {path}: {error.strerror}") from None


def _check_writable(path: str) -> None:
    """Refuse a --write-pcap file this user cannot create or append to, before capture starts."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _Fail(f"cannot write {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise _Fail(f"cannot write {path}: permission denied")


def _log(message: str) -> None:
    click.echo(f"helloscope: {message}", err=True)


@cli.command()
@click.argument("events_file", metavar="FILE.jsonl", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON document with the aggregates instead of tables.")
def summary(events_file: str, as_json: bool) -> None:
    """Aggregate stored events (analyze's JSON lines) by client, JA4 and server name."""
    totals = Summary()
    try:
        with click.open_file(events_file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    _add_stored(totals, events_file, number, line)
    except OSError as error:
        raise _Fail(f"cannot read {events_file}: {error.strerror}") from None
    if as_json:
        click.echo(json.dumps(totals.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_summary(_console(sys.stdout), totals)


def _add_stored(totals: Summary, path: str, number: int, line: str) -> None:
    """Count one stored event; a line that is not a whole event (``--fields`` output is not) is the user's to fix."""
    try:
        totals.add(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _Fail(f"{path}:{number}: not a complete helloscope event") from None


def _field_paths(fields: str | None, output_format: str, outputs: tuple[str, ...]) -> FieldPaths:
    if fields is None:
        return ()
    if output_format == "table" and not outputs:
        raise _Fail("--fields selects fields of JSON output; it has no effect with --format table")
    paths = tuple(tuple(path.strip().split(".")) for path in fields.split(",") if path.strip())
    if not paths or any("" in path for path in paths):
        raise _Fail(f"--fields needs dotted paths separated by commas, like source.ip,tls.client.ja4: {fields!r}")
    for path in paths:
        if any(other != path and other[: len(path)] == path for other in paths):
            raise _Fail(f"--fields: {'.'.join(path)} already includes the longer paths under it")
    return paths


def select_fields(event: dict[str, Any], paths: FieldPaths) -> dict[str, Any]:
    """Only ``paths`` of ``event``, nested as in the event, so jq filters work unchanged; absent ones null."""
    selected: dict[str, Any] = {}
    for path in paths:
        value: Any = event
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        target = selected
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return selected


def _console(stream: IO[str]) -> Console:
    # Rich assumes 80 columns when not on a terminal; tables written to a file should not fold.
    return Console(file=stream, width=None if stream.isatty() else 240)


def _open(path: str) -> CaptureReader:
    try:
        return open_capture(path)
    except CaptureError as error:
        raise _Fail(str(error)) from None


def _load_keylog(keys: KeyLog, path: str) -> None:
    """Add a key log file's secrets; a file with nothing usable in it is the user's to fix (exit 2)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as error:
        raise _Fail(f"cannot read key log {path}: {error.strerror}") from None
    before = len(keys)
    problems = keys.feed(text) + keys.finish()
    if len(keys) == before and (problems or not text.strip()):
        detail = f"line {problems[0].line}: {problems[0].reason}" if problems else "it is empty"
        raise _Fail(f"{path}: not an SSLKEYLOGFILE key log ({detail})")
    if problems:
        first = problems[0]
        _warn(f"{path}: {len(problems)} key log lines ignored (first: line {first.line}: {first.reason})")


def _open_outputs(specs: tuple[str, ...], spool_dir: str | None, spool_limit: int) -> Outputs:
    try:
        return open_outputs(specs, DeliveryOptions(spool_dir=spool_dir, spool_limit=spool_limit))
    except OutputError as error:
        raise _Fail(str(error)) from None


if __name__ == "__main__":
    main()
