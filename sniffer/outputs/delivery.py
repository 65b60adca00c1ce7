"""Store-and-forward to one network destination: a memory queue, an on-disk spool and a sender thread.

``write`` never waits on the network. Records wait in memory (up to ``queue_events``), then in the spool;
once anything is in the spool, new records go there too, so every record in memory is older than every
record on disk and the sender, which drains memory first, keeps the order. A record leaves memory or the
spool only after the destination acknowledged it, so a failed or interrupted send is simply sent again.
``close`` persists whatever is left, memory first, ahead of the spool, for the next run to replay.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from helloscope.sniffer.outputs.common import COUNTERS, warn

if TYPE_CHECKING:
    from helloscope.sniffer.outputs.spool import Position, Spool  # opened by the caller, with a --spool-dir

_FIRST_RETRY_SECONDS = 0.25


class DeliveryError(Exception):
    """The whole batch failed in a way worth retrying (connection refused or reset, 5xx, 429, timeout)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """What the destination did with a batch it answered."""

    retry: tuple[int, ...] = ()  # indexes in the batch it asked to have again (Elasticsearch 429/5xx items)
    rejected: int = 0  # refused for good (malformed, too large): counted, never retried


class Transport(Protocol):
    name: str  # shown in messages and keying the spool; never holds a secret
    linger: float  # seconds to wait for a batch to fill before sending

    def send(self, records: Sequence[bytes]) -> Sent:
        """Deliver in order; raise DeliveryError for a failure worth retrying."""
        ...

    def abort(self) -> None:
        """Called from another thread: make a blocked ``send`` fail now."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Batch:
    """Records sent to the destination together, and what acknowledging them removes."""

    records: list[bytes]  # still to be delivered (a retry may resend only some of them)
    from_memory: int  # records it removes from the head of the memory queue once delivered ...
    spool_end: Position | None  # ... or the spool position it acknowledges


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """A destination's batch size (events, bytes), memory queue and retry ceiling."""

    events: int
    bytes: int
    queue_events: int
    retry_max_seconds: float


class QueuedDestination:
    def __init__(self, transport: Transport, limits: BatchLimits, spool: Spool | None) -> None:
        self.name = transport.name
        self._transport = transport
        self._limits = limits
        self._spool = spool
        self._memory: deque[bytes] = deque()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._changed = threading.Condition()
        self._closing_by: float | None = None  # monotonic deadline once close() began
        self._stopped = False  # past the deadline: the sender must not acknowledge anything more
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=f"helloscope output {self.name}", daemon=True)
        self._thread.start()

    def write(self, record: bytes) -> None:
        with self._changed:
            if self._closing_by is not None:
                self._counters["events_dropped"] += 1
                warn(f"{self.name}: an event written after close is dropped")
                return
            spool = self._spool
            if len(self._memory) < self._limits.queue_events and not (spool is not None and spool.size):
                self._memory.append(record)
            elif spool is not None and self._spooled(spool, record):
                self._counters["events_spooled"] += 1
            else:
                self._drop(1)
                return
            if self._dropping and self._backlog_half_drained():
                self._dropping = False  # the episode is over; the next drop warns again
            self._changed.notify()

    def counters(self) -> dict[str, int]:
        with self._changed:
            torn = self._spool.torn if self._spool is not None else 0
            return self._counters | {"spool_torn": torn}

    def begin_close(self, deadline: float) -> None:
        with self._changed:
            self._closing_by = deadline
            self._changed.notify_all()

    def finish_close(self) -> None:
        """Wait for the sender until the deadline, stop it, and keep what is left in the spool."""
        assert self._closing_by is not None
        self._thread.join(max(0.0, self._closing_by - time.monotonic()))
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._transport.abort()
            self._thread.join(1.0)
        with self._changed:
            left = list(self._memory)
            self._memory.clear()
            if left and not (self._spool is not None and self._keep(self._spool, left)):
                self._counters["events_dropped"] += len(left)  # not _drop: no queue filled up, the run ended
                where = "no spool directory" if self._spool is None else "the spool is full"
                warn(f"{self.name}: {len(left)} undelivered events are lost ({where})")
        self._transport.close()
        if self._spool is not None:
            self._spool.close()

    def _spooled(self, spool: Spool, record: bytes) -> bool:
        try:
            return spool.append(record)
        except OSError as error:
            if not self._dropping:
                self._dropping = True  # this warning starts the episode; _drop stays quiet
                warn(f"{self.name}: cannot write to the spool in {spool.directory}: {error.strerror or error}")
            return False

    def _keep(self, spool: Spool, records: list[bytes]) -> bool:
        try:
            kept = spool.append_before(records)
        except OSError as error:
            warn(f"{self.name}: cannot write to the spool in {spool.directory}: {error.strerror or error}")
            return False
        if kept:
            self._counters["events_spooled"] += len(records)
        return kept

    def _backlog_half_drained(self) -> bool:
        if self._spool is not None:
            return self._spool.size <= self._spool.limit // 2
        return len(self._memory) <= self._limits.queue_events // 2

    def _drop(self, count: int) -> None:
        self._counters["events_dropped"] += count
        if not self._dropping:
            self._dropping = True
            if self._spool is None:
                warn(
                    f"{self.name}: memory queue full ({self._limits.queue_events} events, no spool directory); "
                    "dropping events until it drains"
                )
            else:
                warn(
                    f"{self.name}: spool full ({self._spool.limit} bytes in {self._spool.directory}); "
                    "dropping events until it drains"
                )

    def _run(self) -> None:
        failures = 0
        batch: _Batch | None = None
        while True:
            try:
                with self._changed:
                    batch = batch or self._next_batch()
                    if batch is None:
                        return
                sent = self._transport.send(batch.records)
            except Exception as error:  # whatever fails (spool read, a library's surprise), delivery goes on
                failures += 1
                if not isinstance(error, DeliveryError):
                    error = DeliveryError(f"unexpected {type(error).__name__}: {error}")
                with self._changed:
                    if self._stopped:
                        return
                    self._counters["outputs_retried"] += 1
                    if failures == 1:
                        warn(f"{self.name}: {error}; retrying, events wait in the queue and spool")
                    self._back_off(failures)
                continue
            with self._changed:
                if self._stopped:
                    return  # past the deadline: close() keeps the whole batch for the next run
                retry = [batch.records[index] for index in sent.retry if 0 <= index < len(batch.records)]
                self._counters["events_written"] += len(batch.records) - len(retry) - sent.rejected
                self._counters["events_rejected"] += sent.rejected
                if sent.rejected:
                    warn(f"{self.name}: the destination refused {sent.rejected} events for good (counted, not retried)")
                if retry:
                    failures += 1
                    self._counters["outputs_retried"] += 1
                    batch.records = retry
                    self._back_off(failures)
                    continue
                if failures:
                    print(f"helloscope: {self.name}: delivering again after {failures} retries", file=sys.stderr)
                    failures = 0
                self._finish(batch)
                batch = None

    def _next_batch(self) -> _Batch | None:
        """Called holding the lock: the oldest records to send, or None when the sender should end."""
        while True:
            if self._stopped:
                return None
            if self._memory:
                self._linger()
                records = self._take_from_memory()
                return _Batch(records, len(records), None)
            if self._spool is not None and self._spool.size:
                records, end = self._spool.peek(self._limits.events, self._limits.bytes)
                if records:
                    return _Batch(records, 0, end)
                self._spool.acknowledge(end)  # only a torn tail was left
                continue
            if self._closing_by is not None:
                return None
            self._changed.wait()

    def _linger(self) -> None:
        """Give a batch up to ``linger`` seconds to fill, unless closing."""
        deadline = time.monotonic() + self._transport.linger
        while (
            self._closing_by is None
            and len(self._memory) < self._limits.events
            and (remaining := deadline - time.monotonic()) > 0
        ):
            self._changed.wait(remaining)

    def _take_from_memory(self) -> list[bytes]:
        records: list[bytes] = []
        size = 0
        for record in self._memory:
            if records and (len(records) >= self._limits.events or size + len(record) > self._limits.bytes):
                break
            records.append(record)
            size += len(record)
        return records

    def _finish(self, batch: _Batch) -> None:
        for _ in range(batch.from_memory):
            self._memory.popleft()
        if batch.spool_end is not None and self._spool is not None:
            self._spool.acknowledge(batch.spool_end)

    def _back_off(self, failures: int) -> None:
        """Called holding the lock: wait before the next attempt, never past the close deadline."""
        ceiling = self._limits.retry_max_seconds
        delay = min(ceiling, _FIRST_RETRY_SECONDS * 2 ** min(failures - 1, 30)) * random.uniform(0.5, 1.0)
        until = time.monotonic() + delay
        if self._closing_by is not None:
            until = min(until, self._closing_by)
        while not self._stopped and (remaining := until - time.monotonic()) > 0:
            self._changed.wait(remaining)
