"""Test-only access to real TLS bytes in public captures, reassembled by tshark.

tshark's ``follow,tcp,raw`` gives each TCP stream's bytes per direction in order, whatever the
encapsulation (VLAN, Geneve, STARTTLS preamble), so the parsers under test see exactly what the
sniffer's reassembly will hand them. Tests skip when tshark is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helloscope.parsers.records import HandshakeMessage, HandshakeReader, Record, RecordReader
from helloscope.parsers.registry import ALERT, CHANGE_CIPHER_SPEC, HANDSHAKE


def _tshark(*args: str) -> str:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    return subprocess.run(["tshark", "-n", *args], capture_output=True, text=True, check=True, timeout=300).stdout


@dataclass(frozen=True)
class TcpStream:
    index: int
    client: bytes  # bytes from the connection's first sender (tshark's Node 0)
    server: bytes


def tcp_streams(capture: Path) -> list[TcpStream]:
    indices = sorted({int(v) for v in _tshark("-r", str(capture), "-T", "fields", "-e", "tcp.stream").split()})
    if not indices:
        return []
    follows: list[str] = []
    for index in indices:
        follows += ["-z", f"follow,tcp,raw,{index}"]
    out = _tshark("-r", str(capture), "-q", *follows)
    streams: list[TcpStream] = []
    for block in out.split("Follow: tcp,raw")[1:]:
        index = int(block.split("tcp.stream eq ", 1)[1].split()[0])
        client, server = bytearray(), bytearray()
        for line in block.splitlines():
            text = line.strip()
            if not text or not all(c in "0123456789abcdef" for c in text):
                continue
            (server if line.startswith("\t") else client).extend(bytes.fromhex(text))
        streams.append(TcpStream(index, bytes(client), bytes(server)))
    return sorted(streams, key=lambda s: s.index)


def tls_start(data: bytes) -> int:
    """Where the first handshake or alert record starts, past any STARTTLS or proxy preamble (-1 if none)."""
    return next(
        (i for i in range(len(data) - 2) if data[i] in (ALERT, HANDSHAKE) and data[i + 1] == 3 and data[i + 2] <= 4), -1
    )


def _lone_hello(payload: bytes) -> bool:
    return payload[:1] in (b"\x01", b"\x02") and int.from_bytes(payload[1:4], "big") == len(payload) - 4


def plaintext_records(data: bytes) -> list[Record]:
    """The handshake and alert records of one direction that are still in clear.

    After a ChangeCipherSpec, TLS 1.2 handshake records are encrypted; in TLS 1.3 the CCS is a dummy
    and the hellos after a HelloRetryRequest may follow it in clear. Application data ends it.
    """
    start = tls_start(data)
    if start < 0:
        return []
    out: list[Record] = []
    after_ccs = False
    for record in RecordReader().feed(data[start:]):
        if record.content_type == CHANGE_CIPHER_SPEC:
            after_ccs = True
        elif record.content_type not in (ALERT, HANDSHAKE) or (after_ccs and not _lone_hello(record.payload)):
            break
        else:
            out.append(record)
    return out


def plaintext_handshake(data: bytes) -> list[HandshakeMessage]:
    reader = HandshakeReader()
    messages: list[HandshakeMessage] = []
    for record in plaintext_records(data):
        if record.content_type == HANDSHAKE:
            messages += reader.feed(record.payload)
    return messages


def frame_payload(capture: Path, frame: int) -> bytes:
    """The TCP payload of one frame (for single-segment messages such as SSLv2 hellos)."""
    out = _tshark("-r", str(capture), "-Y", f"frame.number=={frame}", "-T", "fields", "-e", "tcp.payload")
    return bytes.fromhex(out.strip().replace(":", ""))
