"""Issue 15, "Done when": however TCP cuts, reorders and repeats the bytes of a connection, its report is
the same.

Every TCP fixture in pcaps/ (the UDP ones have no TCP to cut) is replayed with each data segment cut
into random pieces, the pieces (and the FIN) of each run of packets one side sends before the other
answers shuffled, and some pieces sent twice. Reordering stays inside such a run, as it does on a real
path: the other side's packets, and the acknowledgements they carry, come after every byte they answer.
The events must equal those of the capture as recorded, but for what must differ: the reordering and
retransmission counters and the event times.

Before that, the hellos may be re-framed into TLS records of 1 to N bytes (RFC 8446 5.1 allows any
non-zero length; censorship-evasion tools do it): the client's plaintext handshake records before the
server's first byte, and a TLS 1.3 server's ServerHello record. Sequence and acknowledgement numbers
after them move with the longer streams. Then the streams' byte counts differ too, and nothing else.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PCAPS, segments_of

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
TCP = 6
HANDSHAKE, CHANGE_CIPHER_SPEC, APPLICATION_DATA = 22, 20, 23
SEQ_MOD = 1 << 32
Packets = list[tuple[float, Segment]]


def _load(capture: Path) -> tuple[Packets, KeyLog | None]:
    keylog = capture.with_suffix(".keylog")
    keys = None
    if keylog.exists():
        keys = KeyLog()
        keys.feed(keylog.read_text())
        keys.finish()
    return segments_of(capture), keys


FIXTURES = {
    capture.relative_to(PCAPS).as_posix(): _load(capture)
    for capture in sorted(PCAPS.rglob("*.pcap"))
    if any(segment.proto == TCP and segment.payload for _, segment in _load(capture)[0])
}


def _events(packets: Packets, keys: KeyLog | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def emit(report: ConnectionReport) -> None:
        events.append(build_event(report, Observer("test")))

    tables = ConnectionTables(emit, RunStats(), Limits(), keys=keys)
    for timestamp, segment in packets:
        tables.segment(timestamp, segment)
    tables.flush()
    return events


def _comparable(event: dict[str, Any], reframed: bool = False) -> str:
    scope = dict(event["helloscope"])
    differ = ("out_of_order", "retransmitted", *(("client_bytes", "server_bytes") if reframed else ()))
    scope["tcp"] = {k: v for k, v in scope["tcp"].items() if k not in differ}
    kept = {k: v for k, v in event.items() if k not in ("event", "@timestamp")}
    kept["helloscope"] = scope
    if reframed:  # record headers added or removed: ECS's byte counts are helloscope.tcp's
        kept["source"], kept["destination"] = (
            {k: v for k, v in event[side].items() if k != "bytes"} for side in ("source", "destination")
        )
    return json.dumps(kept, sort_keys=True, default=str)


BASELINES = {name: [_comparable(event) for event in _events(*loaded)] for name, loaded in FIXTURES.items()}


def _pieces(segment: Segment, rng: random.Random, max_pieces: int) -> list[Segment]:
    """The segment cut at random points; the FIN (which follows the last byte) stays on the last piece."""
    payload = segment.payload
    if len(payload) < 2 or segment.flags & (SYN | RST):
        return [segment._replace(packet=b"")]
    cuts = sorted(rng.sample(range(1, len(payload)), min(len(payload) - 1, rng.randint(0, max_pieces - 1))))
    bounds = [0, *cuts, len(payload)]
    pieces = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        last = end == len(payload)
        pieces.append(
            segment._replace(
                seq=(segment.seq + start) % (1 << 32),
                payload=payload[start:end],
                flags=segment.flags if last else segment.flags & ~FIN,
                packet=b"",
            )
        )
    return pieces


def _records(stream: bytes) -> list[tuple[int, int, int]]:
    """(offset, length, content type) of each whole TLS record from the start of a stream."""
    records, offset = [], 0
    while offset + 5 <= len(stream):
        length = 5 + int.from_bytes(stream[offset + 3 : offset + 5], "big")
        if offset + length > len(stream):
            break
        records.append((offset, length, stream[offset]))
        offset += length
    return records


def _reframe_record(record: bytes, rng: random.Random, largest: int) -> bytes:
    """One plaintext record as consecutive records of 1 to ``largest`` bytes each."""
    header, body, out, at = record[:3], record[5:], [], 0
    while at < len(body):
        size = rng.randint(1, largest)
        out.append(header + min(size, len(body) - at).to_bytes(2, "big") + body[at : at + size])
        at += size
    return b"".join(out)


def _reframe(packets: Packets, rng: random.Random, largest: int) -> Packets | None:
    """The connection with its hellos in tiny records; None when the capture is not one clean TCP
    connection starting with TLS (the property is about framing, not about repairing a capture)."""
    tcp = [(timestamp, segment) for timestamp, segment in packets if segment.proto == TCP]
    if not tcp or not tcp[0][1].flags & SYN or len({(s.sport, s.dport) for _, s in tcp}) != 2:
        return None
    client = (tcp[0][1].src, tcp[0][1].sport)
    isn: dict[bool, int] = {}
    streams: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
    for _, segment in tcp:
        side = (segment.src, segment.sport) == client
        if segment.flags & SYN:
            isn[side] = segment.seq
        elif segment.payload:
            if side not in isn or (segment.seq - isn[side] - 1) % SEQ_MOD != len(streams[side]):
                return None  # a retransmission or a reordering as recorded
            streams[side] += segment.payload
    # The client's handshake records before the server's first byte; a TLS 1.3 ServerHello record
    # (followed at once by a ChangeCipherSpec or protected data, so nothing after it is traced).
    chosen: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    server_first = next((s for _, s in tcp if (s.src, s.sport) != client and s.payload), None)
    for side, stream in streams.items():
        records = _records(bytes(stream))
        if side:
            limit = len(stream) if server_first is None else _client_bytes_before(tcp, client, server_first)
            chosen[side] = [(o, n) for o, n, kind in records if kind == HANDSHAKE and o + n <= limit]
            continue
        if len(records) > 1 and records[0][2] == HANDSHAKE and records[1][2] in (CHANGE_CIPHER_SPEC, APPLICATION_DATA):
            chosen[side] = [records[0][:2]]
    new_streams: dict[bool, bytes] = {}
    maps: dict[bool, list[tuple[int, int]]] = {}  # (old offset, new offset) at each re-framed record's end
    for side, stream in streams.items():
        out, moved, at = bytearray(), [], 0
        for offset, length in chosen[side]:
            out += stream[at:offset]
            out += _reframe_record(bytes(stream[offset : offset + length]), rng, largest)
            at = offset + length
            moved.append((at, len(out)))
        out += stream[at:]
        new_streams[side], maps[side] = bytes(out), moved

    def mapped(side: bool, offset: int) -> int:
        shift = 0
        for old, new in maps[side]:
            if offset >= old:
                shift = new - old
        return offset + shift

    def seq_of(side: bool, seq: int) -> int:
        return (isn[side] + 1 + mapped(side, (seq - isn[side] - 1) % SEQ_MOD)) % SEQ_MOD

    out_packets: Packets = []
    for timestamp, segment in packets:
        if segment.proto != TCP:
            out_packets.append((timestamp, segment))
            continue
        side = (segment.src, segment.sport) == client
        changes: dict[str, Any] = {"packet": b""}
        if not segment.flags & SYN:
            start = (segment.seq - isn[side] - 1) % SEQ_MOD
            changes["seq"] = seq_of(side, segment.seq)
            changes["payload"] = new_streams[side][mapped(side, start) : mapped(side, start + len(segment.payload))]
        if segment.flags & ACK and (not side) in isn:
            changes["ack"] = seq_of(not side, segment.ack)
        out_packets.append((timestamp, segment._replace(**changes)))
    return out_packets


def _client_bytes_before(tcp: Packets, client: tuple[bytes, int], first: Segment) -> int:
    """How many bytes the client had sent when the server sent its first byte."""
    sent = 0
    for _, segment in tcp:
        if segment is first:
            return sent
        if (segment.src, segment.sport) == client:
            sent += len(segment.payload)
    return sent


def _runs(packets: Packets) -> list[Packets]:
    """Consecutive packets in one direction of one connection (UDP datagrams stay runs of their own)."""
    runs: list[Packets] = []
    previous = None
    for timestamp, segment in packets:
        direction = (segment.proto, segment.src, segment.sport, segment.dst, segment.dport)
        if segment.proto == TCP and direction == previous and not segment.flags & (SYN | RST):
            runs[-1].append((timestamp, segment))
        else:
            runs.append([(timestamp, segment)])
        previous = direction if segment.proto == TCP else None
    return runs


def _rewrite(packets: Packets, rng: random.Random, max_pieces: int, shuffle: float, duplicate: float) -> Packets:
    out: Packets = []
    for run in _runs(packets):
        pieces = [(timestamp, piece) for timestamp, segment in run for piece in _pieces(segment, rng, max_pieces)]
        if rng.random() < shuffle:
            rng.shuffle(pieces)
        for item in list(pieces):
            if item[1].payload and rng.random() < duplicate:
                pieces.insert(rng.randint(pieces.index(item), len(pieces)), item)
        out.extend(pieces)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(FIXTURES)),
    seed=st.integers(0, 2**32 - 1),
    max_pieces=st.integers(1, 12),
    shuffle=st.floats(0, 1),
    duplicate=st.floats(0, 0.5),
    largest_record=st.sampled_from([0, 1, 2, 3, 5, 64]),
)
def test_segmentation_reordering_duplication_and_reframing_leave_the_report_unchanged(
    name: str, seed: int, max_pieces: int, shuffle: float, duplicate: float, largest_record: int
) -> None:
    packets, keys = FIXTURES[name]
    rng = random.Random(seed)
    reframed = _reframe(packets, rng, largest_record) if largest_record else None
    rewritten = _rewrite(reframed or packets, rng, max_pieces, shuffle, duplicate)
    baseline = BASELINES[name]
    if reframed is not None:
        baseline = [_comparable(event, reframed=True) for event in _events(packets, keys)]
    assert [_comparable(event, reframed=reframed is not None) for event in _events(rewritten, keys)] == baseline


def test_reframing_reaches_most_fixtures() -> None:
    """The re-framing step applies to the clean captures, which are most of them (1-byte records)."""
    reframed = [name for name, (packets, _) in FIXTURES.items() if _reframe(packets, random.Random(1), 1)]
    assert len(reframed) >= len(FIXTURES) * 2 // 3, sorted(set(FIXTURES) - set(reframed))
    # and it does re-frame: the client's first record is now a 1-byte record
    packets, _ = FIXTURES["tls13-noauth.pcap"]
    tiny = _reframe(packets, random.Random(1), 1)
    assert tiny is not None
    hello = next(segment.payload for _, segment in tiny if segment.payload)
    assert hello[:5] == bytes((HANDSHAKE, 3, 1, 0, 1)) or hello[:3] == bytes((HANDSHAKE, 3, 3))


def test_every_tcp_fixture_is_exercised() -> None:
    assert len(FIXTURES) >= 20
    assert {"large-clienthello.pcap", "tls13-hello-retry.pcap", "hostile/hostile-strings.pcap"} <= set(FIXTURES)
