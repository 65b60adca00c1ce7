"""Flow-level robustness on real packets rewritten: conflicting overlaps, SYN and ClientHello floods, holes.

Every packet comes from pcaps/tls12-required-missing.pcap (one TLS 1.2 connection: SYN, ClientHello
in one 219-byte segment, the server's 2,293-byte flight, a Certificate/ClientKeyExchange flight, the
server's alert). Ports, addresses and sequence numbers are rewritten; payload bytes are the capture's.
"""

from __future__ import annotations

from typing import Any

import pytest
from helloscope.sniffer.capture.decode import Segment
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import PCAPS, TableRun, segments_of

FIXTURE = PCAPS / "tls12-required-missing.pcap"
SYN, ACK = 0x02, 0x10
SEQ_MOD = 1 << 32


PACKETS = segments_of(FIXTURE)
CLIENT_PORT = PACKETS[0][1].sport  # the first packet is the client's SYN
HELLO_INDEX = next(i for i, (_, s) in enumerate(PACKETS) if s.sport == CLIENT_PORT and s.payload)
HELLO = PACKETS[HELLO_INDEX][1]
# The server's closing alert settles the connection: it is reported then, and later packets are ignored.
LAST_DATA_INDEX = max(i for i, (_, s) in enumerate(PACKETS) if s.payload)


def _shift_client_seq(packets: list[tuple[float, Segment]], shift: int) -> list[tuple[float, Segment]]:
    """Move the client's ISN by ``shift`` (and the server's acks with it), e.g. across the 2**32 wrap."""
    out = []
    for timestamp, s in packets:
        if s.sport == CLIENT_PORT:
            s = s._replace(seq=(s.seq + shift) % SEQ_MOD)
        elif s.flags & ACK:
            s = s._replace(ack=(s.ack + shift) % SEQ_MOD)
        out.append((timestamp, s))
    return out


def _report(packets: list[tuple[float, Segment]], **limits: Any) -> TableRun:
    run = TableRun(**limits)
    run.feed(packets)
    run.table.flush()
    return run


BASELINE = _report(PACKETS).events[0]


@settings(max_examples=150, deadline=None)
@given(
    shift=st.integers(0, SEQ_MOD - 1),
    start=st.integers(0, len(HELLO.payload) - 1),
    length=st.integers(1, len(HELLO.payload) + 64),
    flips=st.lists(st.integers(0, 10_000), min_size=1, max_size=8),
    delay=st.integers(1, LAST_DATA_INDEX - HELLO_INDEX),
)
def test_conflicting_retransmission_is_counted_and_the_first_copy_wins(shift, start, length, flips, delay):
    # A retransmission of part of the ClientHello segment with some bytes changed, arriving later: an
    # evasion attempt or a broken middlebox, before the connection settles. The bytes first seen
    # stand; the disagreement is counted.
    copy = bytearray((HELLO.payload + bytes(64))[start : start + length])
    for at in {flip % len(copy) for flip in flips}:  # distinct: two flips of one byte would cancel
        copy[at] ^= 0xFF
    conflicting = HELLO._replace(seq=HELLO.seq + start, payload=bytes(copy))
    packets = list(PACKETS)
    packets.insert(HELLO_INDEX + delay, (packets[HELLO_INDEX + delay - 1][0], conflicting))
    run = _report(_shift_client_seq(packets, shift))
    (event,) = run.events
    tcp = event["helloscope"]["tcp"]
    # Each flipped byte lies inside the original segment unless the copy runs past it.
    assert tcp["overlap_conflicts"] >= 1 or start + length > len(HELLO.payload)
    assert run.stats.overlap_conflicts == tcp["overlap_conflicts"]
    assert event["helloscope"]["client_hello"] == BASELINE["helloscope"]["client_hello"]
    if start + length <= len(HELLO.payload):
        # Nothing new was added to the stream: the whole report is the original one.
        assert event["helloscope"]["outcome"] == BASELINE["helloscope"]["outcome"]
        assert event["helloscope"]["alerts"] == BASELINE["helloscope"]["alerts"]


def _flow(port: int, packets: list[tuple[float, Segment]]) -> list[tuple[float, Segment]]:
    """The packets of the fixture's connection as if the client had used ``port`` (10.x for >65535)."""
    out = []
    for timestamp, s in packets:
        if s.sport == CLIENT_PORT:
            s = s._replace(sport=port % 60_000 + 1024, src=(10 << 24 | port // 60_000).to_bytes(4, "big"))
        else:
            s = s._replace(dport=port % 60_000 + 1024, dst=(10 << 24 | port // 60_000).to_bytes(4, "big"))
        out.append((timestamp, s))
    return out


@pytest.mark.parametrize("flows", [2_000, 20_000])
def test_syn_flood_is_evicted_at_the_cap_and_counted(flows: int):
    cap = 64
    run = TableRun(max_flows=cap)
    syn = PACKETS[:1]
    largest = 0
    for port in range(flows):
        run.feed(_flow(port, syn))
        largest = max(largest, len(run.table))
    assert largest == cap  # the table filled up and never grew past it
    assert run.stats.flow_cap_evictions == flows - cap
    # A real connection after the flood is still followed to its end.
    run.feed(_flow(flows, PACKETS))
    run.table.flush()
    (event,) = run.events  # bare SYNs are no TLS connections: nothing else is reported
    assert event["helloscope"]["outcome"] == BASELINE["helloscope"]["outcome"]


def test_unanswered_client_hello_flood_reports_every_hello_and_stays_at_the_cap():
    cap, flows = 16, 600
    # SYN, ACK and the ClientHello of the fixture, never answered by any server.
    unanswered = [(t, s) for t, s in PACKETS[: HELLO_INDEX + 1] if s.sport == CLIENT_PORT]
    run = TableRun(max_flows=cap)
    for port in range(flows):
        run.feed(_flow(port, unanswered))
        assert len(run.table) <= cap
    assert run.stats.flow_cap_evictions == flows - cap
    evicted = [event for event in run.events if event["helloscope"]["end_reason"] == "flow_cap"]
    assert len(evicted) == flows - cap
    run.table.flush()
    assert len(run.events) == flows  # every hello seen is reported once, evicted or not
    hellos = {event["helloscope"]["client_hello"]["ja3_full"] for event in run.events}
    assert hellos == {BASELINE["helloscope"]["client_hello"]["ja3_full"]}
    assert {event["source"]["port"] for event in run.events} == {port % 60_000 + 1024 for port in range(flows)}


def test_out_of_order_data_behind_a_hole_stays_within_its_budget():
    budget = 4096
    run = TableRun(max_out_of_order_bytes=budget, max_stream_bytes=1 << 30)
    handshake = PACKETS[: HELLO_INDEX + 1]
    run.feed(handshake)
    # 1 MB of the capture's own bytes (the server flight, over and over) sent after a 1-byte hole.
    chunk = next(s.payload for _, s in PACKETS if len(s.payload) > 1000)
    after = HELLO.seq + len(HELLO.payload) + 1
    timestamp = PACKETS[HELLO_INDEX][0]
    for index in range((1 << 20) // len(chunk)):
        segment = HELLO._replace(seq=(after + index * len(chunk)) % SEQ_MOD, payload=chunk, flags=ACK)
        run.table.segment(timestamp, segment)
        sides = [side for flow in run.table.tcp._flows.values() for side in flow.sides or ()]
        held = max((side.stream.pending_bytes for side in sides), default=0)
        assert held <= budget + len(chunk)  # what waits behind a hole: the budget plus the segment that broke it
    run.table.flush()
    (event,) = run.events
    assert run.stats.stream_gaps >= 1 and event["helloscope"]["tcp"]["gaps"] >= 1
    assert event["helloscope"]["client_hello"] == BASELINE["helloscope"]["client_hello"]  # seen before the hole
