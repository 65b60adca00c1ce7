"""TCP reassembly invariants: any segmentation, order and duplication yields the sender's bytes."""

from __future__ import annotations

import itertools

from helloscope.sniffer.transport.reassembly import HELD_SEGMENT_OVERHEAD, StreamReassembler
from hypothesis import given, settings
from hypothesis import strategies as st

ISN = 0xFFFF_FF00  # close to the wrap, so sequence arithmetic modulo 2**32 is exercised


def _segments(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [((ISN + 1 + start) % (1 << 32), data[start:end]) for start, end in itertools.pairwise(bounds)]


def _feed(stream: StreamReassembler, segments: list[tuple[int, bytes]]) -> bytes:
    return b"".join(stream.add(seq, payload) for seq, payload in segments)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=4000),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(min_value=0, max_value=40), max_size=5),
)
def test_any_segmentation_order_and_duplication_yields_the_stream(data, cuts, order, duplicates):
    segments = _segments(data, cuts)
    segments += [segments[index % len(segments)] for index in duplicates]
    order.shuffle(segments)
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(ISN)
    assert _feed(stream, segments) == data
    assert stream.conflicts == 0
    assert stream.gaps == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=2, max_size=2000), cut=st.integers(min_value=1), order=st.randoms(use_true_random=False))
def test_overlapping_copies_with_identical_bytes_are_not_conflicts(data, cut, order):
    cut = 1 + cut % (len(data) - 1)
    # Two overlapping views of the same bytes, as a retransmission with a different segmentation.
    segments = _segments(data, [cut]) + [((ISN + 1 + cut // 2) % (1 << 32), data[cut // 2 :])]
    order.shuffle(segments)
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(ISN)
    assert _feed(stream, segments) == data
    assert stream.conflicts == 0


def test_first_copy_wins_and_a_conflicting_retransmission_is_counted():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(99)
    assert stream.add(100, b"hello ") == b"hello "
    assert stream.add(100, b"HELLO ") == b""  # rewritten retransmission: ignored, counted
    assert stream.add(106, b"world") == b"world"
    assert stream.conflicts == 1
    assert stream.retransmitted == 1


def test_conflicting_out_of_order_copies_keep_the_first():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(0)
    assert stream.add(4, b"BBBB") == b""
    assert stream.add(4, b"XXXX") == b""
    assert stream.add(1, b"AAA") == b"AAABBBB"
    assert stream.conflicts == 1
    assert stream.out_of_order == 2


def test_mid_connection_start_uses_the_first_segment_seen():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    assert stream.add(5000, b"abc") == b"abc"
    assert stream.add(5003, b"def") == b"def"
    assert stream.add(4990, b"0123456789") == b""  # before the start: a retransmission we cannot place
    assert stream.retransmitted == 1


def test_byte_cap_stops_delivery_and_is_reported():
    stream = StreamReassembler(max_bytes=10, max_pending=1 << 20)
    stream.syn(0)
    assert stream.add(1, b"0123456") == b"0123456"
    assert stream.add(8, b"789abc") == b"789"
    assert stream.capped
    assert stream.add(14, b"more") == b""


def test_a_hole_larger_than_the_out_of_order_budget_is_skipped_and_counted():
    # The budget counts each held segment's overhead too: two segments and 8 payload bytes fit.
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=2 * HELD_SEGMENT_OVERHEAD + 8)
    stream.syn(0)
    assert stream.add(1, b"ab") == b"ab"
    assert stream.add(10, b"0123") == b""
    assert stream.add(14, b"45678") == b"012345678"  # budget exceeded: deliver past the hole
    assert stream.gaps == 1
    assert stream.pending_bytes == 0
