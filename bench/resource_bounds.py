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

    python3 bench/resource_bounds.py [--syns N] [--hellos N] [--hole-bytes B] [--rsts N] [--only half-open ...]

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
from collections.abc import Iterator
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syns", type=int, default=1_000_000)
    parser.add_argument("--hellos", type=int, default=200_000)
    parser.add_argument("--hole-bytes", type=int, default=1 << 30)
    parser.add_argument("--rsts", type=int, default=1_000_000)
    parser.add_argument("--max-flows", type=int, default=1_000_000, help="flow cap of the half-open scenario")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    syn, hello = template_frames()
    default_cap = Limits().max_flows
    # name -> (capture file, its frames, flow cap)
    scenarios = {
        "syn-flood": ("syn-flood", lambda: syn_flood(syn, args.syns), default_cap),
        "half-open": ("syn-flood", lambda: syn_flood(syn, args.syns), args.max_flows),
        "hello-flood": ("hello-flood", lambda: hello_flood(syn, hello, args.hellos), default_cap),
        "hole": ("hole", lambda: hole(syn, hello, args.hole_bytes), default_cap),
        "rst-spray": ("rst-spray", lambda: rst_spray(syn, hello, args.rsts), default_cap),
    }
    unknown = set(args.only or ()) - set(scenarios)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(scenarios)}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
