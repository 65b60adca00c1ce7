#!/usr/bin/env python3
"""Measure helloscope's memory under hostile load: floods and a huge out-of-order stream.

Three captures are made from the real packets of pcaps/tls12-noauth.pcap with rewritten addresses,
ports and sequence numbers, then analysed by ``helloscope analyze`` in a child process whose peak RSS
is read with wait4:

- ``syn-flood``: N SYNs from distinct client endpoints (default 1,000,000), never answered, under the
  default flow cap (most are evicted);
- ``half-open``: the same SYNs with the flow cap raised to N (``--max-flows``), so every one of them is a
  concurrent half-open flow until the end of the capture;
- ``hello-flood``: N connections that send a ClientHello and never hear back (default 200,000);
- ``hole``: one connection whose client sends the hello, then skips a segment and sends B bytes
  (default 1 GiB) of out-of-order data that can never be delivered;
- ``rst-spray``: one connection whose hello is followed by N RSTs (default 1,000,000) whose sequence
  numbers lie outside the window, as a blind injector or an evasion tool sends them: each costs one
  window check, and the connection is still followed (and reported) at the end.
- ``tiny-in-order`` / ``tiny-behind-hole`` / ``tiny-reversed``: one connection whose client sends the
  hello, then T one-byte segments (default 200,000): in order (the baseline), all behind a one-byte
  hole that the last packet fills, or in reverse order. The out-of-order budget counts each held
  segment's overhead, so under the default limits the hole is skipped (a counted gap) long before
  200,000 segments are held.

Then, in-process (no capture file), what the adversarial shapes cost the reassembler itself and what a
flow costs:

- ``reassembly``: T one-byte segments through one ``StreamReassembler`` with no budget, in order, behind
  a hole filled last, and reversed: seconds and peak RSS of a child process each;
- ``held-cost``: bytes a held segment really costs beyond its payload (tracemalloc), against
  ``HELD_SEGMENT_OVERHEAD``, the constant the budget counts;
- ``flow-memory``: bytes per flow (tracemalloc) of flows whose client sent a ClientHello and got no
  answer: the template's own hello, and the same hello padded to 16 KB.

    python3 bench/resource_bounds.py [--syns N] [--hellos N] [--hole-bytes B] [--tiny T] [--rsts N]
                                     [--only half-open ...]

Captures go to bench/out/ (gitignored). Prints a Markdown table with packets, seconds, peak RSS and
the run statistics that show the limits at work (default limits: 200,000 flows, 64 KiB held out of
order per direction).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helloscope.sniffer.capture.files import open_capture  # noqa: E402
from helloscope.sniffer.transport.lifecycle import Limits  # noqa: E402

OUT = REPO / "bench" / "out"
TEMPLATE = REPO / "pcaps" / "tls12-noauth.pcap"
ETHERNET, IPV4 = 14, 20
SYN = 0x02
RST_ACK = 0x14
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def template_frames() -> tuple[bytes, bytes]:
    """The client's SYN and its ClientHello segment, as captured."""
    syn = hello = None
    with open_capture(str(TEMPLATE)) as reader:
        for _, _, frame in reader:
            flags = frame[ETHERNET + IPV4 + 13]
            payload = frame[ETHERNET + IPV4 + (frame[ETHERNET + IPV4 + 12] >> 4) * 4 :]
            if flags & SYN and not flags & 0x10 and syn is None:
                syn = bytes(frame)
            elif payload[:1] == b"\x16" and len(payload) > 5 and payload[5] == 1 and hello is None:
                hello = bytes(frame)
    assert syn is not None and hello is not None, "template has no SYN or ClientHello"
    return syn, hello


def rewrite(frame: bytes, index: int, seq: int | None = None, payload: bytes | None = None) -> bytes:
    """Give a frame its own client endpoint (10.x.y.z would be private: use 198.18.0.0/15)."""
    data = bytearray(frame if payload is None else frame[: ETHERNET + IPV4 + 20] + payload)
    if payload is not None:
        struct.pack_into("!H", data, ETHERNET + 2, IPV4 + 20 + len(payload))
        data[ETHERNET + IPV4 + 12] = 5 << 4  # no TCP options in the rewritten header
    struct.pack_into("!BBH", data, ETHERNET + 12, 198, 18 + (index >> 24 & 1), index >> 8 & 0xFFFF)
    struct.pack_into("!H", data, ETHERNET + IPV4, 1024 + (index & 0xFF) * 200 % 64000)
    if seq is not None:
        struct.pack_into("!I", data, ETHERNET + IPV4 + 4, seq & 0xFFFFFFFF)
    return bytes(data)


def write(path: Path, frames: Iterator[bytes]) -> int:
    count = 0
    with path.open("wb") as handle:
        handle.write(PCAP_HEADER)
        for count, frame in enumerate(frames, 1):
            handle.write(struct.pack("<IIII", count // 1000, count % 1000 * 1000, len(frame), len(frame)))
            handle.write(frame)
    return count


def syn_flood(syn: bytes, count: int) -> Iterator[bytes]:
    return (rewrite(syn, index) for index in range(count))


def hello_flood(syn: bytes, hello: bytes, count: int) -> Iterator[bytes]:
    for index in range(count):
        yield rewrite(syn, index)
        yield rewrite(hello, index)


def hole(syn: bytes, hello: bytes, total: int) -> Iterator[bytes]:
    yield rewrite(syn, 0)
    yield rewrite(hello, 0)
    tcp = ETHERNET + IPV4
    start = struct.unpack_from("!I", hello, tcp + 4)[0] + len(hello) - tcp - (hello[tcp + 12] >> 4) * 4
    chunk = b"\x17\x03\x03" + bytes(1397)
    # Skip one segment after the hello: everything after it waits for bytes that never come.
    for offset in range(len(chunk), total, len(chunk)):
        yield rewrite(hello, 0, seq=start + offset, payload=chunk)


def rst_spray(syn: bytes, hello: bytes, count: int) -> Iterator[bytes]:
    yield rewrite(syn, 0)
    yield rewrite(hello, 0)
    tcp = ETHERNET + IPV4
    after = struct.unpack_from("!I", hello, tcp + 4)[0] + len(hello) - tcp - (hello[tcp + 12] >> 4) * 4
    rst = bytearray(syn)
    rst[tcp + 13] = RST_ACK
    for index in range(count):
        # 1 MiB and more beyond the next byte expected: outside the window (transport/tcp.py RST_WINDOW)
        yield rewrite(bytes(rst), 0, seq=after + (1 << 20) + index * 1460)


TINY = ("in-order", "behind-hole", "reversed")


def tiny(syn: bytes, hello: bytes, count: int, order: str) -> Iterator[bytes]:
    """The hello, then ``count`` one-byte segments of application-data records in the given order."""
    yield rewrite(syn, 0)
    yield rewrite(hello, 0)
    tcp = ETHERNET + IPV4
    start = struct.unpack_from("!I", hello, tcp + 4)[0] + len(hello) - tcp - (hello[tcp + 12] >> 4) * 4
    record = b"\x17\x03\x03" + (1019).to_bytes(2, "big") + bytes(1019)
    data = (record * (count // len(record) + 1))[:count]
    offsets = list(range(count))
    if order == "behind-hole":
        offsets = offsets[1:] + offsets[:1]
    elif order == "reversed":
        offsets.reverse()
    for offset in offsets:
        yield rewrite(hello, 0, seq=start + offset, payload=data[offset : offset + 1])


# The analyze pipeline without output, printing its run statistics: what the CLI does per event,
# minus writing JSON, so peak RSS is the sensor's own.
_CHILD = """
import json, sys
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.stats import RunStats
stats, observer = RunStats(), Observer("bench")
table = ConnectionTables(lambda report: build_event(report, observer), stats, Limits(max_flows=int(sys.argv[2])))
with open_capture(sys.argv[1]) as reader:
    feed_capture(reader, table, stats)
table.flush()
print(json.dumps(stats.as_dict()))
"""


def measure(capture: Path, max_flows: int) -> tuple[float, int, dict[str, int]]:
    """Seconds, peak RSS in MB and run statistics of one analysis in a child process."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(capture), str(max_flows)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"analysis of {capture} failed (status {status})")
    return time.perf_counter() - began, round(usage.ru_maxrss / 1024), json.loads(output)


# One StreamReassembler fed one-byte segments in the order argv[2] names; prints seconds.
_REASSEMBLY_CHILD = """
import os, sys, time
from helloscope.sniffer.transport.reassembly import StreamReassembler
count, order = int(sys.argv[1]), sys.argv[2]
data = os.urandom(count)
offsets = list(range(count))
if order == "behind-hole":
    offsets = offsets[1:] + offsets[:1]
elif order == "reversed":
    offsets.reverse()
segments = [(0xFFFF0001 + offset & 0xFFFFFFFF, data[offset : offset + 1]) for offset in offsets]
stream = StreamReassembler(max_bytes=1 << 40, max_pending=1 << 40)
stream.syn(0xFFFF0000)
began = time.perf_counter()
out = b"".join([stream.add(seq, payload) for seq, payload in segments])
seconds = time.perf_counter() - began
assert out == data, "reassembly lost bytes"
print(seconds)
"""


def reassembly(count: int) -> None:
    print("\n| reassembler, one-byte segments | segments | seconds | peak RSS MB |")
    print("|---|--:|--:|--:|")
    for order in ("in-order", "behind-hole", "reversed"):
        process = subprocess.Popen(
            [sys.executable, "-c", _REASSEMBLY_CHILD, str(count), order], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        seconds = float(process.stdout.read())
        _, status, usage = os.wait4(process.pid, 0)
        if status:
            raise SystemExit(f"reassembly child failed (status {status})")
        print(f"| {order} | {count:,} | {seconds:.2f} | {round(usage.ru_maxrss / 1024)} |", flush=True)


def held_cost() -> None:
    """What a held segment costs beyond its payload, measured, against what the budget counts."""
    import tracemalloc

    from helloscope.sniffer.transport.reassembly import HELD_SEGMENT_OVERHEAD, StreamReassembler

    frame = os.urandom(2048)
    print("\n| held segments | payload bytes | measured bytes/segment beyond payload | counted |")
    print("|--:|--:|--:|--:|")
    for count in (500, 10_000, 100_000):
        for size in (1, 100, 1000):
            tracemalloc.start()
            stream = StreamReassembler(max_bytes=1 << 40, max_pending=1 << 40)
            stream.syn(0)
            before = tracemalloc.get_traced_memory()[0]
            for index in range(count):
                # Slices of a frame, as decode hands them over (one-byte slices are CPython singletons).
                stream.add(2 + index * (size + 1), frame[index % 1000 : index % 1000 + size])
            measured = (tracemalloc.get_traced_memory()[0] - before) / count - size
            tracemalloc.stop()
            print(f"| {count:,} | {size} | {measured:.0f} | {HELD_SEGMENT_OVERHEAD} |", flush=True)


def _padded_hello(payload: bytes, size: int) -> bytes:
    """A ClientHello record grown to ``size`` bytes with a padding extension (RFC 7685)."""
    body = bytearray(payload[9:])
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    pad = size - (9 + len(body) + 4)
    extensions = int.from_bytes(body[pos : pos + 2], "big") + 4 + pad
    body[pos : pos + 2] = extensions.to_bytes(2, "big")
    body += b"\x00\x15" + pad.to_bytes(2, "big") + bytes(pad)
    message = b"\x01" + len(body).to_bytes(3, "big") + bytes(body)
    return b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message


def flow_memory(flows: int = 500) -> None:
    """Bytes per flow of unanswered ClientHellos, the template's and one padded to 16 KB, by tracemalloc."""
    import tracemalloc

    from helloscope.sniffer.capture.decode import decode
    from helloscope.sniffer.stats import RunStats
    from helloscope.sniffer.transport.tcp import FlowTable

    syn_frame, hello_frame = template_frames()
    syn, hello = decode(1, syn_frame), decode(1, hello_frame)
    assert syn is not None and hello is not None
    print("\n| ClientHello bytes | flows | bytes per flow | top allocation sites (bytes per flow) |")
    print("|--:|--:|--:|---|")
    for payload in (hello.payload, _padded_hello(hello.payload, 16_000)):
        table = FlowTable(lambda report: None, RunStats())
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(flows):
            sport = 1024 + index
            table.packet(0.0, syn._replace(sport=sport))
            for offset in range(0, len(payload), 1448):
                seq = (hello.seq + offset) & 0xFFFFFFFF
                table.packet(0.0, hello._replace(sport=sport, seq=seq, payload=payload[offset : offset + 1448]))
        per_flow = (tracemalloc.get_traced_memory()[0] - before) / flows
        sites = tracemalloc.take_snapshot().statistics("lineno")[:3]
        tracemalloc.stop()
        top = ", ".join(
            f"{Path(site.traceback[0].filename).name}:{site.traceback[0].lineno} {site.size / flows:.0f}"
            for site in sites
        )
        print(f"| {len(payload):,} | {flows:,} | {per_flow:,.0f} | {top} |", flush=True)
        del table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syns", type=int, default=1_000_000)
    parser.add_argument("--hellos", type=int, default=200_000)
    parser.add_argument("--hole-bytes", type=int, default=1 << 30)
    parser.add_argument("--rsts", type=int, default=1_000_000)
    parser.add_argument("--tiny", type=int, default=200_000, help="one-byte segments of the tiny-* scenarios")
    parser.add_argument("--max-flows", type=int, default=1_000_000, help="flow cap of the half-open scenario")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    syn, hello = template_frames()
    default_cap = Limits().max_flows
    # name -> (capture file, its frames, flow cap)
    scenarios: dict[str, tuple[str, Callable[[], Iterator[bytes]], int]] = {
        "syn-flood": ("syn-flood", lambda: syn_flood(syn, args.syns), default_cap),
        "half-open": ("syn-flood", lambda: syn_flood(syn, args.syns), args.max_flows),
        "hello-flood": ("hello-flood", lambda: hello_flood(syn, hello, args.hellos), default_cap),
        "hole": ("hole", lambda: hole(syn, hello, args.hole_bytes), default_cap),
        "rst-spray": ("rst-spray", lambda: rst_spray(syn, hello, args.rsts), default_cap),
        **{
            f"tiny-{order}": (f"tiny-{order}", partial(tiny, syn, hello, args.tiny, order), default_cap)
            for order in TINY
        },
    }
    in_process: dict[str, Callable[[], None]] = {
        "reassembly": lambda: reassembly(args.tiny),
        "held-cost": held_cost,
        "flow-memory": flow_memory,
    }
    unknown = set(args.only or ()) - set(scenarios) - set(in_process)
    if unknown:
        choices = ", ".join([*scenarios, *in_process])
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {choices}")
    print(
        "| scenario | packets | MB | flow cap | seconds | peak RSS MB | flows tracked | flow-cap evictions "
        "| stream gaps |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    written: dict[str, int] = {}
    for name, (file, frames, cap) in scenarios.items():
        if args.only and name not in args.only:
            continue
        capture = OUT / f"{file}.pcap"
        if file not in written:
            written[file] = write(capture, frames())
        packets = written[file]
        seconds, rss, stats = measure(capture, cap)
        print(
            f"| {name} | {packets:,} | {capture.stat().st_size / 1e6:.0f} | {cap:,} | {seconds:.1f} | {rss} | "
            f"{stats['flows_tracked']:,} | {stats['flow_cap_evictions']:,} | {stats['stream_gaps']} |",
            flush=True,
        )
    for name, run in in_process.items():
        if not args.only or name in args.only:
            run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
