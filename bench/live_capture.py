#!/usr/bin/env python3
"""Compare live-capture backends: packets per second and kernel drops for the same offered load.

A veth pair joins two network namespaces (tests/netns.py). ``tcpreplay --topspeed`` sends a capture out
of the client's end as fast as it can; a consumer process in the server's namespace captures on the
other end with one backend, touches every frame as a sensor would (its length, a bytes object, a
timestamp), and reports what it got and what the kernel says it dropped. Backends:

- ``ring``: helloscope.sniffer.capture.rings.LiveCapture, AF_PACKET with a TPACKET_V3 mmap ring (what helloscope uses);
- ``ring+decode``: the same, and every frame through helloscope.sniffer.capture.decode.decode, as the live sensor does;
- ``recvmsg``: a plain AF_PACKET socket with a 64 MiB buffer, one recvmsg per packet (SO_TIMESTAMPNS);
- ``scapy``: scapy's native Linux socket (scapy.arch.linux.L2ListenSocket), one recv_raw per packet.

Two loads: ``mix`` is the benchmark capture of bench/make_capture.py (TLS, bulk, QUIC, noise; about
1.2 KB a frame), ``small`` is 60-byte UDP frames (worst case: per-packet cost only).

    sudo .venv/bin/python bench/live_capture.py [--packets N] [--runs R] [--backends ring recvmsg ...]

Needs root, iproute2 and tcpreplay (apt-get install tcpreplay). Captures go to bench/out/ (gitignored).
Prints a Markdown table: offered packets and rate (tcpreplay's), captured packets, kernel drops, and
the consumer's CPU time (user + system) per captured packet, whose inverse is the rate one core could
sustain. The captured count can exceed the offered one by a few packets the link makes itself (IPv6
neighbour discovery after it comes up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.netns import Link

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "bench" / "out"
MIX = OUT / "bench-10mb-seed1.pcap"
SMALL = OUT / "live-small-udp.pcap"
BACKENDS = ("ring", "ring+decode", "recvmsg", "scapy")
IDLE_END = 1.0  # the consumer stops this long after its last packet
CONSUMER_DEADLINE = 120.0
SOL_PACKET, PACKET_STATISTICS, ETH_P_ALL = 263, 6, 0x0003
SO_TIMESTAMPNS, SO_RCVBUFFORCE = 35, 33


# --- consumer side (runs in the server namespace) ---------------------------------------------------


def packets_from_ring(interface: str, decoding: bool) -> tuple[Iterator[int], Callable[[], tuple[int, int]]]:
    from helloscope.sniffer.capture.decode import decode
    from helloscope.sniffer.capture.rings import CaptureOptions, LiveCapture

    capture = LiveCapture(CaptureOptions((interface,)))

    def batches() -> Iterator[int]:
        while True:
            packets = capture.poll(0.05)
            if decoding:
                for _, linktype, frame in packets:
                    decode(linktype, frame)
            yield len(packets)

    def stats() -> tuple[int, int]:
        kernel = capture.kernel_stats()
        return kernel.received, kernel.dropped

    return batches(), stats


def packet_statistics(sock: socket.socket) -> Callable[[], tuple[int, int]]:
    totals = [0, 0]

    def stats() -> tuple[int, int]:
        packets, drops = struct.unpack("=II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        totals[0] += packets
        totals[1] += drops
        return totals[0], totals[1]

    return stats


def packets_from_recvmsg(interface: str) -> tuple[Iterator[int], Callable[[], tuple[int, int]]]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((interface, ETH_P_ALL))
    sock.setblocking(False)
    ancillary = socket.CMSG_SPACE(16)
    timespec = struct.Struct("=qq").unpack_from

    def batches() -> Iterator[int]:
        while True:
            select.select([sock], [], [], 0.05)
            got: list[tuple[float, int, bytes]] = []
            for _ in range(4096):
                try:
                    frame, ancdata, _, _ = sock.recvmsg(262144, ancillary)
                except BlockingIOError:
                    break
                seconds, nanoseconds = timespec(ancdata[0][2])
                got.append((seconds + nanoseconds * 1e-9, 1, frame))
            yield len(got)

    return batches(), packet_statistics(sock)


def packets_from_scapy(interface: str) -> tuple[Iterator[int], Callable[[], tuple[int, int]]]:
    logging.getLogger("scapy").setLevel(logging.ERROR)  # it warns that it cannot name a veth's link type
    from scapy.arch.linux import L2ListenSocket

    listener = L2ListenSocket(iface=interface, promisc=True)

    def batches() -> Iterator[int]:
        while True:
            got: list[object] = []
            while select.select([listener], [], [], 0 if got else 0.05)[0] and len(got) < 4096:
                _cls, frame, timestamp = listener.recv_raw(262144)
                got.append((timestamp, 1, frame))
            yield len(got)

    return batches(), packet_statistics(listener.ins)


def consume(backend: str, interface: str) -> None:
    if backend in ("ring", "ring+decode"):
        batches, stats = packets_from_ring(interface, backend == "ring+decode")
    elif backend == "recvmsg":
        batches, stats = packets_from_recvmsg(interface)
    else:
        batches, stats = packets_from_scapy(interface)
    stats()  # zero the kernel's counters: only the load counts
    print("ready", flush=True)
    captured = 0
    last = 0.0
    cpu_start = time.process_time()
    deadline = time.monotonic() + CONSUMER_DEADLINE
    for count in batches:
        now = time.monotonic()
        if count:
            captured += count
            last = now
        elif (captured and now - last > IDLE_END) or now > deadline:
            break
    received, dropped = stats()
    cpu = time.process_time() - cpu_start  # idle polling costs next to nothing next to the load
    print(json.dumps({"captured": captured, "cpu": cpu, "received": received, "dropped": dropped}), flush=True)


# --- driver side ----------------------------------------------------------------------------------


def make_small_capture(path: Path, count: int) -> None:
    """``count`` 60-byte Ethernet/IPv4/UDP frames to varied ports (one flow each, as a scan would)."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    records = []
    for n in range(count):
        payload = b"\x00" * 10
        udp = struct.pack("!HHHH", 1024 + n % 60000, 53, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([198, 18, 1, n % 250 + 1]), bytes([198, 18, 0, 1])) + udp  # fmt: skip
        frame = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip
        frame += b"\x00" * (60 - len(frame))
        records.append(struct.pack("<IIII", n // 1000, n % 1000 * 1000, len(frame), len(frame)) + frame)
    path.write_bytes(header + b"".join(records))


def ensure_captures() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not MIX.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "make_capture.py"), "--size-mb", "10", "--seed", "1",
                        "-o", str(MIX)], check=True)  # fmt: skip
    if not SMALL.exists():
        make_small_capture(SMALL, 20_000)


def frames_in(path: Path) -> int:
    data = path.read_bytes()
    offset, count = 24, 0
    while offset + 16 <= len(data):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        count += 1
    return count


def run_once(link: Link, backend: str, capture: Path, loops: int) -> dict[str, float]:
    server, client = link.server, link.client
    consumer = server.popen(sys.executable, str(Path(__file__).resolve()), "--consume", backend,
                            "--interface", server.interface, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit(f"{backend}: the consumer did not start")
        replay = client.run("tcpreplay", "--topspeed", "--preload-pcap", f"--loop={loops}",
                            "-i", client.interface, str(capture), timeout=300)  # fmt: skip
        if replay.returncode != 0:
            raise SystemExit(f"tcpreplay failed: {replay.stderr.strip()}")
        sent = int(re.search(r"Actual: (\d+) packets", replay.stdout).group(1))  # type: ignore[union-attr]
        rate = float(re.search(r"Rated: .*?([\d.]+) pps", replay.stdout).group(1))  # type: ignore[union-attr]
        report = json.loads(consumer.stdout.readline())
        consumer.wait(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    return {"sent": sent, "offered_pps": rate, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000, help="offered packets per run (rounded to loops)")
    parser.add_argument("--runs", type=int, default=3, help="runs per backend and load; the median is shown")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--loads", nargs="+", choices=("mix", "small"), default=["mix", "small"])
    parser.add_argument("--consume", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--interface", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume, args.interface)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/live_capture.py needs root (network namespaces, packet sockets)")
    if shutil.which("tcpreplay") is None:
        raise SystemExit("bench/live_capture.py needs tcpreplay (apt-get install tcpreplay)")
    from tests.netns import veth_link

    ensure_captures()
    print("| load | backend | offered packets | offered pps | captured | kernel drops | consumer CPU µs/packet |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for load in args.loads:
        capture = MIX if load == "mix" else SMALL
        loops = max(1, round(args.packets / frames_in(capture)))
        for backend in args.backends:
            results = []
            for _ in range(args.runs):
                with veth_link() as link:
                    results.append(run_once(link, backend, capture, loops))
            results.sort(key=lambda r: r["captured"])
            median = results[len(results) // 2]
            offered = statistics.median(r["offered_pps"] for r in results)
            cost = statistics.median(r["cpu"] / r["captured"] * 1e6 for r in results if r["captured"])
            print(f"| {load} | {backend} | {median['sent']:,} | {offered:,.0f} | {median['captured']:,} "
                  f"| {median['dropped']:,} | {cost:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
