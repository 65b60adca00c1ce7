"""QUIC with keys: reordered or duplicated datagrams give the report of the original order (issue 15, item 14).

The aioquic fixtures (pcaps/make_quic_fixtures.py) are rewritten here: datagrams shuffled within a window
of four (timestamps stay in capture order, as a sensor stamps what it receives), and one in five sent
twice. What the handshake showed must not change: the CertificateRequest, the client's certificate, the
alerts, the outcomes, what decryption read and the QUIC facts. Counters of what was on the wire
(packets per type, CRYPTO duplicates, records opened before the report settled) and a graceful
CONNECTION_CLOSE sent after the verdict may differ: they describe the delivery, not the handshake.
"""

from __future__ import annotations

import random

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.run.pipeline import feed_frames
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.tables import ConnectionTables

from tests.helpers import PCAPS

KEYED = ["quic-mtls-authenticated", "quic-mtls-declined", "quic-mtls-rejected", "quic-flag-honored", "quic-split-hello"]
WINDOW = 4
COUNTERS = {
    "client_initial_packets",
    "server_initial_packets",
    "handshake_packets",
    "crypto_duplicates",
    "undecryptable",
}

Frame = tuple[float, int, bytes]


def _events(frames: list[Frame], name: str) -> list[dict]:
    keys = KeyLog()
    keys.feed((PCAPS / f"{name}.keylog").read_text())
    keys.finish()
    events: list[dict] = []
    stats = RunStats()
    tables = ConnectionTables(lambda report: events.append(build_event(report, Observer("test"))), stats, keys=keys)
    feed_frames(frames, tables, stats, keys)
    tables.flush()
    return events


def _shuffled(frames: list[Frame], seed: int, duplicate: float) -> list[Frame]:
    rng = random.Random(seed)
    order: list[Frame] = []
    for start in range(0, len(frames), WINDOW):
        window = frames[start : start + WINDOW]
        rng.shuffle(window)
        for frame in window:
            order.append(frame)
            if rng.random() < duplicate:
                order.append(frame)
    stamps = sorted(frame[0] for frame in order)
    return [(stamp, linktype, data) for stamp, (_, linktype, data) in zip(stamps, order, strict=True)]


def _handshake_view(event: dict) -> dict:
    scope = event["helloscope"]
    decryption = {key: value for key, value in scope["decryption"].items() if key != "records"}
    close = scope["quic"]["connection_close"]
    quic = {key: value for key, value in scope["quic"].items() if key not in COUNTERS and key != "connection_close"}
    if close is not None and close["error_code"] != 0:
        quic["connection_close"] = close  # an error close is the verdict; a graceful one may come after it
    return {
        "tls": event["tls"],
        "decryption": decryption,
        "quic": quic,
        **{
            key: scope[key]
            for key in (
                "certificate_request",
                "client_certificate",
                "alerts",
                "outcome",
                "outcome_evidence",
                "flag_outcome",
                "flag_outcome_evidence",
                "anomalies",
            )
        },
    }


def _frames(name: str) -> list[Frame]:
    return list(open_capture(str(PCAPS / f"{name}.pcap")))


@pytest.mark.parametrize("name", KEYED)
def test_reordered_and_duplicated_datagrams_give_the_same_report(name: str) -> None:
    frames = _frames(name)
    (original,) = _events(frames, name)
    assert original["helloscope"]["decryption"]["status"] == "decrypted"
    expected = _handshake_view(original)
    for seed in range(12):
        (event,) = _events(_shuffled(frames, seed, 0.2), name)
        assert _handshake_view(event) == expected, f"seed {seed}"


@pytest.mark.parametrize("name", KEYED)
def test_a_duplicated_datagram_is_read_once(name: str) -> None:
    frames = _frames(name)
    (original,) = _events(frames, name)
    twice = [frame for frame in frames for _ in range(2)]
    (event,) = _events(twice, name)
    assert event["helloscope"]["decryption"] == original["helloscope"]["decryption"]
    assert _handshake_view(event) == _handshake_view(original)
