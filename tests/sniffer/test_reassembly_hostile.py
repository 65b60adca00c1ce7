"""Reassembly under an attacker's segmentation: linear work and a memory bound that counts real cost.

Timing lives in bench/resource_bounds.py; these tests assert bytes, counters and traced memory.
"""

from __future__ import annotations

import os
import tracemalloc

from helloscope.sniffer.transport.reassembly import HELD_SEGMENT_OVERHEAD, StreamReassembler

ISN = 0xFFFF_0000  # the 200,000-byte streams below cross the 2**32 wrap


def _seq(offset: int) -> int:
    return (ISN + 1 + offset) % (1 << 32)


def test_many_one_byte_segments_behind_a_hole_are_released_in_one_pass():
    # Before the heap, releasing these rescanned every held segment per segment released: hours.
    data = os.urandom(200_000)
    stream = StreamReassembler(max_bytes=1 << 30, max_pending=1 << 40)
    stream.syn(ISN)
    for offset in range(1, len(data)):
        assert stream.add(_seq(offset), data[offset : offset + 1]) == b""
    assert stream.pending_bytes == len(data) - 1
    assert stream.add(_seq(0), data[:1]) == data
    assert (stream.pending_bytes, stream.held_cost, stream.gaps, stream.conflicts) == (0, 0, 0, 0)


def test_one_byte_segments_in_reverse_order_give_the_stream():
    data = os.urandom(50_000)
    stream = StreamReassembler(max_bytes=1 << 30, max_pending=1 << 40)
    stream.syn(ISN)
    out = b"".join(stream.add(_seq(offset), data[offset : offset + 1]) for offset in reversed(range(len(data))))
    assert out == data
    assert stream.out_of_order == len(data) - 1


def test_overlapping_held_segments_keep_the_lower_offset_copy_and_count_the_conflict():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(0)
    assert stream.add(3, b"234") == b""
    assert stream.add(4, b"XY5") == b""  # disagrees with "34" held at the lower offset
    assert stream.add(1, b"01") == b"012345"
    assert stream.conflicts == 1


def test_one_byte_segments_cannot_hold_more_than_the_budget():
    # Every other byte missing: nothing can be delivered without skipping holes. Counting only payload,
    # 64 KiB of budget held 65,536 segments (about 6 MB); counting their overhead holds a few hundred.
    budget = 64 * 1024
    stream = StreamReassembler(max_bytes=1 << 30, max_pending=budget)
    stream.syn(0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(100_000):
            stream.add(2 + 2 * index, b"x")
            assert stream.held_cost <= budget
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert stream.gaps > 0  # the bound was hit: holes skipped and counted
    assert stream.pending_bytes <= budget // (HELD_SEGMENT_OVERHEAD + 1)
    assert held < 2 * budget


def test_held_cost_follows_merges_and_releases():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(0)
    stream.add(11, b"abc")
    stream.add(11, b"abcdef")  # a longer copy at the same offset replaces the held one
    assert stream.held_cost == HELD_SEGMENT_OVERHEAD + 6
    stream.add(21, b"xy")
    assert stream.held_cost == 2 * HELD_SEGMENT_OVERHEAD + 8
    assert stream.add(1, b"0123456789") == b"0123456789abcdef"
    assert stream.held_cost == HELD_SEGMENT_OVERHEAD + 2


def test_memory_counts_held_segments_and_the_retransmission_window_and_release_drops_both():
    stream = StreamReassembler(max_bytes=1 << 20, max_pending=1 << 20)
    stream.syn(0)
    assert stream.add(1, bytes(20_000)) == bytes(20_000)
    stream.add(30_001, b"held")
    assert stream.memory == 16384 + HELD_SEGMENT_OVERHEAD + 4  # the window keeps the last 16 KiB only
    stream.release()
    assert (stream.memory, stream.pending_bytes) == (0, 0)
    assert stream.add(1, b"\x01") == b""  # a rewritten retransmission: counted, no longer comparable
    assert (stream.retransmitted, stream.conflicts, stream.delivered) == (1, 0, 20_000)
