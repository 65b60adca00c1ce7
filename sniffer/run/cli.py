"""Command line: ``helloscope analyze FILE...``, ``helloscope live -i IFACE`` and ``helloscope summary FILE.jsonl``.

Exit status: 0 success (and ``live`` stopped by SIGTERM); 1 ``--strict`` and the run met damage,
anomalies or lost events; 2 the user must act (unreadable input, bad option, no capture permission);
130 interrupted (SIGINT), 143 ``analyze`` stopped by SIGTERM. Messages are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeAlias

import click
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer import __version__
from helloscope.sniffer.capture.compression import CompressionError, decompressed, read_errors
from helloscope.sniffer.capture.decode import undecodable_note
from helloscope.sniffer.capture.defaults import DEFAULT_BUFFER_MB, DEFAULT_SNAPLEN
from helloscope.sniffer.capture.files import (
    PCAP,
    CaptureError,
    CaptureReader,
    capture_files,
    is_capture_start,
    open_capture,
    open_error,
)
from helloscope.sniffer.outputs import DeliveryOptions, OutputError, Outputs, open_outputs
from helloscope.sniffer.report.events import Observer, to_json_line
from helloscope.sniffer.report.fields import KNOWN_FIELDS, is_known
from helloscope.sniffer.report.summary import (
    STATS_DATASET,
    TOP_GROUPS,
    StoredEventError,
    Summary,
    lookup,
    read_events,
)
from helloscope.sniffer.run.pipeline import CaptureEvents, damage_note, feed_capture
from helloscope.sniffer.run.progress import NoProgress, ProgressBar, progress_bar, with_progress
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Limits
from helloscope.sniffer.transport.tables import ConnectionTables

# What only some runs use (the live sensor and its capture, workers, BPF, rich; summary's and --fields'
# helpers) is imported where it is used: `analyze` starts in a fraction of the time (issue 13), which cron
# jobs and `find -exec` loops pay per file.
if TYPE_CHECKING:
    from helloscope.sniffer.capture.rings import CaptureOptions, LiveCapture
    from helloscope.sniffer.run.live import SensorSettings, Signals
    from rich.console import Console

EXIT_STRICT = 1
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PIPED_WIDTH = 120

FieldPaths: TypeAlias = tuple[tuple[str, ...], ...]  # --fields, split at the dots
Event: TypeAlias = dict[str, Any]


def _epilog(*examples: str) -> str:
    """Examples, then the exit codes, laid out as written (\\b keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {example}" for example in examples) + "\n\n" + _EXIT_CODES


_EXIT_CODES = """\b
Exit status:
  0    success; also a damaged capture (reported up to the damage)
  1    --strict: damage, anomalies or events lost by an output;
       or a worker failed
  2    the user must act: unreadable input, not a capture (or not
       JSON lines), a bad option
  130  interrupted by SIGINT; 143 stopped by SIGTERM"""


class ByteSize(click.ParamType):
    """A number of bytes, with an optional binary unit: 262144, 256k, 64M, 1G, 1GiB."""

    name = "size"
    _UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    _FORM = r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*"  # compiled (and cached by re) when a size is first given

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            size = value
        else:
            match = re.fullmatch(self._FORM, str(value), re.IGNORECASE)
            if match is None:
                self.fail(f"{value!r} is not a size (a number of bytes, or with a unit: 64k, 512M, 1G)", param, ctx)
            size = int(match[1]) * self._UNITS[match[2].lower()]
        if size < self.minimum:
            self.fail(f"{value} is less than the minimum, {self.minimum} bytes", param, ctx)
        return size


class _Fail(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"helloscope: error: {self.format_message()}", err=True)


def _warn(message: str) -> None:
    click.echo(f"helloscope: warning: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="helloscope")
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
                help="Only examine TCP flows and QUIC (UDP) connections with this port on either side "
                "(repeatable). Default: every flow.",
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
                type=ByteSize(1024),
                default=DEFAULT_LIMITS.max_stream_bytes,
                show_default=True,
                help="Bytes examined per direction of a flow.",
            ),
            click.option(
                "--max-preamble-bytes",
                type=ByteSize(0),
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
            click.option(
                "--max-memory",
                type=ByteSize(1 << 20),
                default=DEFAULT_LIMITS.max_memory,
                show_default=True,
                help="What connections may hold in all, as accounted (buffers and per-flow state); "
                "beyond it the oldest are reported and dropped.",
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
                    "syslog+udp|tcp|tls://HOST:PORT, http(s)://HOST:PORT/_bulk (index template: "
                    "schema/elasticsearch-template.json), hec(s)://HOST:PORT?token=T.",
                ),
                click.option(
                    "--spool-dir",
                    type=click.Path(file_okay=False),
                    default=None,
                    help="Where events for a slow or unreachable network output wait on disk, replayed in order.",
                ),
                click.option(
                    "--spool-limit",
                    type=ByteSize(1),
                    default=DeliveryOptions().spool_limit,
                    show_default=f"{DeliveryOptions().spool_limit >> 30}G",
                    help="Spool size per network output (bytes, or 512M, 1G, ...); beyond it events are dropped "
                    "and counted.",
                ),
                click.option(
                    "--fields",
                    default=None,
                    metavar="A,B,C",
                    help="JSON output keeps only these dotted paths of the event schema (e.g. "
                    "source.ip,tls.client.ja4); a path an event lacks is null, an unknown path an error.",
                ),
                click.option("--sensor-name", default=None, help="observer.name in events (default: host name)."),
            )
        ):
            command = option(command)
        return command

    return decorate


@cli.command(
    epilog=_epilog(
        "helloscope analyze capture.pcapng        # lines on a terminal, else JSON",
        "helloscope analyze --format table a.pcap b.pcap.gz",
        "helloscope analyze -q -o events.jsonl captures/   # a whole folder",
        "helloscope analyze --bpf 'tcp port 443' big.pcap.zst",
        "tcpdump -i eth0 -w - port 443 | helloscope analyze -",
    )
)
@click.argument("captures", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "line", "table"]),
    default=None,
    help="json: one event per line; line: one readable line per connection; table: a table and the summary "
    "on stdout. Default: line on a terminal without -o, else json.",
)
@click.option(
    "--bpf", default=None, metavar="EXPR", help="Only frames matching this tcpdump filter (libpcap), as in live."
)
@_limit_options
@_event_options("SSLKEYLOGFILE to decrypt with (repeatable). Secrets embedded in pcapng files are used too.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 if a capture is damaged, a connection had parse anomalies or an output lost events.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary, no progress bar and no library warnings on stderr.")
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
    output_format: str | None,
    bpf: str | None,
    ports: tuple[int, ...],
    max_flows: int,
    max_stream_bytes: int,
    max_preamble_bytes: int,
    idle_timeout: float,
    max_memory: int,
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
    """Read pcap/pcapng FILEs (gzip, xz, bzip2 or zstd-compressed too; - for stdin) and every capture
    file under each DIR, and report every TLS connection.

    SIGINT and SIGTERM stop the run: connections still open are reported and the outputs closed.
    """
    _route_warnings(quiet)
    captures = _expand_captures(captures)
    if output_format is None:
        output_format = "line" if not outputs and fields is None and sys.stdout.isatty() else "json"
    selected = _field_paths(fields, output_format, outputs)
    _check_outputs(outputs)
    matches = _bpf_filter(bpf)
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
    if workers > 1:
        from helloscope.sniffer.run.parallel import worker_count

        workers, note = worker_count(captures, workers)
        if note is not None:
            _warn(note)
    summary = Summary()
    table_events: list[dict[str, Any]] = []
    observer = Observer(sensor_name or socket.gethostname())
    limits = Limits(max_flows, max_stream_bytes, 64 * 1024, max_preamble_bytes, idle_timeout, max_memory)
    specs = outputs or (("-",) if output_format == "json" else ())
    sinks: list[Outputs] = []  # opened in this process, with workers only once they are forked

    def select(event: Event) -> Event:
        return select_fields(event, selected) if selected else event

    def deliver(event: Event) -> None:
        bar.advance(reports=1)
        summary.add(event)
        if output_format == "table":
            table_events.append(event)
        for sink in sinks:
            sink.write(event)

    def deliver_line(line: str) -> None:  # workers' events: they count them in summaries of their own
        bar.advance(reports=1)
        for sink in sinks:
            sink.write_line(line)

    def open_sink() -> None:
        if output_format == "line" or specs:
            sinks.append(_open_sink(output_format, specs, spool_dir, spool_limit, select))

    # Events streaming to the terminal the bar would be drawn on would tear it apart.
    streaming = ("-" in specs or output_format == "line") and sys.stdout.isatty()
    with progress_bar(captures, quiet=quiet or streaming) as bar:
        try:
            if workers > 1:
                lines = (lambda event: to_json_line(select(event))) if output_format == "json" else None
                stats, stopped_by = _analyze_in_workers(
                    captures,
                    workers,
                    observer,
                    deliver if lines is None else deliver_line,
                    limits,
                    frozenset(ports),
                    keys,
                    bar,
                    open_sink,
                    bpf,
                    lines,
                    summary,
                )
            else:
                open_sink()
                stats, stopped_by = _analyze_here(
                    captures, observer, deliver, limits, frozenset(ports), keys, bar, matches
                )
        finally:
            for sink in sinks:
                sink.close()
    damaged = stats.truncated_files > 0
    # What the outputs wrote depends on how many there are; what they lost is the run's to report.
    lost = _events_lost(sinks)
    counters = stats.as_dict() | {"events_lost": lost}

    if output_format == "table" or not quiet:
        from helloscope.sniffer.report.render import connections_table, print_summary

        if output_format == "table":
            stdout_console = _console(sys.stdout)
            connections_table(table_events).print(stdout_console)
            print_summary(stdout_console, summary, counters)
        else:
            print_summary(_console(sys.stderr), summary, counters)
    if stopped_by is not None:
        sys.exit(128 + stopped_by)
    if lost:
        _warn(f"{lost} events were lost by an output (dropped or refused)")
    if strict and (damaged or stats.connections_with_anomalies or stats.overlap_conflicts or lost):
        _warn("--strict: the run met damaged input, protocol anomalies or lost events")
        sys.exit(EXIT_STRICT)


class _Sink(Outputs):
    """The -o outputs, given events field-selected by ``select``, and with ``--format line`` one readable
    line per connection on ``lines`` first, as tcpdump prints packets.
    """

    def __init__(self, inner: Outputs | None, select: Callable[[Event], Event], lines: IO[str] | None) -> None:
        super().__init__([], [])
        self._inner = inner
        self._select = select
        self._console = _console(lines) if lines is not None else None
        encoding = (getattr(lines, "encoding", None) or "").lower().replace("-", "")
        self._arrow = "→" if encoding.startswith("utf") else ">"
        self._lines = 0

    def write_line(self, line: str) -> None:
        """An event as its JSON line, fields selected: for JSON outputs only (no readable line is drawn)."""
        if self._inner is not None:
            self._inner.write_line(line)

    def write(self, event: Event) -> None:
        # the live run's closing counters are its last stats line on stderr already
        if self._console is not None and lookup(event, "event.dataset") != STATS_DATASET:
            from helloscope.sniffer.report.render import connection_line

            self._console.print(connection_line(event, self._arrow), soft_wrap=True)
            self._lines += 1
        if self._inner is not None:
            self._inner.write(self._select(event))

    def reopen(self) -> None:
        if self._inner is not None:
            self._inner.reopen()

    def close(self, timeout: float = 5.0) -> None:
        if self._inner is not None:
            self._inner.close(timeout)

    def counters(self) -> dict[str, int]:
        inner = self._inner.counters() if self._inner is not None else super().counters()
        return inner | {"events_written": inner["events_written"] + self._lines}


def _open_sink(
    output_format: str,
    specs: tuple[str, ...],
    spool_dir: str | None,
    spool_limit: int,
    select: Callable[[Event], Event],
) -> Outputs:
    """The outputs for ``specs``; with ``--format line`` stdout shows lines and is not a JSON output."""
    lines = sys.stdout if output_format == "line" else None
    if lines is not None:
        specs = tuple(spec for spec in specs if spec != "-")
    return _Sink(_open_outputs(specs, spool_dir, spool_limit) if specs else None, select, lines)


def _whole(event: Event) -> Event:
    return event


def _events_lost(sinks: Iterable[Outputs]) -> int:
    """Events no output will deliver: dropped (no spool, destination down, spool full) or refused."""
    return sum(sink.counters()["events_dropped"] + sink.counters()["events_rejected"] for sink in sinks)


def _expand_captures(captures: tuple[str, ...]) -> tuple[str, ...]:
    """Each DIR becomes the capture files under it, recursively and sorted by path."""
    if captures.count("-") > 1:
        raise _Fail("standard input (-) can be read only once")
    expanded: list[str] = []
    for path in captures:
        if path != "-" and os.path.isdir(path):
            try:
                found = capture_files(path)
            except CaptureError as error:
                raise _Fail(str(error)) from None
            if not found:
                raise _Fail(f"{path}: no pcap or pcapng file in this directory")
            expanded += found
        else:
            expanded.append(path)
    return tuple(expanded)


def _bpf_filter(expression: str | None) -> Callable[[int, bytes], bool] | None:
    if expression is None:
        return None
    from helloscope.sniffer.capture.filter import frame_filter
    from helloscope.sniffer.capture.rings import LiveCaptureError

    try:
        matches = frame_filter(expression)
        matches(1, b"")  # compiled for Ethernet now, so a bad expression stops the run before any event
    except LiveCaptureError as error:
        raise _Fail(str(error)) from None
    return matches


def _check_outputs(specs: tuple[str, ...]) -> None:
    """An Elasticsearch output names its ``_bulk`` endpoint: a bare ``http://host:9200/`` is not guessed at."""
    web = [spec for spec in specs if spec[:8].lower().startswith(("http://", "https://"))]
    if not web:
        return
    from urllib.parse import urlsplit  # only for an HTTP output: a run writing files does without it

    for spec in web:
        try:
            url = urlsplit(spec)
        except ValueError:
            continue  # open_outputs says what is wrong with it
        if url.scheme.lower() in ("http", "https") and not url.path.rstrip("/").endswith("/_bulk"):
            where = f"{url.scheme}://{url.hostname or ''}{f':{url.port}' if _port(url) else ''}{url.path}"
            raise _Fail(f"output {where}: name the Elasticsearch _bulk endpoint, e.g. http://HOST:9200/_bulk")


def _port(url: Any) -> int | None:
    try:
        return url.port  # type: ignore[no-any-return]
    except ValueError:
        return None  # open_outputs says what is wrong with it


def _route_warnings(quiet: bool) -> None:
    """Library warnings (cryptography's deprecations) are one helloscope line each, and none under -q."""
    if quiet:
        warnings.simplefilter("ignore")
        return
    warnings.simplefilter("default")  # each once per place it comes from

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        _warn(f"{category.__name__}: {message}")

    warnings.showwarning = show


def _analyze_here(
    captures: tuple[str, ...],
    observer: Observer,
    deliver: Callable[[dict[str, Any]], None],
    limits: Limits,
    ports: frozenset[int],
    keys: KeyLog,
    bar: ProgressBar | NoProgress,
    matches: Callable[[int, bytes], bool] | None = None,
) -> tuple[RunStats, int | None]:
    """One process: every capture through one flow table; the counters and the signal that stopped it."""
    stats = RunStats()
    emit = CaptureEvents(observer, deliver)
    table = ConnectionTables(emit, stats, limits, ports, keys)
    try:
        with _stop_signals_interrupt():
            for path in captures:
                emit.reading(path)
                with _open(path) as reader:
                    # without a bar the reader is iterated directly: one generator less per packet
                    frames = reader if isinstance(bar, NoProgress) else with_progress(reader, bar)
                    if matches is not None:
                        from helloscope.sniffer.capture.filter import filtered

                        frames = filtered(frames, matches)
                    packets, undecoded = stats.packets, stats.undecoded_frames
                    truncation = feed_capture(reader, table, stats, keys, frames, sieved=matches is None)
                    if truncation is not None:
                        _warn(damage_note(reader, truncation))
                    read = stats.packets - packets
                    if read and stats.undecoded_frames - undecoded == read:
                        _warn(undecodable_note(path, read, reader.linktypes))
    except _Stopped as stop:
        return stats, stop.signal
    finally:
        table.flush()
    return stats, None


def _analyze_in_workers(
    captures: tuple[str, ...],
    workers: int,
    observer: Observer,
    deliver: Callable[[Any], None],
    limits: Limits,
    ports: frozenset[int],
    keys: KeyLog,
    bar: ProgressBar | NoProgress,
    open_sink: Callable[[], None],
    bpf: str | None,
    lines: Callable[[Event], str] | None,
    summary: Summary,
) -> tuple[RunStats, int | None]:
    """``workers`` processes (helloscope.sniffer.run.parallel); the outputs open once they are forked (threads).

    With ``lines`` the workers send events as lines and count them themselves: their summaries join ``summary``.
    """
    from helloscope.sniffer.run.parallel import WorkerError, analyze_parallel

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
            bpf=bpf,
            lines=lines,
        )
    except WorkerError as error:
        raise _Failed(str(error)) from None
    if outcome.summary is not None:
        summary.merge(outcome.summary)
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


@cli.command(
    epilog=_epilog(
        "sudo helloscope live -i eth0 --bpf 'tcp port 443 or udp port 443'",
        "sudo helloscope live -i eth0 --user helloscope -o file:/var/log/hs.jsonl",
        "sudo helloscope live -i any -o syslog+tcp://siem:514 --spool-dir /var/hs",
    )
)
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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "line"]),
    default=None,
    help="Events on stdout: json lines, or one readable line per connection. Default: line on a terminal "
    "without -o, else json.",
)
@_limit_options
@_event_options("SSLKEYLOGFILE to decrypt with, followed as it grows (repeatable).")
def live(
    interfaces: tuple[str, ...],
    output_format: str | None,
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
    max_memory: int,
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
    from helloscope.sniffer.capture.rings import CaptureOptions
    from helloscope.sniffer.run.live import SensorSettings, Signals, load_deferred_modules, run_sensor_workers
    from helloscope.sniffer.run.parallel import WorkerError

    _route_warnings(False)
    if output_format is None:
        output_format = "line" if not outputs and fields is None and sys.stdout.isatty() else "json"
    selected = _field_paths(fields, output_format, outputs)
    _check_outputs(outputs)
    observer = Observer(sensor_name or socket.gethostname(), interfaces=tuple(interfaces))
    settings = SensorSettings(
        Limits(max_flows, max_stream_bytes, 64 * 1024, max_preamble_bytes, idle_timeout, max_memory),
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

    def select(event: Event) -> Event:
        return select_fields(event, selected) if selected else event

    def open_sink() -> Outputs:
        sink = _open_sink(output_format, outputs or ("-",), spool_dir, spool_limit, select)
        _log(f"listening on {', '.join(interfaces)}" + (f" with {workers} workers" if workers > 1 else ""))
        return sink

    signals = Signals()
    with signals.installed():
        sources: list[LiveCapture] = []
        try:
            for _ in range(workers):
                sources.append(_capture(capture))
            if user is not None:
                load_deferred_modules()  # what a lazy import would read later may be root's alone
                _drop_privileges(user)  # the sockets are open; nothing else is yet
            for path in keylogs:
                _check_readable(path)
            if write_pcap is not None:
                _check_writable(write_pcap)
            if workers == 1:
                stopped_by: int | None = _run_in_process(
                    sources[0], settings, open_sink(), _whole, signals, stats_interval
                )
            else:
                try:
                    stopped_by = run_sensor_workers(sources, settings, open_sink, _whole, stats_interval, _log)
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
    from helloscope.sniffer.capture.rings import LiveCaptureError
    from helloscope.sniffer.run.live import run_sensor

    try:
        return run_sensor(source, settings, sink, select, signals, stats_interval, _log)
    except (OSError, LiveCaptureError) as error:  # an unwritable --write-pcap file; a capture that broke
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _Failed(f"{where}{detail}") from None


def _capture(options: CaptureOptions) -> LiveCapture:
    from helloscope.sniffer.capture.rings import LiveCapture, LiveCaptureError

    try:
        return LiveCapture(options)
    except LiveCaptureError as error:
        raise _Fail(str(error)) from None


def _drop_privileges(user: str) -> None:
    from helloscope.sniffer.capture.rings import LiveCaptureError, drop_privileges

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


@cli.command(
    epilog=_epilog(
        "helloscope summary events.jsonl",
        "helloscope summary '/var/log/helloscope/events.jsonl*'  # rotated logs",
        "helloscope summary --json --top 20 a.jsonl b.jsonl.gz",
        "helloscope analyze -q big.pcap | helloscope summary -",
    )
)
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="One JSON document with the aggregates instead of tables.")
@click.option(
    "--top",
    type=click.IntRange(1),
    default=None,
    help=f"Groups shown per table (default {TOP_GROUPS}) and in --json (default: all).",
)
def summary(paths: tuple[str, ...], as_json: bool, top: int | None) -> None:
    """Aggregate stored events (what analyze and live write, whole or trimmed with --fields) by client, JA4
    and server. FILEs may be globs, gzip/xz/bzip2/zstd-compressed, or - for stdin.
    """
    totals = Summary()
    for path in _event_files(paths):
        _read_stored(totals, path)
    if totals.missing:
        lacking = ", ".join(f"{path} ({count})" for path, count in sorted(totals.missing.items()))
        _warn(f"events without some fields the summary uses (written with --fields?): {lacking}; counted as unknown")
    if as_json:
        click.echo(json.dumps(totals.as_dict(top), ensure_ascii=False, indent=2))
    else:
        from helloscope.sniffer.report.render import print_summary

        print_summary(_console(sys.stdout), totals, dict(totals.stats), top or TOP_GROUPS)


def _event_files(paths: tuple[str, ...]) -> list[str]:
    """Paths as given, and globs the shell left alone (quoted) expanded in name order."""
    import glob

    files: list[str] = []
    for path in paths:
        if path == "-" or os.path.exists(path) or not glob.has_magic(path):
            files.append(path)
            continue
        matched = sorted(glob.glob(path))
        if not matched:
            raise _Fail(f"{path}: no such file, and no file matches it")
        files += matched
    if files.count("-") > 1:
        raise _Fail("standard input (-) can be read only once")
    return files


def _read_stored(totals: Summary, path: str) -> None:
    """Add one file of stored events; anything that is not helloscope's JSON lines is one line and exit 2."""
    name = "<stdin>" if path == "-" else path
    try:
        stream = _open_events(path)
    except OSError as error:
        raise _Fail(open_error(name, error, "a file of events")) from None
    except CompressionError as error:
        raise _Fail(f"{name}: {error}") from None
    try:
        with stream:
            first = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
            if len(first) == 4 and is_capture_start(first):
                raise _Fail(f"{name}: a capture file, not JSON lines (helloscope analyze reads captures)")
            for _ in read_events(stream, totals):
                pass
    except StoredEventError as error:
        raise _Fail(f"{name}: {error}") from None
    except read_errors() as error:
        detail = getattr(error, "strerror", None) or error
        raise _Fail(f"{name}: cannot read ({detail})") from None


def _open_events(path: str) -> BinaryIO:
    if path == "-":
        return decompressed(sys.stdin.buffer, None)[0]
    return decompressed(open(path, "rb"), path)[0]  # noqa: SIM115 - the caller closes it


def _field_paths(fields: str | None, output_format: str, outputs: tuple[str, ...]) -> FieldPaths:
    if fields is None:
        return ()
    if output_format != "json" and not outputs:
        raise _Fail(f"--fields selects fields of JSON output; it has no effect with --format {output_format}")
    paths = tuple(tuple(path.strip().split(".")) for path in fields.split(",") if path.strip())
    if not paths or any("" in path for path in paths):
        raise _Fail(f"--fields needs dotted paths separated by commas, like source.ip,tls.client.ja4: {fields!r}")
    for path in paths:
        if any(other != path and other[: len(path)] == path for other in paths):
            raise _Fail(f"--fields: {'.'.join(path)} already includes the longer paths under it")
        dotted = ".".join(path)
        if not is_known(dotted):
            import difflib

            close = difflib.get_close_matches(dotted, sorted(KNOWN_FIELDS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (see schema/event.schema.json)"
            raise _Fail(f"--fields: {dotted} is not a field of helloscope's events{hint}")
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
    """A console as wide as the terminal; piped, COLUMNS, else the terminal the user reads (``| less``),
    else PIPED_WIDTH: rich would assume 80 columns, narrow for a file, and what does not fit is drawn as
    blocks anyway."""
    from rich.console import Console

    if stream.isatty() or "COLUMNS" in os.environ:
        return Console(file=stream)
    width = PIPED_WIDTH
    if sys.stderr.isatty():
        with suppress(OSError):
            width = os.get_terminal_size(sys.stderr.fileno()).columns
    return Console(file=stream, width=width)


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
