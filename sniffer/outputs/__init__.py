"""Event outputs: stdout, files, syslog, Elasticsearch ``_bulk`` and Splunk HEC, several at once.

Files and stdout are written synchronously (a line per event, flushed). Each network destination is a
:class:`~helloscope.sniffer.outputs.delivery.QueuedDestination`: a sender thread, a bounded memory queue and, with a
``spool_dir``, an on-disk spool in ``spool_dir/<hash of the destination>/`` that survives restarts. Without
a ``spool_dir`` events wait in memory only: a warning says so when the outputs open, and whatever is still
undelivered at ``close`` is counted as dropped.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from helloscope.sniffer.outputs.common import COUNTERS, warn
from helloscope.sniffer.report.events import to_json_line

if TYPE_CHECKING:
    import ssl

    from helloscope.sniffer.outputs.delivery import QueuedDestination, Transport
    from helloscope.sniffer.outputs.spool import Spool

__all__ = ["DeliveryOptions", "OutputError", "Outputs", "open_outputs"]

ACCEPTED_FORMS = (
    "-, PATH, file:PATH, syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT, "
    "syslog+tls://HOST:PORT[?ca=PEM&cert=PEM&key=PEM], http[s]://HOST:PORT/_bulk[?index=NAME], "
    "hec[s]://HOST:PORT[/PATH]?token=TOKEN"
)
_SYSLOG_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
_HEC_PATH = "/services/collector/event"
HEC_TOKEN_VARIABLE = "HELLOSCOPE_HEC_TOKEN"


class OutputError(Exception):
    """A destination the user named cannot be used (bad URL, unwritable file, unknown scheme): one line."""


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How network outputs queue, batch, retry and spool; files ignore them."""

    spool_dir: str | None = None  # where undelivered events wait on disk (per destination subdir)
    spool_limit: int = 1 << 30  # bytes per destination; beyond it events are dropped, counted, logged
    queue_events: int = 10_000  # in-memory queue per destination before spilling to the spool
    batch_events: int = 500  # HTTP batching by count ...
    batch_bytes: int = 4 << 20  # ... by size ...
    batch_seconds: float = 1.0  # ... and by time
    retry_max_seconds: float = 30.0  # exponential back-off ceiling


class _StreamOutput:
    """JSON lines appended to stdout or a file, flushed per event; a file is reopened after ``reopen``."""

    def __init__(self, path: str | None) -> None:
        self.name = path or "stdout"
        self._path = path
        self._stream: TextIO = sys.stdout if path is None else _open_append(path)
        self._reopen_requested = False
        self._failing = False
        self.counters = dict.fromkeys(COUNTERS, 0)

    def write(self, line: str) -> None:
        if self._reopen_requested:
            self._reopen()
        try:
            self._stream.write(line)
            self._stream.flush()
        except (OSError, ValueError) as error:
            self.counters["events_dropped"] += 1
            if not self._failing:
                self._failing = True
                warn(f"cannot write to {self.name}: {getattr(error, 'strerror', None) or error}; dropping events")
            return
        self._failing = False
        self.counters["events_written"] += 1

    def reopen(self) -> None:
        # Only flag it: reopen() runs from a signal handler, possibly in the middle of write().
        self._reopen_requested = self._path is not None

    def close(self) -> None:
        if self._path is not None:
            self._stream.close()
        else:
            self._stream.flush()

    def _reopen(self) -> None:
        self._reopen_requested = False
        assert self._path is not None
        try:
            stream = _open_append(self._path)
        except OutputError as error:
            warn(f"{error}; still writing to the file open before")
            return
        self._stream.close()
        self._stream = stream


def _open_append(path: str) -> TextIO:
    try:
        return open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until close or reopen
    except OSError as error:
        raise OutputError(f"cannot open output file {path}: {error.strerror or error}") from None


Encoder = Callable[[Mapping[str, Any], str], bytes]  # (event, its JSON text) -> one record for the destination


@dataclass(frozen=True, slots=True)
class _Network:
    """A network destination as parsed from its spec, before anything is opened."""

    transport: Transport  # its name (scheme://host:port/path, no secrets) keys the spool directory
    encode: Encoder


class Outputs:
    def __init__(self, streams: list[_StreamOutput], networks: list[tuple[QueuedDestination, Encoder]]) -> None:
        self._streams = streams
        self._networks = networks

    def write(self, event: Mapping[str, Any]) -> None:
        """One event (already field-selected); never blocks on a slow or dead destination."""
        self._write(to_json_line(dict(event)), event)

    def write_line(self, line: str) -> None:
        """One event as :func:`to_json_line` wrote it (already field-selected): what a worker sends."""
        self._write(line, None)

    def _write(self, line: str, event: Mapping[str, Any] | None) -> None:
        for stream in self._streams:
            stream.write(line)
        if self._networks:
            text = line.removesuffix("\n")
            if event is None:  # the network records are built from the event's fields
                event = orjson.loads(text)
            for destination, encode in self._networks:
                destination.write(encode(event, text))

    def reopen(self) -> None:
        """SIGHUP (logrotate): file outputs reopen their path before their next event."""
        for stream in self._streams:
            stream.reopen()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be within ``timeout``; the rest stays in the spool for the next run to send first."""
        deadline = time.monotonic() + timeout
        for destination, _ in self._networks:
            destination.begin_close(deadline)
        for destination, _ in self._networks:
            destination.finish_close()
        for stream in self._streams:
            stream.close()

    def counters(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTERS, 0)
        for counters in [stream.counters for stream in self._streams] + [d.counters() for d, _ in self._networks]:
            for name, value in counters.items():
                totals[name] += value
        return totals


def open_outputs(specs: Sequence[str], options: DeliveryOptions) -> Outputs:
    """Open every destination named by ``specs``; OutputError (one line) for the first unusable one."""
    streams: list[_StreamOutput] = []
    parsed: list[_Network] = []
    opened: list[tuple[QueuedDestination, Encoder]] = []
    try:
        for spec in specs:
            if "://" in spec and not spec.startswith("file:"):
                parsed.append(_parse_network(spec, options))
            else:
                streams.append(_parse_stream(spec))
        names = [network.transport.name for network in parsed]
        if len(set(names)) < len(names):
            raise OutputError(
                f"an output is named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
            )
        if parsed and options.spool_dir is None:
            warn(
                f"no spool directory: events for {', '.join(names)} wait in memory only "
                "and are lost if undelivered at exit"
            )
        if parsed:
            # The sender threads' code, like the transports', loads with the first network output.
            from helloscope.sniffer.outputs.delivery import BatchLimits, QueuedDestination

            limits = BatchLimits(
                options.batch_events, options.batch_bytes, options.queue_events, options.retry_max_seconds
            )
            for network in parsed:
                spool = _open_spool(network.transport.name, options)
                opened.append((QueuedDestination(network.transport, limits, spool), network.encode))
    except OutputError:
        for stream in streams:
            stream.close()
        for destination, _ in opened:
            destination.begin_close(time.monotonic())
            destination.finish_close()
        raise
    return Outputs(streams, opened)


def _parse_stream(spec: str) -> _StreamOutput:
    if spec == "-":
        return _StreamOutput(None)
    path = spec.removeprefix("file:")
    if not path:
        raise OutputError(f"output {spec!r} names no file; accepted forms: {ACCEPTED_FORMS}")
    # os.path.isdir answers False where the path cannot be looked at (too long a name, no permission):
    # opening the file then says why, where Path.is_dir raised
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a directory, not a file")
    return _StreamOutput(path)


def _parse_network(spec: str, options: DeliveryOptions) -> _Network:
    # The network transports (ssl, http.client) are imported here: a run writing files does not pay for them.
    from urllib.parse import parse_qs, unquote, urlsplit

    from helloscope.sniffer.outputs.http import (
        HttpTransport,
        bulk_outcome,
        bulk_record,
        hec_record,
        whole_batch_outcome,
    )
    from helloscope.sniffer.outputs.syslog import SyslogTransport, syslog_message

    try:
        url = urlsplit(spec)
        port = url.port
    except ValueError as error:
        raise OutputError(f"output {spec!r} is not a valid URL ({error}); accepted forms: {ACCEPTED_FORMS}") from None
    host = url.hostname
    scheme = url.scheme.lower()
    if not host:
        raise OutputError(f"output {spec!r} names no host; accepted forms: {ACCEPTED_FORMS}")
    query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
    shown_host = f"[{host}]" if ":" in host else host
    if scheme.startswith("syslog+") and scheme[7:] in _SYSLOG_PORTS:
        protocol = scheme[7:]
        port = port or _SYSLOG_PORTS[protocol]
        name = f"{scheme}://{shown_host}:{port}"
        tls = _tls_context(name, query) if protocol == "tls" else None
        return _Network(SyslogTransport(name, host, port, protocol, tls), syslog_message)
    linger = options.batch_seconds
    if scheme in ("http", "https"):
        port = port or (443 if scheme == "https" else 9200)
        path = url.path or "/_bulk"
        index = query.get("index") or "helloscope"
        name = f"{scheme}://{shown_host}:{port}{path}?index={index}"
        headers = {"Content-Type": "application/x-ndjson"}
        if url.username is not None:
            credentials = f"{unquote(url.username)}:{unquote(url.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        tls = _tls_context(name, query) if scheme == "https" else None
        transport = HttpTransport(
            name, host=host, port=port, path=path, headers=headers, linger=linger, tls=tls, outcome=bulk_outcome
        )
        return _Network(transport, bulk_record(index))
    if scheme in ("hec", "hecs"):
        port = port or 8088
        path = url.path or _HEC_PATH
        token = query.get("token") or os.environ.get(HEC_TOKEN_VARIABLE)
        if not token:
            raise OutputError(f"output {scheme}://{shown_host}:{port}{path} needs ?token= or {HEC_TOKEN_VARIABLE}")
        name = f"{scheme}://{shown_host}:{port}{path}"
        headers = {"Content-Type": "application/json", "Authorization": f"Splunk {token}"}
        tls = _tls_context(name, query) if scheme == "hecs" else None
        transport = HttpTransport(
            name, host=host, port=port, path=path, headers=headers, linger=linger, tls=tls, outcome=whole_batch_outcome
        )
        return _Network(transport, hec_record)
    raise OutputError(f"output {spec!r} has an unknown scheme {url.scheme!r}; accepted forms: {ACCEPTED_FORMS}")


def _tls_context(name: str, query: Mapping[str, str]) -> ssl.SSLContext:
    """Verify the server against ``ca`` (default: the system store); ``cert`` and ``key`` for client auth."""
    import ssl

    try:
        context = ssl.create_default_context(cafile=query.get("ca") or None)
        if query.get("cert"):
            context.load_cert_chain(query["cert"], query.get("key") or None)
        elif query.get("key"):
            raise OutputError(f"output {name} has key= without cert=")
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise OutputError(f"output {name}: cannot load its TLS certificates: {reason}") from None
    return context


def _open_spool(name: str, options: DeliveryOptions) -> Spool | None:
    if options.spool_dir is None:
        return None
    from pathlib import Path

    from helloscope.sniffer.outputs.spool import Spool, SpoolBusyError

    directory = Path(options.spool_dir) / hashlib.sha256(name.encode()).hexdigest()[:16]
    try:
        return Spool(directory, options.spool_limit)
    except SpoolBusyError as error:
        raise OutputError(str(error)) from None
    except OSError as error:
        raise OutputError(f"cannot use spool directory {directory}: {error.strerror or error}") from None
