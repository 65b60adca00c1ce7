"""A real client whose ClientHello is re-framed into 1-5 byte records, against a real OpenSSL server.

The client is Python's ssl module driven through memory BIOs: its hello is cut into tiny handshake
records (RFC 8446 5.1 allows any non-zero length) before it goes on the socket; everything else is sent
as the library wrote it. ``openssl s_server`` completing the handshake proves the framing is legal. The
exchange is captured with tcpdump on loopback and analysed; the reported hello must be the one the
client built.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from helloscope.parsers.fingerprints import ja3, ja4
from helloscope.parsers.hello import parse_client_hello

from tests.helpers import analyze

STEP_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if os.geteuid() != 0:
        pytest.skip("capturing loopback traffic with tcpdump needs root")
    for tool in ("openssl", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    folder = tmp_path_factory.mktemp("tiny")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
        check=True,
        capture_output=True,
        timeout=STEP_TIMEOUT,
    )
    return key, cert


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("s_server did not start listening")


def reframe(records: bytes, size: int) -> bytes:
    """Handshake records re-cut into records of ``size`` bytes; other records unchanged."""
    out, pos = bytearray(), 0
    while pos < len(records):
        content, version, length = records[pos], records[pos + 1 : pos + 3], int.from_bytes(records[pos + 3 : pos + 5])
        payload = records[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if content != 0x16:
            out += records[pos - 5 - length : pos]
            continue
        for start in range(0, len(payload), size):
            piece = payload[start : start + size]
            out += b"\x16" + version + len(piece).to_bytes(2, "big") + piece
    return bytes(out)


def tiny_record_session(
    folder: Path, cert: tuple[Path, Path], size: int, tls: ssl.TLSVersion, record_per_segment: bool
) -> tuple[Path, bytes]:
    """Capture one HTTP exchange whose ClientHello went out in ``size``-byte records; (pcap, hello body)."""
    key, certfile = cert
    port = _free_port()
    capture = folder / f"tiny-{size}-{tls.name}-{record_per_segment}.pcap"
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-w", str(capture), f"tcp port {port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        assert tcpdump.stderr is not None
        while "listening on" not in tcpdump.stderr.readline():
            pass
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(certfile), "-key", str(key)]
            + ["-naccept", "2", "-www"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(port)  # that probe is the first of the two accepts
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = context.maximum_version = tls
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(incoming, outgoing, server_hostname="tiny.helloscope.test")
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            hello = outgoing.read()
            reframed = reframe(hello, size)
            if record_per_segment:
                # One record per TCP segment, as evasion tools send them: the signature spans segments.
                step = 5 + size
                for start in range(0, len(reframed), step):
                    sock.sendall(reframed[start : start + step])
                    time.sleep(0.002)  # so the kernel does not coalesce them into one segment
            else:
                sock.sendall(reframed)
            while True:
                try:
                    client.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    assert data, "the server closed the connection: it refused the tiny records"
                    incoming.write(data)
            sock.sendall(outgoing.read())
            client.write(b"GET / HTTP/1.0\r\n\r\n")
            sock.sendall(outgoing.read())
            reply = b""
            while b"</html>" not in reply.lower() and (data := sock.recv(65536)):
                incoming.write(data)
                with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    reply += client.read(65536)
            assert b"200 ok" in reply.lower()  # the server accepted the handshake and answered
        server.wait(timeout=STEP_TIMEOUT)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        time.sleep(0.2)
        tcpdump.terminate()
        tcpdump.wait(timeout=STEP_TIMEOUT)
    assert hello[0] == 0x16 and hello[5] == 1
    return capture, hello[9 : 9 + int.from_bytes(hello[6:9])]


def _check(capture: Path, body: bytes, server_name: str) -> None:
    original = parse_client_hello(body)
    events = [event for event in analyze(capture) if event["network"]["protocol"] == "tls"]
    assert len(events) == 1, events
    client = events[0]["tls"]["client"]
    assert client["server_name"] == server_name
    assert (client["ja3"], client["ja4"]) == (ja3(original), ja4(original))
    assert events[0]["helloscope"]["client_hello"]["cipher_suites"] == list(original.cipher_suites)
    assert events[0]["tls"].get("version") is not None  # the ServerHello was found after the tiny records


@pytest.mark.parametrize("tls", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_client_hello_in_tiny_records_from_a_real_client(tmp_path, certificate, size, tls):
    capture, body = tiny_record_session(tmp_path, certificate, size, tls, record_per_segment=False)
    _check(capture, body, "tiny.helloscope.test")


def test_client_hello_in_one_byte_records_one_record_per_segment(tmp_path, certificate):
    capture, body = tiny_record_session(tmp_path, certificate, 1, ssl.TLSVersion.TLSv1_3, record_per_segment=True)
    _check(capture, body, "tiny.helloscope.test")
