"""Test-side destinations for helloscope.sniffer.outputs: sample events, a flaky HTTP bulk/HEC receiver and a real
rsyslogd on loopback."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helloscope.sniffer.report.events import text_of

from tests.helpers import PCAPS, REPO

RESET = "reset"  # a fault: close the connection with a RST, without reading or answering the request


@cache
def _documented_events() -> tuple[dict[str, Any], ...]:
    """The real events docs/EVENTS.md shows (one per outcome), and one carrying the hostile fixture's SNI."""
    text = (REPO / "docs" / "EVENTS.md").read_text()
    events = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    events = [event for event in events if event.get("event", {}).get("dataset") == "helloscope.tls"]
    assert events, "docs/EVENTS.md shows no example event"
    hostile = json.loads((PCAPS / "hostile" / "hostile-strings.expected.json").read_text())
    server_name = bytes.fromhex(hostile["connections"][0]["sent"]["server_name_hex"])
    rogue = copy.deepcopy(events[0])
    rogue["tls"]["client"]["server_name"] = text_of(server_name)  # newline, NUL, ESC, bidi, invalid UTF-8
    return (*events, rogue)


def sample_events(count: int) -> list[dict[str, Any]]:
    """``count`` distinct real events, numbered in ``event.sequence`` (ECS) and ``event.id`` so order and
    duplicates show."""
    base = _documented_events()
    events = []
    for sequence in range(count):
        event = copy.deepcopy(base[sequence % len(base)])
        event["event"]["sequence"] = sequence
        event["event"]["id"] = f"{sequence:032x}"  # each copy its own connection, as the bulk _id
        events.append(event)
    return events


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on right now (so connections to it are refused until someone does)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


LOOPBACK_CA = PCAPS / "pki" / "ca.pem"


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A server certificate (and key) for 127.0.0.1, signed by the test CA ``LOOPBACK_CA`` from pcaps/pki."""
    ca_cert = x509.load_pem_x509_certificate(LOOPBACK_CA.read_bytes())
    ca_key = serialization.load_pem_private_key((PCAPS / "pki" / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback.helloscope.test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / "loopback.pem", directory / "loopback.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class BulkReceiver:
    """What an HTTP receiver got and how it misbehaves.

    ``faults`` are consumed one per request: an HTTP status to answer without keeping anything, ``RESET``,
    or a callable turning the parsed records of a request into per-item statuses (Elasticsearch items).
    """

    kind: str  # "bulk" (Elasticsearch) or "hec" (Splunk)
    faults: list[Any] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)  # kept, in arrival order
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # action lines (bulk) / HEC envelopes
    headers: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            fault = self.faults.pop(0) if self.faults else None
        if fault == RESET:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        if isinstance(fault, int):
            self._answer(handler, fault, b'{"error":"injected"}')
            return
        records = self._parse(body)
        statuses = fault(records) if callable(fault) else [201] * len(records)
        with self.lock:
            self.headers.append(dict(handler.headers.items()))
            for (envelope, document), status in zip(records, statuses, strict=True):
                if status < 300:
                    self.envelopes.append(envelope)
                    self.documents.append(document)
        if self.kind == "hec":
            self._answer(handler, 200, b'{"text":"Success","code":0}')
            return
        items = [
            {"create": {"_index": envelope["create"]["_index"], "status": status}}
            for (envelope, _), status in zip(records, statuses, strict=True)
        ]
        answer = {"took": 1, "errors": any(status >= 300 for status in statuses), "items": items}
        self._answer(handler, 200, json.dumps(answer).encode())

    def _parse(self, body: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        lines = [json.loads(line) for line in body.decode().splitlines()]
        if self.kind == "bulk":
            assert len(lines) % 2 == 0, "a _bulk body is action/document pairs"
            return list(zip(lines[::2], lines[1::2], strict=True))
        return [(envelope, envelope["event"]) for envelope in lines]

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sequences(self) -> list[int]:
        with self.lock:
            return [document["event"]["sequence"] for document in self.documents]


@contextmanager
def serving(receiver: BulkReceiver, port: int = 0, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """Run ``receiver`` on 127.0.0.1:``port`` in a thread, over TLS with ``tls`` (cert, key); yields the port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            receiver.handle(self)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ----- a real rsyslogd ---------------------------------------------------------------------------------

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
HAS_GTLS = any(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))  # Debian package rsyslog-gnutls
_FIELDS = "%pri% %app-name% %procid% %msgid% %structured-data% %inputname% %msg%\\n"


@dataclass(frozen=True, slots=True)
class Rsyslog:
    """A running rsyslogd: its input ports on 127.0.0.1, and the file it writes each message's fields to."""

    udp: int
    tcp: int
    tls: int | None  # None without rsyslog's TLS driver
    received: Path
    ca: Path  # the CA that signed rsyslogd's certificate and must sign the client's
    config: Path
    process: subprocess.Popen[bytes]

    def messages(self) -> list[dict[str, Any]]:
        lines = self.received.read_text(encoding="utf-8").splitlines() if self.received.exists() else []
        return [_syslog_fields(line) for line in lines]


def _syslog_fields(line: str) -> dict[str, Any]:
    pri, app, procid, msgid, structured, inputname, msg = line.split(" ", 6)
    return {"pri": pri, "app": app, "procid": procid, "msgid": msgid, "sd": structured, "input": inputname, "msg": msg}


def start_rsyslogd(config: Path, prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """rsyslogd in the foreground with ``config`` (``prefix``: e.g. ``ip netns exec NS`` to run it there)."""
    assert RSYSLOGD is not None
    pid = config.with_name("rsyslogd.pid")
    with open(config.with_name("rsyslogd.err"), "ab") as errors:  # a file: a full pipe would stall rsyslogd
        return subprocess.Popen(
            [*prefix, RSYSLOGD, "-n", "-f", str(config), "-i", str(pid)], stdout=errors, stderr=errors
        )


def stop_rsyslogd(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(5)


def _listening(port: int, prefix: Sequence[str]) -> bool:
    if prefix:  # another network namespace: ask from inside it
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=0.2)"
        return subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, timeout=10).returncode == 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def running_rsyslog(work: Path, prefix: Sequence[str] = ()) -> Iterator[Rsyslog]:
    """A real rsyslogd listening on 127.0.0.1 (UDP via imudp, TCP via imptcp, TLS via imtcp + gtls when
    the driver is installed), writing what it receives to a file in ``work``; stopped on exit. With a
    ``prefix`` that enters a network namespace, its ports must be free there, not here."""
    work.mkdir(parents=True, exist_ok=True)
    cert, key = loopback_certificate(work)
    config = work / "rsyslog.conf"
    udp, tcp, received, ca = free_port(socket.SOCK_DGRAM), free_port(), work / "received.log", LOOPBACK_CA
    tls = free_port() if HAS_GTLS else None
    tls_input = f"""
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{tls}")"""
    config.write_text(
        f"""
global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imptcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imptcp" address="127.0.0.1" port="{tcp}"){tls_input if tls else ""}
template(name="fields" type="string" string="{_FIELDS}")
action(type="omfile" file="{received}" template="fields")
"""
    )
    process = start_rsyslogd(config, prefix)
    try:
        ready = wait_until(
            lambda: process.poll() is None and all(_listening(port, prefix) for port in (tcp, tls) if port)
        )
        if not ready:
            raise RuntimeError(f"rsyslogd did not start: {(work / 'rsyslogd.err').read_text(errors='replace')}")
        yield Rsyslog(udp, tcp, tls, received, ca, config, process)
    finally:
        stop_rsyslogd(process)
