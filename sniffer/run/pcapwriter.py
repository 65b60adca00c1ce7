"""``--write-pcap``: the handshake packets of reported connections, for Wireshark.

The first packets of every flow are held (bounded per flow and in total) keyed by the flow's address
pair, outside the flow table. When a connection is reported its packets are written and the flow is
marked reported, so its bulk data is never kept. Flows never reported (not TLS) are forgotten when idle
or when the total bound needs room, oldest first.

The file is pcapng so frames of interfaces with different link types can share it; every open (start,
SIGHUP after logrotate) appends a new section, which pcapng readers handle as one file.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Final, TypeAlias

from helloscope.sniffer.capture.decode import Segment
from helloscope.sniffer.report.model import ConnectionReport
from helloscope.sniffer.stats import RunStats

_SHB: Final = 0x0A0D0D0A
_IDB: Final = 0x00000001
_EPB: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_SNAPLEN: Final = 262_144

# (protocol, lower endpoint, higher endpoint): the same key for both directions.
FlowKey: TypeAlias = tuple[int, tuple[bytes, int], tuple[bytes, int]]


@dataclass(frozen=True, slots=True)
class HandshakeBounds:
    """How much the handshake pcap holds per flow and in all, before it lets packets go."""

    packets_per_flow: int = 64
    bytes_per_flow: int = 256 * 1024
    total_bytes: int = 64 << 20
    flows: int = 100_000  # flows held at once (a SYN flood is many tiny flows)
    reported_flows_remembered: int = 65_536  # reported keys whose later packets are ignored


class _Held:
    __slots__ = ("last_seen", "packets", "size")

    def __init__(self) -> None:
        self.packets: list[tuple[float, int, bytes]] = []
        self.size = 0
        self.last_seen = 0.0


def flow_key(proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> FlowKey:
    one, other = (src, sport), (dst, dport)
    return (proto, one, other) if one <= other else (proto, other, one)


def report_key(report: ConnectionReport) -> FlowKey:
    endpoints = report.endpoints
    return flow_key(
        endpoints.transport.number, endpoints.client, endpoints.client_port, endpoints.server, endpoints.server_port
    )


class HandshakePcap:
    """Holds flows' first packets and writes those of reported connections to a pcapng file."""

    def __init__(self, path: str, stats: RunStats, bounds: HandshakeBounds = HandshakeBounds()) -> None:
        self.path = path
        self._stats = stats
        self._bounds = bounds
        self._held: OrderedDict[FlowKey, _Held] = OrderedDict()  # oldest first
        self._reported: OrderedDict[FlowKey, None] = OrderedDict()
        self._total = 0
        self._next_expiry = 0.0
        self._handle: BinaryIO | None = None
        self._interfaces: dict[int, int] = {}  # linktype → interface id in the current section
        self.open()

    def open(self) -> None:
        """Open (or, after a rename, reopen) the file for appending: raises OSError."""
        handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the sensor's lifetime
        self.close()
        self._handle = handle
        self._interfaces = {}
        body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)
        self._block(_SHB, body)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def keep(self, timestamp: float, linktype: int, frame: bytes, segment: Segment) -> None:
        """A decoded frame, before the flow table sees it."""
        key = flow_key(segment.proto, segment.src, segment.sport, segment.dst, segment.dport)
        if key in self._reported:
            return
        held = self._held.get(key)
        if held is None:
            if len(self._held) >= self._bounds.flows:
                self._drop_oldest()
            held = self._held[key] = _Held()
        held.last_seen = timestamp
        bounds = self._bounds
        if len(held.packets) >= bounds.packets_per_flow or held.size + len(frame) > bounds.bytes_per_flow:
            return
        held.packets.append((timestamp, linktype, bytes(frame)))
        held.size += len(frame)
        self._total += len(frame)
        while self._total > bounds.total_bytes and self._held:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, oldest = self._held.popitem(last=False)
        self._total -= oldest.size
        self._stats.handshake_flows_dropped += 1

    def reported(self, report: ConnectionReport) -> None:
        """Write a reported connection's held packets; its later packets are not kept."""
        key = report_key(report)
        held = self._held.pop(key, None)
        self._reported[key] = None
        if len(self._reported) > self._bounds.reported_flows_remembered:
            self._reported.popitem(last=False)
        if held is None:
            return
        self._total -= held.size
        for timestamp, linktype, frame in held.packets:
            self._packet(timestamp, linktype, frame)
        assert self._handle is not None
        self._handle.flush()

    def expire(self, now: float, idle: float) -> None:
        """Forget flows silent for ``idle`` seconds (the flow table has given up on them too).

        Reported keys are not aged here: they leave by count (``reported_flows_remembered``).
        """
        if now < self._next_expiry:
            return
        self._next_expiry = now + max(1.0, idle / 10)  # the flow table's sweep cadence
        for key in [key for key, held in self._held.items() if now - held.last_seen > idle]:
            self._total -= self._held.pop(key).size

    def _packet(self, timestamp: float, linktype: int, frame: bytes) -> None:
        interface = self._interfaces.get(linktype)
        if interface is None:
            interface = self._interfaces[linktype] = len(self._interfaces)
            # if_tsresol defaults to microseconds
            self._block(_IDB, struct.pack("<HHI", linktype, 0, _SNAPLEN))
        micros = round(timestamp * 1_000_000)
        header = struct.pack("<IIIII", interface, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
        self._block(_EPB, header + frame + b"\0" * (-len(frame) % 4))
        self._stats.handshake_packets_written += 1

    def _block(self, kind: int, body: bytes) -> None:
        assert self._handle is not None
        length = 12 + len(body)
        self._handle.write(struct.pack("<II", kind, length) + body + struct.pack("<I", length))
