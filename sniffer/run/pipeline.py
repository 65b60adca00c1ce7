"""Capture → decode → flow table: the loop shared by the CLI, the tests and the benchmark."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final, TypeAlias

from helloscope.parsers.keylog import SOURCE_PCAPNG, KeyLog
from helloscope.parsers.registry import IP_PROTOCOL_TCP, IP_PROTOCOL_UDP
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import Segment, decode
from helloscope.sniffer.capture.files import CaptureReader, Truncation
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import DEFAULT_LIMITS, Limits
from helloscope.sniffer.transport.tables import ConnectionTables

Frame: TypeAlias = tuple[float, int, bytes]  # (timestamp, linktype, frame) as capture readers yield them
Tap: TypeAlias = Callable[[float, int, bytes, Segment], None]
STDIN: Final = "-"
STDIN_READER_NAME: Final = "<stdin>"  # what open_capture names the reader of standard input


class CaptureEvents:
    """Reports to events that name the capture being read (``log.file.path``); see :meth:`reading`."""

    __slots__ = ("_base", "_deliver", "observer")

    def __init__(self, observer: Observer, deliver: Callable[[dict[str, Any]], None]) -> None:
        self._base = observer
        self._deliver = deliver
        self.observer = observer

    def reading(self, path: str) -> None:
        """From now on reports come from ``path`` (as given; ``-`` is standard input, no file to name).

        A connection reported while another file is read (one that ran on into it), or at the end of the
        input, names the file being read then.
        """
        name = None if path in (STDIN, STDIN_READER_NAME) else os.path.abspath(path)
        self.observer = replace(self._base, capture_file=name)

    def __call__(self, report: ConnectionReport) -> None:
        self._deliver(build_event(report, self.observer))


def feed_capture(
    reader: CaptureReader,
    table: ConnectionTables,
    stats: RunStats,
    keys: KeyLog | None = None,
    frames: Iterable[Frame] | None = None,
    *,
    sieved: bool = True,
) -> Truncation | None:
    """Run every packet of one capture through the flow table; return where the file was damaged.

    Secrets embedded in the capture (pcapng Decryption Secrets Blocks) join ``keys`` as they are met,
    before the packets that follow them. ``frames`` stands for the reader's own iteration when something
    must watch the frames pass (a progress bar). ``sieved``: the reader's sieve takes the packets the
    table would only skim (:meth:`ConnectionTables.sieve`); False when ``frames`` leaves some out (a
    filter), since the sieve would take packets the table must never see.
    """
    stats.files += 1
    reader.sieve = sieve = table.sieve() if sieved else None
    try:
        last = feed_frames(reader if frames is None else frames, table, stats, keys, reader.secrets)
    finally:
        if sieve is not None:
            count_sieved(sieve, stats)
    if sieve is not None:  # the last packets may be ones it took
        last = reader.last_timestamp
    if last is not None:
        # A flow silent for longer than the timeout when the capture ends ended then, not with the capture.
        table.expire(last)
    if reader.truncation is not None:
        stats.truncated_files += 1
    return reader.truncation


def feed_frames(
    frames: Iterable[Frame],
    table: ConnectionTables,
    stats: RunStats,
    keys: KeyLog | None = None,
    secrets: Sequence[bytes] = (),
    tap: Tap | None = None,
) -> float | None:
    """Decode frames and hand their TCP segments and UDP datagrams to ``table``; return the last frame's
    timestamp (None without frames).

    ``secrets`` may grow while ``frames`` is consumed (a pcapng reader appends the Decryption Secrets
    Blocks it meets); new ones join ``keys`` before the next frame. ``tap`` sees every decoded frame
    before the table does, so a report caused by that frame can already include it.
    """
    # What table.segment does, unrolled: this loop runs for every packet.
    tcp_segment, udp_datagram, tick = table.tcp_segment, table.udp_datagram, table.tick
    # the C core's decode when it is built: it answers NOT_MINE for the shapes only decode() knows; its
    # skimmer also takes whole the packets that only keep a reported TCP connection alive (SKIMMED),
    # unless a tap must see every segment
    decode_fast, not_mine = fast.decode, fast.NOT_MINE
    skim, skimmed = (table.skim if tap is None else None), fast.SKIMMED
    absorbed = 0
    undecoded = tcp = udp = count = size = 0
    timestamp = None
    try:
        for timestamp, linktype, frame in frames:
            if len(secrets) != absorbed and keys is not None:
                absorbed = absorb_secrets(secrets, absorbed, keys, stats)
            count += 1
            size += len(frame)
            if skim is not None:
                segment = skim(linktype, frame, timestamp)
                if segment is skimmed:
                    tcp += 1
                    tick(timestamp)
                    continue
            else:
                segment = decode_fast(linktype, frame)
            if segment is not_mine:
                segment = decode(linktype, frame)
            if segment is None:
                undecoded += 1
                continue
            if tap is not None:
                tap(timestamp, linktype, frame, segment)
            proto = segment[0]
            if proto == IP_PROTOCOL_TCP:
                tcp += 1
                tcp_segment(timestamp, segment)
            elif proto == IP_PROTOCOL_UDP:
                udp += 1
                udp_datagram(timestamp, segment)
            tick(timestamp)
    finally:
        # Also when a stop (KeyboardInterrupt) ends the loop early: what was fed is counted.
        stats.packets += count
        stats.bytes += size
        stats.undecoded_frames += undecoded
        stats.tcp_segments += tcp
        stats.udp_datagrams += udp
    return timestamp


def count_sieved(sieve: Any, stats: RunStats) -> None:
    """Count the packets a reader's sieve skimmed as :func:`feed_frames` counts what it skims itself."""
    stats.packets += sieve.skimmed
    stats.bytes += sieve.skimmed_bytes
    stats.tcp_segments += sieve.skimmed


def damage_note(reader: CaptureReader, truncation: Truncation) -> str:
    """The warning for a capture that stopped being readable part way."""
    return (
        f"{reader.name}: capture damaged at byte offset {truncation.offset} ({truncation.reason}); "
        f"the {reader.packets} packets before it were analysed"
    )


def absorb_secrets(secrets: Sequence[bytes], absorbed: int, keys: KeyLog, stats: RunStats | None) -> int:
    """Feed the key log blocks after the first ``absorbed`` to ``keys``; return how many are absorbed now.

    The secrets gained are counted in ``stats`` unless it is None (another process counts them).
    """
    for block in secrets[absorbed:]:
        before = len(keys)
        keys.feed(block.decode("utf-8", "replace"), source=SOURCE_PCAPNG)
        keys.finish()
        if stats is not None:
            stats.keylog_secrets += len(keys) - before
    return len(secrets)


def analyze_files(
    readers: Iterable[CaptureReader],
    observer: Observer,
    limits: Limits = DEFAULT_LIMITS,
    keys: KeyLog | None = None,
) -> tuple[list[dict[str, Any]], RunStats]:
    """All events of some captures, in report order (for tests and library use)."""
    events: list[dict[str, Any]] = []
    stats = RunStats()

    keys = KeyLog() if keys is None else keys
    emit = CaptureEvents(observer, events.append)
    table = ConnectionTables(emit, stats, limits, keys=keys)
    for reader in readers:
        emit.reading(reader.name)
        feed_capture(reader, table, stats, keys)
    table.flush()
    return events, stats
