"""Live capture on a real veth link between two network namespaces, with real TCP and UDP peers.

The capture runs in a child Python process inside the server's namespace (a packet socket sees only its
own namespace's interfaces). The child opens the captures, answers TCP on one port as an echo server,
prints one JSON line when it is ready, and when its stdin closes (or after a deadline) prints every
packet it decoded, per capture, and the kernel counters. Traffic comes from a Python client in the other
namespace. Everything is bounded: a few connections, short timeouts, namespaces removed after.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helloscope.sniffer.capture.rings import CaptureOptions, LiveCapture, LiveCaptureError, compile_filter

from tests.helpers import REPO
from tests.netns import SERVER_ADDRESS, Host, Link, netns_link  # noqa: F401

ECHO_PORT = 7001
OTHER_PORT = 7002
CHILD_DEADLINE = 20.0

# Runs in the server namespace. argv[1] is a JSON spec: capture options, how many captures to open in one
# process (a fanout group's members), and optionally a user to become once the sockets are open.
CAPTURE_CHILD = r"""
import json, os, select, socket, sys, threading, time
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.rings import CaptureOptions, LiveCapture, LiveCaptureError, drop_privileges

spec = json.loads(sys.argv[1])
options = CaptureOptions(tuple(spec["interfaces"]), bpf=spec.get("bpf"), snaplen=spec.get("snaplen", 262144),
                         promiscuous=spec.get("promiscuous", True), fanout_group=spec.get("fanout_group"),
                         buffer_mb=spec.get("buffer_mb", 64))
try:
    captures = [LiveCapture(options) for _ in range(spec.get("members", 1))]
    if spec.get("user"):
        drop_privileges(spec["user"])
except LiveCaptureError as error:
    print(json.dumps({"error": str(error)}), flush=True)
    sys.exit(2)

def address(packed):
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)

def echo(listener):
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            while data := connection.recv(65536):
                connection.sendall(data)

listener = socket.create_server((spec["listen"], spec["port"]))
threading.Thread(target=echo, args=(listener,), daemon=True).start()
print(json.dumps({"ready": True, "uid": os.getuid()}), flush=True)

if spec.get("hold"):  # let the traffic pile up in the ring until the test says go
    sys.stdin.readline()
seen = [[] for _ in captures]
early_stats = None
deadline = time.monotonic() + spec["deadline"]
stdin_open = True
while time.monotonic() < deadline:
    for member, capture in enumerate(captures):
        for timestamp, linktype, frame in capture.poll(0.02):
            segment = decode(linktype, bytes(frame))
            seen[member].append({
                "time": timestamp, "linktype": linktype, "length": len(frame), "head": bytes(frame[:16]).hex(),
                "segment": None if segment is None else {
                    "proto": segment.proto, "src": address(segment.src), "dst": address(segment.dst),
                    "sport": segment.sport,
                    "dport": segment.dport, "seq": segment.seq, "flags": segment.flags,
                    "payload": segment.payload.hex(), "snapped": segment.snapped}})
        if seen[member] and early_stats is None:
            early_stats = captures[0].kernel_stats()
    if stdin_open and select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
        stdin_open = False
        deadline = min(deadline, time.monotonic() + 0.3)  # what is still in flight
stats = [capture.kernel_stats() for capture in captures]
print(json.dumps({"seen": seen, "stats": [[s.received, s.dropped] for s in stats],
                  "early_stats": early_stats and [early_stats.received, early_stats.dropped]}), flush=True)
"""

# Runs in the client namespace: each argument "tcp:HOST:PORT:HEXPAYLOAD" (one connection, echoed back) or
# "udp:HOST:PORT:HEXPAYLOAD[:COUNT]" (COUNT datagrams, default 1).
TRAFFIC_CHILD = r"""
import socket, sys
for item in sys.argv[1:]:
    kind, host, port, payload, *count = item.split(":")
    data = bytes.fromhex(payload)
    if kind == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(int(count[0]) if count else 1):
                sock.sendto(data, (host, int(port)))
        continue
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        echoed = b""
        while len(echoed) < len(data):
            echoed += sock.recv(65536)
        assert echoed == data
"""


# Runs in the server namespace: holds tun9 open (a tun device has carrier only while a process holds
# it), then lets the kernel send a UDP datagram and a TCP SYN out through it.
TUN_TRAFFIC = rf"""
import fcntl, os, socket, struct, time
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, 0x400454CA, struct.pack("16sH14x", b"tun9", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
time.sleep(0.2)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"through tun", ("198.18.9.2", {OTHER_PORT}))
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.setblocking(False)
    sock.connect_ex(("198.18.9.2", {ECHO_PORT}))
    time.sleep(0.2)
"""


@dataclass(frozen=True, slots=True)
class Seen:
    """What the capture child reported: decoded packets per capture, and each capture's kernel counters."""

    members: list[list[dict[str, Any]]]
    stats: list[tuple[int, int]]
    early_stats: tuple[int, int] | None  # the first capture's counters as soon as it had seen a packet

    @property
    def segments(self) -> list[dict[str, Any]]:
        return [packet["segment"] for member in self.members for packet in member if packet["segment"]]


class CaptureChild:
    def __init__(self, host: Host, spec: dict[str, Any]) -> None:
        spec = {"listen": "0.0.0.0", "port": ECHO_PORT, "deadline": CHILD_DEADLINE, **spec}
        self.process = host.popen(
            sys.executable, "-c", CAPTURE_CHILD, json.dumps(spec),
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert self.process.stdout is not None
        self.hello: dict[str, Any] = json.loads(self.process.stdout.readline() or "{}")

    def finish(self) -> Seen:
        """Close the child's stdin (its signal to stop) and read its report."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        report = json.loads(self.process.stdout.read())  # the child's own deadline bounds this
        self.process.wait(timeout=10)
        early = report["early_stats"]
        return Seen(report["seen"], [tuple(pair) for pair in report["stats"]], tuple(early) if early else None)

    def go(self) -> None:
        """Let a child started with ``hold=True`` start reading its ring."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def capture_child(netns_link: Link) -> Iterator[Any]:  # noqa: F811
    children: list[CaptureChild] = []

    def start(host: Host | None = None, **spec: Any) -> CaptureChild:
        child = CaptureChild(host or netns_link.server, {"interfaces": [netns_link.server.interface], **spec})
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


def send(host: Host, *items: str) -> None:
    done = host.run(sys.executable, "-c", TRAFFIC_CHILD, *items, timeout=30)
    assert done.returncode == 0, done.stderr


def tcp(payload: bytes, port: int = ECHO_PORT, address: str = SERVER_ADDRESS) -> str:
    return f"tcp:{address}:{port}:{payload.hex()}"


def flow_key(segment: dict[str, Any]) -> tuple[Any, ...]:
    """The same key for both directions of one connection."""
    ends = sorted([(segment["src"], segment["sport"]), (segment["dst"], segment["dport"])])
    return (segment["proto"], *ends[0], *ends[1])


def test_tcp_exchange_is_captured_in_both_directions_and_decodes(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    before = time.time()
    child = capture_child()
    assert child.hello.get("ready"), child.hello
    marker = b"hello over a real veth link"
    send(netns_link.client, tcp(marker))
    seen = child.finish()

    packets = seen.members[0]
    assert packets and all(packet["linktype"] == 1 for packet in packets)
    assert all(before - 1 < packet["time"] < time.time() + 1 for packet in packets)
    flows = [s for s in seen.segments if ECHO_PORT in (s["sport"], s["dport"])]
    syns = [s for s in flows if s["flags"] & 0x02]
    assert {(s["src"], s["dst"]) for s in syns} == {
        (netns_link.client.address, SERVER_ADDRESS), (SERVER_ADDRESS, netns_link.client.address),
    }  # fmt: skip
    carried = [s for s in flows if s["payload"]]
    assert {s["src"] for s in carried} == {netns_link.client.address, SERVER_ADDRESS}
    assert all(bytes.fromhex(s["payload"]) == marker for s in carried)
    assert any(s["flags"] & 0x01 for s in flows)  # the FIN of the close
    received, dropped = seen.stats[0]
    assert received >= len(packets) and dropped == 0


def test_bpf_filter_keeps_only_matching_packets(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    child = capture_child(bpf=f"tcp port {ECHO_PORT}")
    assert child.hello.get("ready"), child.hello
    send(netns_link.client, f"udp:{SERVER_ADDRESS}:{OTHER_PORT}:{b'not me'.hex()}", tcp(b"me"))
    seen = child.finish()

    segments = seen.segments
    assert segments and len(segments) == len(seen.members[0])  # nothing but TCP (no ARP, no ICMP, no UDP)
    assert all(s["proto"] == 6 and ECHO_PORT in (s["sport"], s["dport"]) for s in segments)
    assert any(bytes.fromhex(s["payload"]) == b"me" for s in segments)
    assert seen.stats[0][0] == len(segments)  # the kernel counts only what passed the filter


def test_kernel_drops_are_counted_and_counters_add_up_across_reads(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    # A 2 MiB ring (the smallest) that nobody reads while 40,000 datagrams arrive: the kernel must drop.
    child = capture_child(bpf=f"udp port {OTHER_PORT}", buffer_mb=1, hold=True)
    assert child.hello.get("ready"), child.hello
    send(netns_link.client, f"udp:{SERVER_ADDRESS}:{OTHER_PORT}:{b'flood'.hex()}:40000")
    child.go()
    seen = child.finish()

    captured = len(seen.members[0])
    received, dropped = seen.stats[0]
    assert captured > 0 and dropped > 0
    assert received == captured + dropped  # tcpdump's meaning: received by filter, of which dropped
    assert seen.early_stats is not None and received >= seen.early_stats[0] and dropped >= seen.early_stats[1]


def test_snaplen_cuts_frames_and_decode_sees_what_was_cut(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    child = capture_child(snaplen=80)
    assert child.hello.get("ready"), child.hello
    send(netns_link.client, tcp(bytes(range(256)) * 4))
    seen = child.finish()

    assert all(packet["length"] <= 80 for packet in seen.members[0])
    cut = [s for s in seen.segments if s["snapped"]]
    assert cut and all(len(bytes.fromhex(s["payload"])) + s["snapped"] == 1024 for s in cut)


def test_fanout_sends_both_directions_of_a_flow_to_one_member(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    child = capture_child(members=2, fanout_group=4242, bpf=f"tcp port {ECHO_PORT}")
    assert child.hello.get("ready"), child.hello
    send(netns_link.client, *(tcp(f"flow {n}".encode()) for n in range(8)))
    seen = child.finish()

    members_of: dict[tuple[Any, ...], set[int]] = {}
    directions_of: dict[tuple[Any, ...], set[str]] = {}
    for member, packets in enumerate(seen.members):
        for packet in packets:
            key = flow_key(packet["segment"])
            members_of.setdefault(key, set()).add(member)
            directions_of.setdefault(key, set()).add(packet["segment"]["src"])
    assert len(members_of) == 8
    assert all(len(members) == 1 for members in members_of.values()), members_of
    assert all(len(directions) == 2 for directions in directions_of.values())
    # each packet went to exactly one member: as many as one socket alone would see, no copies
    every = [(s["src"], s["sport"], s["seq"], s["flags"], s["payload"]) for s in seen.segments]
    assert len(every) == len(set(every))
    assert sum(received for received, _ in seen.stats) == len(every)


def loop_and_link(link: Link, child: Any) -> Any:
    """One TCP exchange over the server's loopback and one over the veth link, as ``child`` saw them."""
    assert child.hello.get("ready"), child.hello
    loop = link.server.run(
        sys.executable, "-c", TRAFFIC_CHILD, tcp(b"looped", address="127.0.0.1"), cwd=REPO, timeout=30
    )
    assert loop.returncode == 0, loop.stderr
    send(link.client, tcp(b"linked"))
    return child.finish()


def test_loopback_packets_are_seen_once_with_ethernet_framing(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    seen = loop_and_link(netns_link, capture_child(interfaces=["lo", netns_link.server.interface], bpf="tcp"))

    looped = [s for s in seen.segments if s["src"] == "127.0.0.1"]
    linked = [s for s in seen.segments if s["src"] != "127.0.0.1"]
    assert all(packet["linktype"] == 1 for packet in seen.members[0])
    assert [bytes.fromhex(s["payload"]) for s in looped if s["payload"]] == [b"looped", b"looped"]
    assert [bytes.fromhex(s["payload"]) for s in linked if s["payload"]] == [b"linked", b"linked"]
    every = [(s["src"], s["sport"], s["seq"], s["flags"], s["payload"]) for s in looped]
    assert len(every) == len(set(every)), "a loopback packet was seen twice"


def test_any_interface_is_cooked_filtered_and_sees_loopback_once(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    # "ip" is a test of the SLL protocol field: in the kernel it must become an ancillary load
    seen = loop_and_link(netns_link, capture_child(interfaces=["any"], bpf=f"ip and tcp port {ECHO_PORT}"))

    packets = seen.members[0]
    assert packets and all(p["linktype"] == 113 and p["segment"] for p in packets)
    # SLL header: packet type, ARPHRD type (1, Ethernet), address length (6), address, protocol (IPv4)
    incoming = [p for p in packets if p["segment"]["src"] == netns_link.client.address]
    outgoing = [p for p in packets if p["segment"]["src"] == SERVER_ADDRESS]
    assert incoming and all(p["head"][:12] == "000000010006" and p["head"][28:32] == "0800" for p in incoming)
    assert outgoing and all(p["head"][:4] == "0004" for p in outgoing)  # PACKET_OUTGOING
    payloads = sorted(bytes.fromhex(s["payload"]) for s in seen.segments if s["payload"])
    assert payloads == [b"linked", b"linked", b"looped", b"looped"]  # loopback once, not twice
    assert all(ECHO_PORT in (s["sport"], s["dport"]) for s in seen.segments)


def ip_in(host: Host, *commands: str) -> None:
    """Run ``ip``/``bridge`` commands (one per string) in ``host``'s namespace, or skip if the kernel can't."""
    for command in commands:
        done = host.run(*command.split())
        if done.returncode != 0:
            pytest.skip(f"{command!r}: {done.stderr.strip()}")


def test_vlan_tags_the_kernel_took_out_are_put_back(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    # The server's end of the link becomes a VLAN-filtering bridge port that tags VLAN 5 on the way out.
    # The tag travels beside the frame (skb metadata), so the client's packet socket gets it separately.
    server, client = netns_link.server, netns_link.client
    peer_mac = json.loads(client.run("ip", "-j", "link", "show", client.interface).stdout)[0]["address"]
    ip_in(
        server,
        "ip link add br9 type bridge vlan_filtering 1",
        f"ip link set {server.interface} master br9",
        f"bridge vlan add vid 5 dev {server.interface}",
        "bridge vlan add vid 5 dev br9 self pvid untagged",
        "ip link set br9 up",
        "ip addr add 198.18.9.1/24 dev br9",
        f"ip neigh replace 198.18.9.2 lladdr {peer_mac} dev br9 nud permanent",
    )
    # no "vlan" filter: compiled offline, libpcap assumes the tag is inside the frame, where the kernel's
    # filter will not find it
    child = capture_child(host=client, interfaces=[client.interface])
    assert child.hello.get("ready"), child.hello
    done = server.run(sys.executable, "-c", TRAFFIC_CHILD, f"udp:198.18.9.2:{OTHER_PORT}:{b'tagged'.hex()}")
    assert done.returncode == 0, done.stderr
    seen = child.finish()

    packets = [p for p in seen.members[0] if p["segment"] and p["segment"]["dport"] == OTHER_PORT]
    assert [bytes.fromhex(p["segment"]["payload"]) for p in packets] == [b"tagged"]
    assert packets[0]["head"][24:32] == "81000005"  # TPID 0x8100, VLAN 5, back in the frame


def test_device_without_link_header_gives_raw_ip(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    # A tun device: the kernel's own packets to 198.18.9.2 leave through it as bare IP.
    server = netns_link.server
    ip_in(server, "ip tuntap add dev tun9 mode tun", "ip addr add 198.18.9.1/24 dev tun9", "ip link set tun9 up")
    child = capture_child(interfaces=["tun9"], bpf=f"udp port {OTHER_PORT}")
    assert child.hello.get("ready"), child.hello
    done = server.run(sys.executable, "-c", TUN_TRAFFIC, timeout=30)
    assert done.returncode == 0, done.stderr
    seen = child.finish()

    packets = seen.members[0]
    assert packets and all(p["linktype"] == 101 and p["head"].startswith("45") for p in packets)
    # the filter, compiled for raw IP, let the datagram through and kept the TCP SYN out
    assert [(s["proto"], bytes.fromhex(s["payload"])) for s in seen.segments] == [(17, b"through tun")]


def test_capture_resumes_when_the_interface_comes_back_up(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    server = netns_link.server
    child = capture_child(bpf=f"tcp port {ECHO_PORT}")
    assert child.hello.get("ready"), child.hello
    send(netns_link.client, tcp(b"before"))
    ip_in(server, f"ip link set {server.interface} down", f"ip link set {server.interface} up")
    ip_in(server, f"ip addr replace {SERVER_ADDRESS}/24 dev {server.interface}")
    send(netns_link.client, tcp(b"after"))
    seen = child.finish()
    assert [bytes.fromhex(s["payload"]) for s in seen.segments if s["payload"]] == [b"before"] * 2 + [b"after"] * 2


def test_promiscuous_mode_is_set_while_capturing_and_only_when_asked(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    def promiscuity() -> int:
        shown = netns_link.server.run("ip", "-d", "-j", "link", "show", netns_link.server.interface)
        return int(json.loads(shown.stdout)[0]["promiscuity"])

    for promiscuous, expected in ((True, 1), (False, 0)):
        child = capture_child(promiscuous=promiscuous)
        assert child.hello.get("ready"), child.hello
        assert promiscuity() == expected
        child.finish()
    assert promiscuity() == 0


def test_capture_goes_on_after_dropping_privileges(netns_link: Link, capture_child: Any) -> None:  # noqa: F811
    child = capture_child(user="nobody", bpf=f"tcp port {ECHO_PORT}")
    assert child.hello == {"ready": True, "uid": 65534}
    send(netns_link.client, tcp(b"after setuid"))
    seen = child.finish()
    assert any(bytes.fromhex(s["payload"]) == b"after setuid" for s in seen.segments)


def run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a child that has dropped root (through drop_privileges) before it runs."""
    prelude = "from helloscope.sniffer.capture.rings import drop_privileges; drop_privileges('nobody'); import os\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=REPO, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_drop_privileges_changes_uid_gid_and_groups() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    done = run_as_nobody("print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["65534", "65534", "65534", "65534", "[65534]"]


def test_without_cap_net_raw_the_error_says_what_is_needed() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop it")
    done = run_as_nobody(
        "from helloscope.sniffer.capture.rings import CaptureOptions, LiveCapture, LiveCaptureError\n"
        "try:\n    LiveCapture(CaptureOptions(('lo',)))\n"
        "except LiveCaptureError as error:\n    print(error)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("capturing on lo needs root or the CAP_NET_RAW capability")


def test_unknown_user_is_one_clear_error() -> None:
    from helloscope.sniffer.capture.rings import drop_privileges

    with pytest.raises(LiveCaptureError, match="no such user: no-such-user-here"):
        drop_privileges("no-such-user-here")


@pytest.mark.parametrize("name", ["nosuch0", "x" * 40, ""])
def test_unknown_interface_is_one_clear_error(name: str) -> None:
    with pytest.raises(LiveCaptureError, match="no such network interface"):
        LiveCapture(CaptureOptions((name,)))


needs_libpcap = pytest.mark.skipif(ctypes.util.find_library("pcap") is None, reason="libpcap is not installed")


@needs_libpcap
def test_bad_filter_expression_gives_libpcaps_message() -> None:
    with pytest.raises(LiveCaptureError, match="bad filter expression 'tcp port': .*syntax error"):
        LiveCapture(CaptureOptions(("lo",), bpf="tcp port"))


@needs_libpcap
def test_filter_is_compiled_for_the_link_type() -> None:
    ethernet = compile_filter("ip", 1, 262144)
    raw = compile_filter("ip", 101, 262144)
    assert ethernet != raw  # Ethernet loads the ethertype at offset 12; raw IP looks at the version nibble
    assert ethernet.endswith(b"\x06\x00\x00\x00\x00\x00\x04\x00\x06\x00\x00\x00\x00\x00\x00\x00")


@needs_libpcap
def test_cooked_filter_on_fields_the_kernel_cannot_see_is_refused() -> None:
    # the SLL address (bytes 6..13) is not in the frame a cooked socket filters, nor in ancillary data
    with pytest.raises(LiveCaptureError, match="needs link-layer fields a cooked capture does not have"):
        compile_filter("ether[6] = 2", 113, 262144)
