"""Legal TLS shapes and capture oddities whose report must not change (issue 15, items 13, 15, 17).

- 13: TLS 1.2 without keys: whether an encrypted alert after the handshake is listed must not depend on
  where TCP cut the byte stream (the record that settles the report ends it, not the segment).
- 15: a capture whose clock goes backwards never gives a negative ``event.duration``; it is flagged.
- 17: a correct key log is not overridden by a wrong secret embedded in the pcapng (nor the reverse):
  every known secret is tried, and ``helloscope.decryption.source`` says whose opened the records.

The captures are real fixtures (pcaps/), re-cut or re-timed here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.decode import Segment, decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.tables import ConnectionTables

from tests.helpers import ENCRYPTED_SERVER_ALERT, PCAPS, assert_schema_valid

TCP = 6
FIN = 0x01
Timed = list[tuple[float, Segment]]


def _segments(capture: Path) -> Timed:
    timed: Timed = []
    for timestamp, linktype, frame in open_capture(str(capture)):
        segment = decode(linktype, frame)
        if segment is not None and segment.proto == TCP:
            if "packet" in Segment._fields:
                # Without the frame: a rewritten segment has no checksum to check.
                segment = segment._replace(packet=b"", transport=0)
            timed.append((timestamp, segment))
    return timed


def _events(timed: Iterable[tuple[float, Segment]], keys: KeyLog | None = None) -> list[dict]:
    events: list[dict] = []
    tables = ConnectionTables(
        lambda report: events.append(build_event(report, Observer("test"))), RunStats(), keys=keys
    )
    for timestamp, segment in timed:
        tables.segment(timestamp, segment)
    tables.flush()
    return events


def _cut(timed: Timed, size: int) -> Timed:
    """Every payload in pieces of ``size`` bytes (a FIN stays on the last piece)."""
    out: Timed = []
    for timestamp, segment in timed:
        payload = segment.payload
        if len(payload) <= size:
            out.append((timestamp, segment))
            continue
        for offset in range(0, len(payload), size):
            last = offset + size >= len(payload)
            flags = segment.flags if last else segment.flags & ~FIN
            piece = payload[offset : offset + size]
            out.append(
                (timestamp, segment._replace(seq=(segment.seq + offset) & 0xFFFFFFFF, flags=flags, payload=piece))
            )
    return out


def _merge_next(timed: Timed, port: int, marker: bytes) -> Timed:
    """The server's segment holding ``marker`` carries its next data segment's bytes too (sent at once)."""
    out = list(timed)
    first = next(i for i, (_, s) in enumerate(out) if s.sport == port and marker in s.payload)
    second = next(i for i in range(first + 1, len(out)) if out[i][1].sport == port and out[i][1].payload)
    timestamp, segment = out[first]
    follower = out[second][1]
    assert follower.seq == (segment.seq + len(segment.payload)) & 0xFFFFFFFF
    out[first] = (timestamp, segment._replace(payload=segment.payload + follower.payload))
    del out[second]
    return out


def _findings(event: dict) -> dict:
    scope = event["helloscope"]
    return {
        key: scope[key]
        for key in (
            "certificate_request",
            "client_certificate",
            "alerts",
            "outcome",
            "outcome_evidence",
            "renegotiation",
        )
    } | {"established": event["tls"]["established"]}


# ----- 13: later encrypted alerts, whatever the segmentation ---------------------------------------

CCS_TLS12 = b"\x14\x03\x03\x00\x01\x01"


@pytest.mark.parametrize("name", ["tls12-noauth", "tls12-optional-missing", "tls12-resumed"])
def test_an_encrypted_alert_after_the_handshake_is_listed_whatever_the_segmentation(name: str) -> None:
    capture = PCAPS / f"{name}.pcap"
    timed = _segments(capture)
    port = timed[0][1].dport
    original = _events(timed)
    assert original
    # The same bytes in the same order, cut differently: identical findings.
    for size in (1, 5, 64):
        assert [_findings(event) for event in _events(_cut(timed, size))] == [_findings(e) for e in original], size
    # The server's Finished and its later alert in one segment: the server's alert is listed either way.
    merged = _events(_merge_next(timed, port, CCS_TLS12))
    for before, after in zip(original, merged, strict=True):
        server = [alert for alert in before["helloscope"]["alerts"] if alert["sender"] == "server"]
        assert server == [ENCRYPTED_SERVER_ALERT]
        assert [alert for alert in after["helloscope"]["alerts"] if alert["sender"] == "server"] == server


# ----- 15: time going backwards -------------------------------------------------------------------


def test_a_clock_that_goes_backwards_gives_no_negative_duration() -> None:
    timed = _segments(PCAPS / "tls12-noauth.pcap")
    start = timed[0][0]
    backwards = [(start - (timestamp - start), segment) for timestamp, segment in timed]
    (event,) = _events(backwards)
    assert event["event"]["duration"] == 0
    assert event["event"]["end"] == event["event"]["start"]
    assert "capture_time_went_backwards" in event["helloscope"]["anomalies"]
    assert_schema_valid([event], "backwards clock")
    (forward,) = _events(timed)
    assert forward["event"]["duration"] > 0
    assert "capture_time_went_backwards" not in forward["helloscope"]["anomalies"]


# ----- 17: key log and embedded secrets -----------------------------------------------------------


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _pcapng(capture: Path, secrets: str, out: Path) -> Path:
    """The capture as pcapng (µs timestamps) with ``secrets`` in a Decryption Secrets Block before the packets."""
    frames = list(open_capture(str(capture)))
    data = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    data += _block(1, struct.pack("<HHI", frames[0][1], 0, 0))
    raw = secrets.encode()
    data += _block(0x0A, struct.pack("<II", 0x544C534B, len(raw)) + raw)
    for timestamp, _, frame in frames:
        ticks = round(timestamp * 1_000_000)
        data += _block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    out.write_bytes(data)
    return out


def _wrong(keylog: str) -> str:
    """The same lines with every secret changed (its last byte flipped)."""
    lines = []
    for line in keylog.splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#"):
            secret = bytes.fromhex(fields[2])
            fields[2] = (secret[:-1] + bytes([secret[-1] ^ 0xFF])).hex()
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _keyed(capture: Path, keylog_text: str) -> dict:
    keys = KeyLog()
    keys.feed(keylog_text)  # what --keylog loads before any capture is read
    keys.finish()
    (event,), _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    return event


@pytest.mark.parametrize("name", ["tls13-required-presented", "tls12-required-presented", "quic-mtls-authenticated"])
def test_a_wrong_embedded_secret_does_not_override_a_correct_key_log(name: str, tmp_path: Path) -> None:
    right = (PCAPS / f"{name}.keylog").read_text()
    capture = _pcapng(PCAPS / f"{name}.pcap", _wrong(right), tmp_path / f"{name}.pcapng")
    decryption = _keyed(capture, right)["helloscope"]["decryption"]
    assert (decryption["status"], decryption["reason"], decryption.get("source")) == ("decrypted", None, "keylog")


@pytest.mark.parametrize("name", ["tls13-required-presented", "tls12-required-presented", "quic-mtls-authenticated"])
def test_a_correct_embedded_secret_opens_what_a_wrong_key_log_does_not(name: str, tmp_path: Path) -> None:
    right = (PCAPS / f"{name}.keylog").read_text()
    capture = _pcapng(PCAPS / f"{name}.pcap", right, tmp_path / f"{name}.pcapng")
    event = _keyed(capture, _wrong(right))
    decryption = event["helloscope"]["decryption"]
    assert (decryption["status"], decryption["reason"], decryption.get("source")) == ("decrypted", None, "pcapng")
    assert event["helloscope"]["client_certificate"]["state"] == "presented"
    assert_schema_valid([event], name)
