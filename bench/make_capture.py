#!/usr/bin/env python3
"""Build a large, reproducible benchmark capture from the small real captures in pcaps/.

Extends ``../shared/bench/make_capture.py`` (same TCP replay) with what issue 7 asks of the mix:

- every TCP connection of the TLS templates is replayed with fresh addresses, ports and sequence
  numbers; the server then sends bulk application-data records, as an HTTPS download would;
- some ClientHellos are split across three segments, some of those delivered in reverse order, and
  some data segments are sent twice (retransmissions);
- the UDP datagrams of the QUIC templates (``pcaps/quic-*.pcap``) are replayed with fresh addresses
  and ports: Initial protection depends on the connection ID only, so every replay still decrypts;
- non-TLS noise: DNS-like datagrams, plain HTTP and SSH connections.

    make_capture.py --size-mb 200 --seed 1 -o bench/out/bench.pcap

Output: classic pcap, Ethernet, microsecond timestamps. The same seed and templates give the same bytes.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt

MSS = 1448
PCAPS = Path(__file__).resolve().parent.parent / "pcaps"
Message = tuple[bool, bytes]  # (from_client, payload)
_HTTP = [
    (True, b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench\r\n\r\n"),
    (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048),
]
_SSH = [
    (True, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    (False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    (True, bytes(range(256)) * 4),
    (False, bytes(range(255, -1, -1)) * 4),
]


def _ip_layer(buf: bytes, linktype: int) -> dpkt.Packet | None:
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if linktype == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(buf).data
    if linktype in (dpkt.pcap.DLT_RAW, 101):
        return dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    return None


def read_template(path: Path) -> tuple[list[list[Message]], list[list[Message]]]:
    """(TCP connections, UDP flows) of a capture, each a list of (from_client, payload) in order.

    TCP payloads are deduplicated by sequence number and merged per direction run; UDP datagrams are
    kept one by one (a QUIC datagram's boundaries matter).
    """
    tcp_conns: dict[tuple, dict] = {}
    udp_flows: dict[tuple, dict] = {}
    with open(path, "rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        linktype = reader.datalink()
        for _, buf in reader:
            ip = _ip_layer(buf, linktype)
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            transport = ip.data
            if not isinstance(transport, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                continue
            a, b = (ip.src, transport.sport), (ip.dst, transport.dport)
            table = tcp_conns if isinstance(transport, dpkt.tcp.TCP) else udp_flows
            key = (a, b) if (a, b) in table or (b, a) not in table else (b, a)
            conn = table.setdefault(key, {"client": key[0], "seen": set(), "msgs": []})
            payload = bytes(transport.data)
            if isinstance(transport, dpkt.tcp.TCP):
                if transport.flags & dpkt.tcp.TH_SYN and not transport.flags & dpkt.tcp.TH_ACK:
                    conn["client"] = a
                if not payload or (a, transport.seq) in conn["seen"]:
                    continue
                conn["seen"].add((a, transport.seq))
                msgs = conn["msgs"]
                from_client = a == conn["client"]
                if msgs and msgs[-1][0] == from_client:
                    msgs[-1] = (from_client, msgs[-1][1] + payload)
                else:
                    msgs.append((from_client, payload))
            elif payload:
                conn["msgs"].append((a == conn["client"], payload))
    keep = [c["msgs"] for c in tcp_conns.values() if c["msgs"] and c["msgs"][0][0]]
    return keep, [c["msgs"] for c in udp_flows.values() if c["msgs"] and c["msgs"][0][0]]


def _ether(ip: dpkt.Packet) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def tcp_frame(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b""
) -> bytes:
    tcp = dpkt.tcp.TCP(
        sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags, win=65535, data=data
    )
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = 20 + len(tcp)
    return _ether(ip)


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = 20 + len(udp)
    return _ether(ip)


class Generator:
    """Writes one connection at a time; ``client_ip(i)`` gives every connection its own client address."""

    def __init__(self, args: argparse.Namespace, tcp_templates: list[list[Message]], quic: list[list[Message]]):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tcp_templates = tcp_templates
        self.quic_templates = quic
        self.bulk = b"\x17\x03\x03" + struct.pack("!H", MSS - 5) + bytes(MSS - 5)
        self.server = socket.inet_aton("192.0.2.10")

    def tcp_connection(self, client: bytes, dport: int, messages: list[Message], bulk: int, tls: bool) -> list[bytes]:
        rng, args = self.rng, self.args
        sport = 1024 + rng.randrange(60000)
        seq = [rng.getrandbits(32), rng.getrandbits(32)]  # client, server
        out: list[bytes] = []

        def emit(from_client: bool, flags: int, data: bytes = b"") -> None:
            me = 0 if from_client else 1
            src, dst = (client, self.server) if from_client else (self.server, client)
            ports = (sport, dport) if from_client else (dport, sport)
            out.append(tcp_frame(src, dst, *ports, seq[me], seq[1 - me], flags, data))
            seq[me] += len(data)

        emit(True, dpkt.tcp.TH_SYN)
        seq[0] += 1
        emit(False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        seq[1] += 1
        emit(True, dpkt.tcp.TH_ACK)
        for n, (from_client, payload) in enumerate(messages):
            size = MSS
            if tls and n == 0 and rng.random() < args.split:
                size = max(1, len(payload) // 3 + 1)
            chunks = [payload[o : o + size] for o in range(0, len(payload), size)]
            start = len(out)
            for chunk in chunks:
                emit(from_client, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, chunk)
                if rng.random() < args.dup:
                    out.append(out[-1])
            if n == 0 and len(chunks) > 1 and rng.random() < args.reorder:
                out[start:] = out[start:][::-1]
        for _ in range(bulk):
            emit(False, dpkt.tcp.TH_ACK, self.bulk)
        emit(True, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
        seq[0] += 1
        emit(False, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
        seq[1] += 1
        emit(True, dpkt.tcp.TH_ACK)
        return out

    def quic_flow(self, client: bytes, messages: list[Message]) -> list[bytes]:
        sport = 1024 + self.rng.randrange(60000)
        return [
            udp_frame(client, self.server, sport, 443, data)
            if from_client
            else udp_frame(self.server, client, 443, sport, data)
            for from_client, data in messages
        ]

    def bulk_records(self) -> int:
        """Application-data packets of one TLS connection.

        ``handshake``: the same ``--bulk`` for every connection (the handshake-heavy mix). ``long``: what
        real links carry, about 500 on average with one connection in ten of 10,000 to 20,000.
        """
        if self.args.profile == "handshake":
            return self.args.bulk
        if self.rng.random() < 0.1:
            return self.rng.randrange(10_000, 20_000)
        return self.rng.randrange(100, 900)

    def connection(self, i: int) -> list[bytes]:
        rng, args = self.rng, self.args
        client = socket.inet_aton(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        roll = rng.random()
        out: list[bytes]
        if self.quic_templates and roll < args.quic:
            out = self.quic_flow(client, rng.choice(self.quic_templates))
        elif roll < args.quic + args.plain:
            http = rng.random() < 0.5
            out = self.tcp_connection(client, 80 if http else 22, _HTTP if http else _SSH, 0, tls=False)
        else:
            out = self.tcp_connection(client, 443, rng.choice(self.tcp_templates), self.bulk_records(), tls=True)
        if rng.random() < args.noise:
            out.append(
                udp_frame(
                    client, socket.inet_aton("192.0.2.53"), rng.randrange(1024, 65535), 53, bytes(rng.randrange(30, 80))
                )
            )
        return out


def generate(args: argparse.Namespace, write: Callable[[bytes, float], None]) -> int:
    """Write connections until ``args.size_mb`` of frames are out; return the packet count."""
    tcp_templates: list[list[Message]] = []
    quic_templates: list[list[Message]] = []
    for path in args.template or sorted(PCAPS.glob("*.pcap")):
        tcp, udp = read_template(Path(path))
        tcp_templates += tcp
        quic_templates += udp
    if not tcp_templates:
        raise SystemExit("no TCP connection with payload found in the templates")
    gen = Generator(args, tcp_templates, quic_templates)
    limit = args.size_mb * 1_000_000
    written = packets = i = 0
    ts = 1_700_000_000.0
    while written < limit:
        for frame in gen.connection(i):
            write(frame, ts)
            ts += 0.00001
            written += len(frame) + 16
            packets += 1
        i += 1
    return packets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", action="append", help="capture to take connections from (default: pcaps/*.pcap)")
    ap.add_argument("--size-mb", type=float, default=200, help="stop after this many MB of capture")
    ap.add_argument("--bulk", type=int, default=50, help="application-data packets per TLS connection")
    ap.add_argument(
        "--profile",
        choices=("handshake", "long"),
        default="handshake",
        help="handshake: --bulk packets per TLS connection; long: ~500 on average, 10%% of 10,000-20,000",
    )
    ap.add_argument("--split", type=float, default=0.2, help="share of hellos split into 3 segments")
    ap.add_argument("--reorder", type=float, default=0.05, help="share of split hellos sent out of order")
    ap.add_argument("--dup", type=float, default=0.02, help="share of data segments sent twice")
    ap.add_argument("--quic", type=float, default=0.1, help="share of connections that are QUIC")
    ap.add_argument("--plain", type=float, default=0.05, help="share of connections that are plain HTTP or SSH")
    ap.add_argument("--noise", type=float, default=0.1, help="DNS-like datagrams per connection")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    with open(args.output, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        packets = generate(args, writer.writepkt)
    print(f"{args.output}: {packets} packets")


if __name__ == "__main__":
    main()
