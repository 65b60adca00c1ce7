"""Per-direction TCP stream reassembly with bounded memory.

Segments are placed by sequence number relative to the stream's first byte. The first copy of any
byte wins; a later copy that disagrees is an overlap conflict (the classic evasion trick), counted
and never allowed to change what was already delivered.
"""

from __future__ import annotations

from typing import Final

_SEQ_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
# Delivered bytes kept to compare retransmissions against; older retransmissions are only counted.
_RECENT_WINDOW: Final = 16384


class StreamReassembler:
    """Turns segments of one direction into the contiguous byte stream the sender wrote.

    ``add`` returns the bytes that became contiguous. A hole that the out-of-order budget cannot
    bridge is skipped: ``gaps`` records it so the consumer knows the stream lost bytes there.
    """

    __slots__ = (
        "_base",
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
        self._pending_bytes = 0
        # The last delivered bytes, ending at ``delivered``. The first delivery is kept as is (no copy: a
        # flow that sends one segment costs nothing more); later ones grow a bytearray, so keeping the
        # window costs an append and a front trim per segment, not a copy of the whole window.
        self._recent: bytes | bytearray = b""
        self.max_bytes = max_bytes
        self.max_pending = max_pending
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
        return self._pending_bytes

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
            return self.skip_hole() if self._pending_bytes > self.max_pending else b""
        out = [payload]
        end = offset + len(payload)
        if self._pending:
            end = self._drain(end, out)
        return self._deliver(b"".join(out) if len(out) > 1 else payload)

    def skip_hole(self) -> bytes:
        """Give up on the missing bytes before the earliest held segment and deliver from there."""
        if not self._pending:
            return b""
        start = min(self._pending)
        self.gaps += 1
        self.delivered = start
        self._recent = b""
        out: list[bytes] = []
        self._drain(start, out)
        return self._deliver(b"".join(out))

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
        if held is not None:
            common = min(len(held), len(payload))
            if held[:common] != payload[:common]:
                self.conflicts += 1
            else:
                self.retransmitted += 1
            if len(payload) <= len(held):
                return
            payload = held + payload[len(held) :]
            self._pending_bytes -= len(held)
        self._pending[offset] = payload
        self._pending_bytes += len(payload)

    def _drain(self, end: int, out: list[bytes]) -> int:
        """Append held segments that now touch the contiguous end; return the new end."""
        while self._pending:
            ready = [start for start in self._pending if start <= end]
            if not ready:
                break
            for start in sorted(ready):
                chunk = self._pending.pop(start)
                self._pending_bytes -= len(chunk)
                if start + len(chunk) <= end:
                    self._compare_held(start, end, chunk, out)
                    continue
                self._compare_held(start, end, chunk[: end - start], out)
                out.append(chunk[end - start :])
                end = start + len(chunk)
        return end

    def _compare_held(self, start: int, end: int, overlap: bytes, out: list[bytes]) -> None:
        """Held bytes that overlap what is already assembled: the earlier copy wins, disagreement counts."""
        if not overlap:
            return
        assembled = b"".join(out)
        assembled_start = end - len(assembled)
        if start >= assembled_start:
            seen = assembled[start - assembled_start : start - assembled_start + len(overlap)]
            if seen != overlap:
                self.conflicts += 1

    def _deliver(self, data: bytes) -> bytes:
        room = self.max_bytes - self.delivered
        if len(data) >= room:
            data = data[:room]
            self.capped = True
            self._pending.clear()
            self._pending_bytes = 0
        self.delivered += len(data)
        recent = self._recent
        if not recent:
            self._recent = data[-_RECENT_WINDOW:] if len(data) > _RECENT_WINDOW else data
            return data
        if isinstance(recent, bytes):
            self._recent = recent = bytearray(recent)
        recent += data
        if len(recent) > _RECENT_WINDOW:
            del recent[: len(recent) - _RECENT_WINDOW]  # CPython moves the start, not the bytes
        return data
