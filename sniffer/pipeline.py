"""Capture → decode → flow table: the loop shared by the CLI, the tests and the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sniffer.capture import CaptureReader, Truncation
from sniffer.decode import decode
from sniffer.events import Observer, build_event
from sniffer.flows import DEFAULT_LIMITS, FlowTable, Limits
from sniffer.report import ConnectionReport
from sniffer.stats import RunStats

TCP = 6


def feed_capture(reader: CaptureReader, table: FlowTable, stats: RunStats) -> Truncation | None:
    """Run every packet of one capture through the flow table; return where the file was damaged."""
    stats.files += 1
    packet = table.packet
    undecoded = tcp = frames = size = 0
    for timestamp, linktype, frame in reader:
        frames += 1
        size += len(frame)
        segment = decode(linktype, frame)
        if segment is None:
            undecoded += 1
        elif segment.proto == TCP:
            tcp += 1
            packet(timestamp, segment)
    stats.packets += frames
    stats.bytes += size
    stats.undecoded_frames += undecoded
    stats.tcp_segments += tcp
    if reader.truncation is not None:
        stats.truncated_files += 1
    return reader.truncation


def analyze_files(
    readers: Iterable[CaptureReader],
    observer: Observer,
    limits: Limits = DEFAULT_LIMITS,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], RunStats]:
    """All events of some captures, in report order (for tests and library use)."""
    events: list[dict[str, Any]] = []
    stats = RunStats()

    def emit(report: ConnectionReport) -> None:
        event = build_event(report, observer)
        events.append(event)
        if on_event is not None:
            on_event(event)

    table = FlowTable(emit, stats, limits)
    for reader in readers:
        feed_capture(reader, table, stats)
    table.flush()
    return events, stats
