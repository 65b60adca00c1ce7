"""Per-direction TCP stream reassembly with bounded memory.

Segments are placed by sequence number relative to the stream's first byte. The first copy of any
byte wins; a later copy that disagrees is an overlap conflict (the classic evasion trick), counted
and never allowed to change what was already delivered.

Segments beyond a hole are held in a dict keyed by stream offset plus a heap of those offsets, so the
attacker's choice of segmentation costs O(log n) per segment: releasing n held segments is one heap pop
each, never a rescan of everything held. The out-of-order budget counts what held segments really cost
(payload plus :data:`HELD_SEGMENT_OVERHEAD`), so a flood of one-byte segments is bounded like bulk data.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Final

_SEQ_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
# Delivered bytes kept to compare retransmissions against; older retransmissions are only counted.
RECENT_WINDOW: Final = 16384
# Bytes a held segment costs beyond its payload: the bytes object header, the int offset, its dict slot
# and heap slot. Measured with tracemalloc on CPython 3.11 (bench/resource_bounds.py --only held-cost):
# 68-125 bytes depending on how many are held (dict and heap growth) and whether the payload is a cached
# one-byte object; rounded up so the budget errs towards holding less.
HELD_SEGMENT_OVERHEAD: Final = 128


class StreamReassembler:
    """Turns segments of one direction into the contiguous byte stream the sender wrote.

    ``add`` returns the bytes that became contiguous. A hole that the out-of-order budget cannot
    bridge is skipped: ``gaps`` records it so the consumer knows the stream lost bytes there.
    """

    __slots__ = (
        "_base",
        "_held_cost",
        "_offsets",
        "_pending",
        "_pending_bytes",
        "_recent",
        "capped",
        "conflicts",
        "delivered",
        "gaps",
        "max_bytes",
        "max_pending",
        "out_of_order",
        "retransmitted",
    )

    def __init__(self, max_bytes: int, max_pending: int) -> None:
        self._base: int | None = None  # sequence number of stream offset 0
        self.delivered = 0  # stream offset of the next byte to deliver
        self._pending: dict[int, bytes] = {}  # stream offset -> bytes beyond a hole
        self._offsets: list[int] = []  # heap of the keys of _pending, always the same set
        self._pending_bytes = 0
        self._held_cost = 0  # _pending_bytes plus the per-segment overhead: what the budget bounds
        # The last delivered bytes, ending at ``delivered``. The first delivery is kept as is (no copy: a
        # flow that sends one segment costs nothing more); later ones grow a bytearray, so keeping the
        # window costs an append and a front trim per segment, not a copy of the whole window.
        self._recent: bytes | bytearray = b""
        self.max_bytes = max_bytes
        self.max_pending = max_pending  # bound on held_cost, not just held payload
        self.out_of_order = 0
        self.retransmitted = 0
        self.conflicts = 0
        self.gaps = 0
        self.capped = False

    @property
    def started(self) -> bool:
        return self._base is not None

    @property
    def pending_bytes(self) -> int:
        """Payload bytes held beyond a hole."""
        return self._pending_bytes

    @property
    def held_cost(self) -> int:
        """Memory the held segments are accounted at: payload plus a fixed overhead per segment."""
        return self._held_cost

    @property
    def memory(self) -> int:
        """Bytes this direction holds beyond its fixed size: held segments as counted, and the window of
        recently delivered bytes kept to check retransmissions against (up to 16 KiB)."""
        return self._held_cost + len(self._recent)

    def release(self) -> None:
        """Drop held segments and the retransmission window once nothing more will be reported.

        Counters stay; later segments are still placed and counted, but a retransmission of bytes
        delivered before the release can no longer be compared, so it is not seen as a conflict.
        """
        self._pending.clear()
        self._offsets.clear()
        self._pending_bytes = self._held_cost = 0
        self._recent = b""

    def syn(self, seq: int) -> None:
        """A SYN fixes the stream start exactly: data begins at ISN + 1."""
        if self._base is None:
            self._base = (seq + 1) % _SEQ_MOD

    def add(self, seq: int, payload: bytes) -> bytes:
        if not payload or self.capped:
            return b""
        if self._base is None:
            # Mid-connection capture: the first data segment seen defines offset 0.
            self._base = seq
        offset = (seq - self._base) % _SEQ_MOD
        if offset >= _HALF:
            # Before the stream start (a retransmission of bytes we never saw begin): drop it.
            self.retransmitted += 1
            return b""
        if offset == self.delivered and not self._pending:
            return self._deliver(payload)  # the common case: the next bytes, nothing held beyond a hole
        if offset < self.delivered:
            payload = self._trim_delivered(offset, payload)
            if not payload:
                return b""
            offset = self.delivered
        if offset > self.delivered:
            self._hold(offset, payload)
            return self.skip_hole() if self._held_cost > self.max_pending else b""
        if not self._pending or self._offsets[0] > offset + len(payload):
            return self._deliver(payload)
        return self._deliver(self._drain(offset, payload))

    def skip_hole(self) -> bytes:
        """Give up on the missing bytes before the earliest held segment and deliver from there."""
        if not self._pending:
            return b""
        start = self._offsets[0]
        self.gaps += 1
        self.delivered = start
        self._recent = b""
        return self._deliver(self._drain(start, b""))

    def _trim_delivered(self, offset: int, payload: bytes) -> bytes:
        overlap = min(self.delivered - offset, len(payload))
        recent_start = self.delivered - len(self._recent)
        if offset >= recent_start:
            seen = self._recent[offset - recent_start : offset - recent_start + overlap]
            if seen != payload[:overlap]:
                self.conflicts += 1
        if overlap == len(payload):
            self.retransmitted += 1
        return payload[overlap:]

    def _hold(self, offset: int, payload: bytes) -> None:
        self.out_of_order += 1
        held = self._pending.get(offset)
        if held is None:
            heappush(self._offsets, offset)
            self._held_cost += HELD_SEGMENT_OVERHEAD
        else:
            common = min(len(held), len(payload))
            if held[:common] != payload[:common]:
                self.conflicts += 1
            else:
                self.retransmitted += 1
            if len(payload) <= len(held):
                return
            payload = held + payload[len(held) :]
            self._pending_bytes -= len(held)
            self._held_cost -= len(held)
        self._pending[offset] = payload
        self._pending_bytes += len(payload)
        self._held_cost += len(payload)

    def _drain(self, start: int, first: bytes) -> bytes:
        """``first`` (at offset ``start``) followed by every held segment that now touches its end.

        Held segments come out in offset order; where one overlaps bytes already assembled, the earlier
        copy wins and a disagreement is a conflict.
        """
        assembled = bytearray(first)
        end = start + len(first)
        offsets, pending = self._offsets, self._pending
        while offsets and offsets[0] <= end:
            at = heappop(offsets)
            chunk = pending.pop(at)
            self._pending_bytes -= len(chunk)
            self._held_cost -= len(chunk) + HELD_SEGMENT_OVERHEAD
            overlap = min(end - at, len(chunk))
            if overlap:
                seen = assembled[at - start : at - start + overlap]
                if seen != chunk[:overlap]:
                    self.conflicts += 1
            if overlap < len(chunk):
                assembled += chunk[overlap:] if overlap else chunk
                end = at + len(chunk)
        return bytes(assembled)

    def _deliver(self, data: bytes) -> bytes:
        room = self.max_bytes - self.delivered
        if len(data) >= room:
            data = data[:room]
            self.capped = True
            self._pending.clear()
            self._offsets.clear()
            self._pending_bytes = 0
            self._held_cost = 0
        self.delivered += len(data)
        recent = self._recent
        if not recent:
            self._recent = data[-RECENT_WINDOW:] if len(data) > RECENT_WINDOW else data
            return data
        if isinstance(recent, bytes):
            self._recent = recent = bytearray(recent)
        recent += data
        if len(recent) > RECENT_WINDOW:
            del recent[: len(recent) - RECENT_WINDOW]  # CPython moves the start, not the bytes
        return data
