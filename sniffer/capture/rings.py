"""Live capture from Linux network interfaces with AF_PACKET sockets, with libpcap's semantics.

One packet socket per interface, each with a TPACKET_V3 receive ring mapped into this process (the
fastest of the backends measured by bench/live_capture.py), polled together. Each socket is opened with
protocol 0, so the kernel delivers nothing to it until it is bound; a drop-all filter goes on before the
bind and the user's filter replaces it only once the socket has joined its fanout group, so no unfiltered
packet and no packet meant for another fanout member ever reaches the ring.

The filter is the user's tcpdump expression compiled to classic BPF by libpcap (through ctypes, with the
interface's link type) and always ends in ``ret #snaplen``, which is how the kernel truncates packets to
the snap length; with no expression the filter is that one instruction.

Link types follow libpcap: Ethernet-like devices (loopback too) give Ethernet frames (linktype 1),
devices without a link-layer header (tun, raw IP) give raw IP (linktype 101), and any other device and
the "any" pseudo-interface (every interface of the namespace) are captured in cooked mode, with a Linux
SLL header (linktype 113) built from what the kernel says of each packet. On loopback the kernel
hands a packet socket every packet twice, once outgoing and once incoming; the outgoing copy is dropped,
as libpcap does, but already in the kernel by a check in front of the filter.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import math
import mmap
import os
import pwd
import select
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from helloscope.sniffer.capture.defaults import DEFAULT_BUFFER_MB, DEFAULT_SNAPLEN

# <linux/if_ether.h>, <linux/if_packet.h>, <asm-generic/socket.h>
_ETH_P_ALL: Final = 0x0003
_SOL_PACKET: Final = 263
_PACKET_ADD_MEMBERSHIP: Final = 1
_PACKET_STATISTICS: Final = 6
_PACKET_FANOUT: Final = 18
_PACKET_MR_PROMISC: Final = 1
_PACKET_FANOUT_HASH: Final = 0
_PACKET_FANOUT_FLAG_DEFRAG: Final = 0x8000
_PACKET_OUTGOING: Final = 4
_SO_ATTACH_FILTER: Final = 26
_PACKET_VERSION: Final = 10
_PACKET_RX_RING: Final = 5
_TPACKET_V3: Final = 2
_TP_STATUS_KERNEL: Final = 0
_TP_STATUS_USER: Final = 1
_TP_STATUS_VLAN_VALID: Final = 0x10
_TP_STATUS_VLAN_TPID_VALID: Final = 0x40
_TPACKET_REQ3: Final = struct.Struct("=7I")  # block size, block count, frame size, frame count, timeout, priv, features
_TPACKET_STATS_V3: Final = struct.Struct("=3I")  # packets, drops, freeze count
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt
_BLOCK_STATUS_OFFSET: Final = 8
_BLOCK_STATUS: Final = struct.Struct("=I")
_BLOCK_HEADER: Final = struct.Struct("=III")
# struct tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net, then hv1: rxhash, vlan_tci, vlan_tpid
_TPACKET3_HDR: Final = struct.Struct("=IIIIIIH2x4xIH")
_VLAN_TAG: Final = struct.Struct("!HH")
_FRAME_SIZE: Final = 2048  # TPACKET_V3 packs frames by their real size; this only has to divide the block
_MIN_BLOCK: Final = 1 << 20
_MAX_FRAME_OVERHEAD: Final = 256  # tpacket3_hdr, sockaddr_ll and alignment in front of a frame in a block
# A block reaches us when full or this long after its first packet: the latency on a quiet link.
_BLOCK_TIMEOUT_MS: Final = 10
_SIOCGIFHWADDR: Final = 0x8927

# <linux/if_arp.h> device types and the link type libpcap gives them.
_ARPHRD_LOOPBACK: Final = 772
_ETHERNET_LIKE: Final = frozenset({1, _ARPHRD_LOOPBACK})  # ETHER, LOOPBACK; any other type is captured cooked
# Devices without header_ops: a packet socket gets the bare IP packet. NONE (tun, WireGuard), RAWIP, PPP,
# TUNNEL (ipip), TUNNEL6, SIT.
_RAW_IP_DEVICES: Final = frozenset({0xFFFE, 519, 512, 768, 769, 776})
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LINUX_SLL: Final = 113
_DLT: Final = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: 12, LINKTYPE_LINUX_SLL: 113}  # pcap_open_dead takes DLT_s
ANY_INTERFACE: Final = "any"  # every interface of the namespace, in cooked mode, as libpcap's "any"

_BPF_INSN: Final = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_RET_K: Final = 0x06
_BPF_LD_W_ABS: Final = 0x20
_BPF_JEQ_K: Final = 0x15
_DROP_ALL: Final = _BPF_INSN.pack(_BPF_RET_K, 0, 0, 0)
# Ancillary data a filter can load (SKF_AD_OFF + SKF_AD_*), used where the frame has no link-layer header.
_SKF_AD_PROTOCOL: Final = 0xFFFFF000 + 0
_SKF_AD_PKTTYPE: Final = 0xFFFFF000 + 4
_SKF_AD_IFINDEX: Final = 0xFFFFF000 + 8
# Loopback: skip the outgoing copy in the kernel (ld pkttype; jeq #OUTGOING, drop; else fall into the filter).
_SKIP_OUTGOING: Final = (
    _BPF_INSN.pack(_BPF_LD_W_ABS, 0, 0, _SKF_AD_PKTTYPE)
    + _BPF_INSN.pack(_BPF_JEQ_K, 0, 1, _PACKET_OUTGOING)
    + _DROP_ALL
)
# Cooked mode: the frame starts at the network header and the SLL header is built from the sockaddr_ll the
# kernel puts after each tpacket3_hdr (TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) from its start).
_SLL_HEADER_LENGTH: Final = 16
_SLL_FIELDS: Final = struct.Struct("!HHH")  # packet type, ARPHRD type, address length; then address, protocol
_SOCKADDR_LL_OFFSET: Final = 48
_SOCKADDR_LL: Final = struct.Struct("=HBB")  # sll_hatype, sll_pkttype, sll_halen at offset 8 of sockaddr_ll
# BPF instruction classes and the modes that load from the packet
_BPF_CLASS_MASK: Final = 0x07
_BPF_MODE_MASK: Final = 0xE0
_BPF_LD_CLASSES: Final = frozenset({0x00, 0x01})  # BPF_LD, BPF_LDX
_BPF_PACKET_MODES: Final = frozenset({0x20, 0x40, 0xA0})  # BPF_ABS, BPF_IND, BPF_MSH


class LiveCaptureError(Exception):
    """A capture that cannot start, in one line for the user."""


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """What to capture: interfaces, a tcpdump filter, snap length, promiscuous mode, a fanout group."""

    interfaces: tuple[str, ...]
    bpf: str | None = None  # tcpdump filter syntax
    snaplen: int = DEFAULT_SNAPLEN
    promiscuous: bool = True
    fanout_group: int | None = None  # join PACKET_FANOUT in hash mode: both directions of a flow, one member
    buffer_mb: int = DEFAULT_BUFFER_MB  # kernel ring per interface


@dataclass(frozen=True, slots=True)
class KernelStats:
    """The kernel's counters, cumulative and summed over interfaces, with tcpdump's meaning.

    ``received`` counts the packets that passed the filter ("received by filter"), ``dropped`` those of
    them the kernel had to drop because our buffer was full ("dropped by kernel").
    """

    received: int
    dropped: int


Packet = tuple[
    float, int, bytes
]  # (timestamp, linktype, frame), as helloscope.sniffer.capture.files.CaptureReader yields


class BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PCAP_NETMASK_UNKNOWN: Final = 0xFFFFFFFF
_libpcap: ctypes.CDLL | None = None


def load_libpcap() -> ctypes.CDLL:
    global _libpcap
    if _libpcap is None:
        import ctypes.util  # costly to import (subprocess, shutil): only once a filter needs libpcap

        name = ctypes.util.find_library("pcap")
        if name is None:
            raise LiveCaptureError("a --bpf filter needs libpcap (Debian: apt-get install libpcap0.8)")
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
        ]  # fmt: skip
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.bpf_filter.restype = ctypes.c_uint
        lib.bpf_filter.argtypes = [ctypes.POINTER(BpfInsn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
        _libpcap = lib
    return _libpcap


def compile_filter(expression: str | None, linktype: int, snaplen: int) -> bytes:
    """Classic BPF instructions (struct sock_filter array) for a tcpdump expression, ending in ret #snaplen."""
    if expression is None or not expression.strip():
        return _BPF_INSN.pack(_BPF_RET_K, 0, 0, snaplen)
    instructions = compile_program(expression, linktype, snaplen)
    if linktype == LINKTYPE_LINUX_SLL:
        return _for_cooked_socket(instructions, expression)
    return instructions


def compile_program(expression: str, linktype: int, snaplen: int) -> bytes:
    """libpcap's program for frames as a capture file holds them (``bpf_insn`` array); LiveCaptureError if bad."""
    lib = load_libpcap()
    # Capture files name link types (LINKTYPE_*), libpcap takes DLT_* values: they differ for few.
    handle = lib.pcap_open_dead(_DLT.get(linktype, linktype), snaplen)
    if not handle:
        raise LiveCaptureError("libpcap could not make a handle to compile the filter")
    program = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1, _PCAP_NETMASK_UNKNOWN) != 0:
            message = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise LiveCaptureError(f"bad filter expression {expression!r}: {message}")
        try:
            instructions = ctypes.string_at(program.bf_insns, program.bf_len * ctypes.sizeof(BpfInsn))
        finally:
            lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)
    return instructions


def _for_cooked_socket(instructions: bytes, expression: str) -> bytes:
    """A program compiled for SLL frames, rewritten for the kernel, which sees no SLL header (as libpcap does).

    Packet loads move 16 bytes back; loads of the SLL packet type and protocol become ancillary loads.
    """
    rewritten = bytearray(instructions)
    for offset in range(0, len(rewritten), _BPF_INSN.size):
        code, jt, jf, k = _BPF_INSN.unpack_from(rewritten, offset)
        if code & _BPF_CLASS_MASK not in _BPF_LD_CLASSES or code & _BPF_MODE_MASK not in _BPF_PACKET_MODES:
            continue
        if k >= _SLL_HEADER_LENGTH:
            k -= _SLL_HEADER_LENGTH
        elif k == 0:
            k = _SKF_AD_PKTTYPE
        elif k == 14:
            k = _SKF_AD_PROTOCOL
        else:
            raise LiveCaptureError(f"filter {expression!r} needs link-layer fields a cooked capture does not have")
        _BPF_INSN.pack_into(rewritten, offset, code, jt, jf, k)
    return bytes(rewritten)


def _attach_filter(sock: socket.socket, instructions: bytes) -> None:
    buffer = ctypes.create_string_buffer(instructions, len(instructions))
    fprog = _SockFprog(len(instructions) // ctypes.sizeof(BpfInsn), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(fprog))


def _device_type(interface: str) -> int:
    """The interface's ARPHRD type, from SIOCGIFHWADDR in this process's network namespace (as libpcap does)."""
    name = interface.encode()
    if not name or len(name) > 15 or b"\0" in name:  # IFNAMSIZ; a longer name would be cut to another's
        raise LiveCaptureError(f"no such network interface: {interface}")
    request = struct.pack("16s16x", name)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            reply = fcntl.ioctl(probe, _SIOCGIFHWADDR, request)
    except OSError:
        raise LiveCaptureError(f"no such network interface: {interface}") from None
    family: int = struct.unpack_from("=H", reply, 16)[0]
    return family


def _linktype(device_type: int | None) -> int:
    """Link type of the frames a packet socket gets from such a device; None is the "any" pseudo-device."""
    if device_type in _ETHERNET_LIKE:
        return LINKTYPE_ETHERNET
    if device_type in _RAW_IP_DEVICES:
        return LINKTYPE_RAW
    return LINKTYPE_LINUX_SLL


def _skip_loopback_outgoing(loopback_ifindex: int) -> bytes:
    """For "any": drop packets that are outgoing on loopback, which come back in again."""
    return (
        _BPF_INSN.pack(_BPF_LD_W_ABS, 0, 0, _SKF_AD_IFINDEX)
        + _BPF_INSN.pack(_BPF_JEQ_K, 0, len(_SKIP_OUTGOING) // _BPF_INSN.size, loopback_ifindex)
        + _SKIP_OUTGOING
    )


def _bind(sock: socket.socket, ifindex: int) -> None:
    """Bind to one interface, or with ifindex 0 to all of them (Python's bind wants a name, which "any" is not)."""
    address = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(_ETH_P_ALL), ifindex, 0, 0, 0, b"")
    if _libc.bind(sock.fileno(), address, len(address)) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


_libc = ctypes.CDLL(None, use_errno=True)


def fanout_group_id(fanout_group: int, ifindex: int) -> int:
    """The kernel's 16-bit fanout id for one interface: a group belongs to one device, so each needs its own."""
    return (fanout_group + ifindex * 0x9E37) & 0xFFFF


class _InterfaceSocket:
    """One packet socket on one interface, receiving into a TPACKET_V3 ring shared with the kernel.

    The ring is a run of blocks. The kernel fills a block with packets, each a ``tpacket3_hdr`` then the
    frame, and hands the whole block to us by setting TP_STATUS_USER in its descriptor, when it is full or
    ``_BLOCK_TIMEOUT_MS`` after its first packet; we copy the frames out and hand it back (TP_STATUS_KERNEL).
    One status check per block instead of one system call per packet is what makes this the fast backend.
    """

    def __init__(self, interface: str, options: CaptureOptions) -> None:
        self.interface = interface
        device_type = None if interface == ANY_INTERFACE else _device_type(interface)
        self.linktype = _linktype(device_type)
        self.cooked = self.linktype == LINKTYPE_LINUX_SLL
        instructions = compile_filter(options.bpf, self.linktype, options.snaplen)
        try:
            ifindex = 0 if device_type is None else socket.if_nametoindex(interface)
            if device_type == _ARPHRD_LOOPBACK:
                instructions = _SKIP_OUTGOING + instructions
            elif device_type is None:
                instructions = _skip_loopback_outgoing(socket.if_nametoindex("lo")) + instructions
        except OSError:
            raise LiveCaptureError(f"no such network interface: {interface}") from None
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM if self.cooked else socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveCaptureError(
                f"capturing on {interface} needs root or the CAP_NET_RAW capability "
                "(run as root, or: setcap cap_net_raw,cap_net_admin=eip on the Python binary)"
            ) from None
        self.block_size = max(_MIN_BLOCK, 1 << (options.snaplen + _MAX_FRAME_OVERHEAD - 1).bit_length())
        self.block_count = max(2, (options.buffer_mb << 20) // self.block_size)
        self.next_block = 0
        self._received = 0
        self._dropped = 0
        try:
            self._configure(options, ifindex, instructions)
        except OSError as error:
            self.sock.close()
            raise LiveCaptureError(f"cannot capture on {interface}: {error.strerror or error}") from None

    def _configure(self, options: CaptureOptions, ifindex: int, instructions: bytes) -> None:
        sock = self.sock
        sock.setsockopt(_SOL_PACKET, _PACKET_VERSION, _TPACKET_V3)
        frames_per_block = self.block_size // _FRAME_SIZE
        request = _TPACKET_REQ3.pack(
            self.block_size, self.block_count, _FRAME_SIZE, frames_per_block * self.block_count,
            _BLOCK_TIMEOUT_MS, 0, 0,
        )  # fmt: skip
        sock.setsockopt(_SOL_PACKET, _PACKET_RX_RING, request)
        self.ring = mmap.mmap(sock.fileno(), self.block_size * self.block_count, mmap.MAP_SHARED)
        _attach_filter(sock, _DROP_ALL)
        _bind(sock, ifindex)
        if options.promiscuous and ifindex:  # like libpcap, no promiscuous mode for "any"
            mreq = struct.pack("=iHH8s", ifindex, _PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        if options.fanout_group is not None:
            group = fanout_group_id(options.fanout_group, ifindex)
            mode = _PACKET_FANOUT_HASH | _PACKET_FANOUT_FLAG_DEFRAG
            try:
                sock.setsockopt(_SOL_PACKET, _PACKET_FANOUT, struct.pack("=I", group | mode << 16))
            except OSError as error:
                if error.errno == errno.EINVAL:  # the id is in use on another device or in another mode
                    raise OSError(
                        error.errno, f"fanout group {options.fanout_group} is in use; choose another"
                    ) from None
                raise
        _attach_filter(sock, instructions)

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready(self) -> bool:
        """Whether the kernel has handed us the next block."""
        return bool(_BLOCK_STATUS.unpack_from(self.ring, self.next_block * self.block_size)[0] & _TP_STATUS_USER)

    def read(self, into: list[Packet], max_blocks: int) -> None:
        """Append the packets of up to ``max_blocks`` ready blocks to ``into``, and give those blocks back."""
        ring = self.ring
        linktype = self.linktype
        cooked = self.cooked
        append = into.append
        packet_header = _TPACKET3_HDR.unpack_from
        for _ in range(max_blocks):
            block = self.next_block * self.block_size
            status, count, offset = _BLOCK_HEADER.unpack_from(ring, block + _BLOCK_STATUS_OFFSET)
            if not status & _TP_STATUS_USER:
                return
            position = block + offset
            for _ in range(count):
                next_offset, seconds, nanoseconds, caplen, _length, packet_status, mac, tci, tpid = packet_header(
                    ring, position
                )
                start = position + mac
                if cooked:
                    address = position + _SOCKADDR_LL_OFFSET
                    hatype, pkttype, halen = _SOCKADDR_LL.unpack_from(ring, address + 8)
                    frame = (
                        _SLL_FIELDS.pack(pkttype, hatype, halen)
                        + ring[address + 12 : address + 20]  # sll_addr
                        + ring[address + 2 : address + 4]  # sll_protocol, in network order already
                        + ring[start : start + caplen]
                    )
                elif packet_status & _TP_STATUS_VLAN_VALID:
                    # The kernel took the 802.1Q tag out of the frame; put it back where it was, as libpcap does.
                    tag = _VLAN_TAG.pack(tpid if packet_status & _TP_STATUS_VLAN_TPID_VALID else 0x8100, tci)
                    frame = ring[start : start + 12] + tag + ring[start + 12 : start + caplen]
                else:
                    frame = ring[start : start + caplen]
                append((seconds + nanoseconds * 1e-9, linktype, frame))
                position += next_offset
            _BLOCK_STATUS.pack_into(ring, block + _BLOCK_STATUS_OFFSET, _TP_STATUS_KERNEL)
            self.next_block = (self.next_block + 1) % self.block_count

    def stats(self) -> tuple[int, int]:
        """Cumulative (received, dropped): the kernel resets its counters on every read, so they add up here."""
        packets, drops, _freezes = _TPACKET_STATS_V3.unpack(
            self.sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, _TPACKET_STATS_V3.size)
        )
        self._received += packets
        self._dropped += drops
        return self._received, self._dropped

    def close(self) -> None:
        ring = getattr(self, "ring", None)
        if ring is not None:
            ring.close()
        self.sock.close()


class LiveCapture:
    """Packets from one or more interfaces as ``(timestamp, linktype, frame)``, like CaptureReader.

    ``frame`` is a ``bytes`` object the caller owns (copied out of the ring, so it outlives the capture).
    """

    _BLOCKS_PER_POLL = 4  # per interface per call, so one busy interface cannot starve the others

    def __init__(self, options: CaptureOptions) -> None:
        if not options.interfaces:
            raise LiveCaptureError("no interface to capture on")
        if options.snaplen <= 0:
            raise LiveCaptureError(f"snap length must be positive, not {options.snaplen}")
        self.options = options
        self._sockets: list[_InterfaceSocket] = []
        try:
            for interface in options.interfaces:
                self._sockets.append(_InterfaceSocket(interface, options))
        except BaseException:
            self.close()
            raise
        self._poller = select.poll()
        self._by_fd = {s.fileno(): s for s in self._sockets}
        for fd in self._by_fd:
            self._poller.register(fd, select.POLLIN)

    def poll(self, timeout: float) -> list[Packet]:
        """The packets that are ready within ``timeout`` seconds; possibly none."""
        packets: list[Packet] = []
        ready = [sock for sock in self._sockets if sock.ready()]
        if not ready:
            for fd, event in self._poller.poll(max(0, math.ceil(timeout * 1000))):
                sock = self._by_fd[fd]
                if event & select.POLLERR:
                    # The interface went down (ENETDOWN). Capture resumes by itself when it comes back up;
                    # reading the error clears it, or every poll would return at once for it.
                    sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                ready.append(sock)
        for sock in ready:
            sock.read(packets, self._BLOCKS_PER_POLL)
        return packets

    def kernel_stats(self) -> KernelStats:
        received = dropped = 0
        for sock in self._sockets:
            r, d = sock.stats()
            received += r
            dropped += d
        return KernelStats(received, dropped)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def drop_privileges(user: str) -> None:
    """Become ``user`` (its groups, then its gid, then its uid), as tcpdump -Z does once its sockets are open."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LiveCaptureError(f"no such user: {user}") from None
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as error:
        raise LiveCaptureError(f"cannot become user {user}: {error.strerror or error}") from None
