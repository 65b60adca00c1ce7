"""Frames to TCP/UDP segments, for every link type helloscope reads.

This runs once per packet, so it is one flat function that indexes the frame and uses
``struct.unpack_from`` directly: no object per protocol layer, no copies except the address and payload
slices it returns. Everything that is not the first piece of an IPv4/IPv6 TCP or UDP packet, and every
frame too short or inconsistent to decode, gives ``None``; it never raises. Tunnels are opened (GTP-U,
VXLAN, Geneve, CAPWAP data, GRE, IP-in-IP, up to four deep): mobile cores and overlay networks carry
their users' TLS inside them, and the segment returned is the innermost one.

The frame should be ``bytes`` (as :class:`helloscope.sniffer.capture.files.CaptureReader` yields): the addresses and the
payload of a :class:`Segment` are slices of it, so a ``memoryview`` frame would give views that keep the
capture buffer alive.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

TCP: Final = 6
UDP: Final = 17


class Segment(NamedTuple):
    """One TCP segment or UDP datagram as seen on the wire."""

    proto: int  # 6 TCP, 17 UDP
    src: bytes  # packed IPv4 (4 bytes) or IPv6 (16 bytes) address
    dst: bytes
    sport: int
    dport: int
    seq: int  # TCP only (0 for UDP)
    ack: int
    flags: int  # TCP flag byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10)
    payload: bytes  # transport payload as captured
    # payload bytes the IP/UDP lengths announce beyond the end of the frame: normally what the snap length
    # cut off (a frame whose IP header lies about its length looks the same)
    snapped: int
    # What a TCP checksum check needs, kept by reference so decoding costs nothing more: the bytes the
    # transport header lies in and its offset there. Checked only where it can change a report (see
    # transport/tcp.py); empty for a segment that was not decoded from a frame.
    packet: bytes = b""
    transport: int = 0

    # Two segments are equal when they say the same; where their bytes lay (the frame, the link header
    # before them) is not part of that.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and self[:10] == other[:10]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:10])


LINKTYPE_NULL: Final = 0  # BSD loopback, 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_PPP: Final = 9
LINKTYPE_RAW_DLT12: Final = 12  # DLT_RAW as most BSDs number it
LINKTYPE_RAW_DLT14: Final = 14  # DLT_RAW as OpenBSD numbers it
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108  # OpenBSD loopback, address family in network byte order
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_PPP_HDLC: Final = 50
LINKTYPE_LINUX_SLL2: Final = 276
SUPPORTED_LINKTYPES: Final = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_PPP,
        LINKTYPE_PPP_HDLC,
        LINKTYPE_RAW_DLT12,
        LINKTYPE_RAW_DLT14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)
_RAW_IP = frozenset({LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14})


def undecodable_note(name: str, frames: int, linktypes: list[int]) -> str:
    """A warning for a capture none of whose frames decoded: the link type says why, or that it is not it."""
    described = ", ".join(
        f"{linktype} ({'supported' if linktype in SUPPORTED_LINKTYPES else 'not supported'})" for linktype in linktypes
    )
    return (
        f"{name}: none of its {frames} frames could be decoded to IPv4/IPv6 TCP or UDP "
        f"(link type {described or 'unknown'}; supported: {', '.join(map(str, sorted(SUPPORTED_LINKTYPES)))})"
    )


_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_IP_VERSIONS = {4: _ETHERTYPE_IPV4, 6: _ETHERTYPE_IPV6}
_PPP_PROTOCOLS = {0x0021: _ETHERTYPE_IPV4, 0x0057: _ETHERTYPE_IPV6}  # raw IP has no link header to say which
# Headers between the link layer and IP that end in the next EtherType -> their length: 802.1Q, 802.1ad,
# the pre-standard QinQ tag, and Cisco MetaData (TrustSec SGT) as switches insert it.
_SHIMS = {0x8100: 4, 0x88A8: 4, 0x9100: 4, 0x8909: 8}
# PPPoE session stage (RFC 2516): version/type 0x11, code 0 (session data), session id, length, then PPP.
_ETHERTYPE_PPPOE_SESSION = 0x8864
_AF_INET = 2
_AF_INET6 = frozenset({24, 28, 30})  # BSD numbers differ per OS: NetBSD/OpenBSD, FreeBSD, Darwin
# IPv6 extension headers whose length byte counts 8-octet units beyond the first 8:
# hop-by-hop, routing, destination options, mobility
_IPV6_EXT_OCTETS = frozenset({0, 43, 60, 135})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51  # length in 4-octet units minus 2 (RFC 4302)

_ipv4_header = struct.Struct("!BxHxxHxB2x4s4s").unpack_from  # version/IHL, length, fragment, proto, addrs
_ipv6_header = struct.Struct("!B3xHBx16s16s").unpack_from  # version, payload length, next header, addrs
_tcp_header = struct.Struct("!HHIIBB").unpack_from
_udp_header = struct.Struct("!HHH").unpack_from
# A NamedTuple's generated __new__ is a Python-level call; building the tuple directly skips it.
_new_segment = tuple.__new__


def decode(linktype: int, frame: bytes) -> Segment | None:
    """The TCP segment or UDP datagram in ``frame``, or None (not TCP/UDP over IP, later fragment, damaged)."""
    try:
        if linktype == LINKTYPE_ETHERNET:
            ethertype = frame[12] << 8 | frame[13]
            off = 14
        elif linktype == LINKTYPE_LINUX_SLL:
            ethertype = frame[14] << 8 | frame[15]
            off = 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            ethertype = frame[0] << 8 | frame[1]
            off = 20
        elif linktype in _RAW_IP:
            ethertype = _IP_VERSIONS.get(frame[0] >> 4, 0)
            off = 0
        elif linktype == LINKTYPE_IPV4:
            ethertype = _ETHERTYPE_IPV4
            off = 0
        elif linktype == LINKTYPE_IPV6:
            ethertype = _ETHERTYPE_IPV6
            off = 0
        elif linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
            # Address and control bytes (ff 03) are optional; then the 2-byte PPP protocol number.
            off = 2 if frame[0] == 0xFF and frame[1] == 0x03 else 0
            ethertype = _PPP_PROTOCOLS.get(frame[off] << 8 | frame[off + 1], 0)
            off += 2
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if frame[1] or frame[2]:
                return None
            # the family fits in one byte, so it is the first byte (little-endian writer) or the last
            if linktype == LINKTYPE_LOOP or not frame[0]:
                family = frame[3]
            elif not frame[3]:
                family = frame[0]
            else:
                return None
            if family == _AF_INET:
                ethertype = _ETHERTYPE_IPV4
            elif family in _AF_INET6:
                ethertype = _ETHERTYPE_IPV6
            else:
                return None
            off = 4
        else:
            return None
        return _network(frame, ethertype, off, 0)
    except (IndexError, struct.error):
        return None


def _network(frame: bytes, ethertype: int, off: int, depth: int) -> Segment | None:
    """Decode from the header at ``off`` whose EtherType is ``ethertype``; IndexError when the frame is short."""
    while ethertype in _SHIMS:
        off += _SHIMS[ethertype]
        ethertype = frame[off - 2] << 8 | frame[off - 1]
    if ethertype == _ETHERTYPE_PPPOE_SESSION:
        ethertype, off = _pppoe_session(frame, off)
    if ethertype == _ETHERTYPE_IPV4:
        version_ihl, total, fragment, proto, src, dst = _ipv4_header(frame, off)
        ihl = (version_ihl & 0x0F) * 4
        # fragment offset or more-fragments set: we do not reassemble, so only whole datagrams count
        if version_ihl >> 4 != 4 or ihl < 20 or fragment & 0x3FFF:
            return None
        transport = off + ihl
        if total == 0:
            # captured on a host with segmentation offload: the length is not filled in yet
            end = len(frame)
        elif total < ihl:
            return None
        else:
            # the IP length, not the frame length, ends the packet: Ethernet pads short frames
            end = off + total
    elif ethertype == _ETHERTYPE_IPV6:
        version, payload_length, proto, src, dst = _ipv6_header(frame, off)
        if version >> 4 != 6:
            return None
        transport = off + 40
        # zero: a jumbogram or a segmentation-offload capture; either way the frame holds the packet
        end = transport + payload_length if payload_length else len(frame)
        while proto not in _TRANSPORTS:
            if proto in _IPV6_EXT_OCTETS:
                proto = frame[transport]
                transport += (frame[transport + 1] + 1) * 8
            elif proto == _IPV6_FRAGMENT:
                # offset bits and the M bit: anything but an atomic fragment needs reassembly
                if (frame[transport + 2] << 8 | frame[transport + 3]) & 0xFFF9:
                    return None
                proto = frame[transport]
                transport += 8
            elif proto == _IPV6_AH:
                proto = frame[transport]
                transport += (frame[transport + 1] + 2) * 4
            else:
                return None
    else:
        return None

    if proto == TCP:
        sport, dport, seq, ack, data_offset, flags = _tcp_header(frame, transport)
        header_length = (data_offset >> 4) * 4
        start = transport + header_length
        if header_length < 20 or start > end:
            return None
    elif proto == UDP:
        sport, dport, udp_length = _udp_header(frame, transport)
        start = transport + 8
        # a shorter UDP length than IP's means trailing bytes that are not datagram
        if udp_length >= 8 and transport + udp_length < end:
            end = transport + udp_length
        if start > end:
            return None
        if depth < _MAX_TUNNEL_DEPTH and (dport in _UDP_TUNNELS or sport in _UDP_TUNNELS):
            inner = _udp_tunnel(frame, start, dport if dport in _UDP_TUNNELS else sport)
            if inner is not None:  # a valid tunnel header: its content is the packet, whatever it is
                return _by_ethertype(frame[:end], inner[0], inner[1], depth)
        seq = ack = flags = 0
    elif depth < _MAX_TUNNEL_DEPTH and proto in _IP_IN_IP:
        return _network(frame[:end], _IP_IN_IP[proto], transport, depth + 1)
    elif depth < _MAX_TUNNEL_DEPTH and proto == _GRE:
        return _gre(frame[:end], transport, depth)
    else:
        return None
    payload = frame[start:end]
    return _new_segment(
        Segment, (proto, src, dst, sport, dport, seq, ack, flags, payload, end - start - len(payload), frame, transport)
    )


# ----- tunnels ---------------------------------------------------------------------------------------

_MAX_TUNNEL_DEPTH = 4
_TRANSPORTS = frozenset({TCP, UDP, 4, 41, 47})
_IP_IN_IP = {4: _ETHERTYPE_IPV4, 41: _ETHERTYPE_IPV6}
_GRE = 47
_ETHERTYPE_BRIDGED = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
_GTP_U = 2152
_VXLAN = 4789
_GENEVE = 6081
_CAPWAP_DATA = 5247
_UDP_TUNNELS = frozenset({_GTP_U, _VXLAN, _GENEVE, _CAPWAP_DATA})
_LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"


def _pppoe_session(frame: bytes, off: int) -> tuple[int, int]:
    """(EtherType, offset) of the IP packet in the PPPoE session frame at ``off``; EtherType 0 if there is none.

    Broadband access links (DSL, many FTTH) carry their users' traffic this way, often inside VLAN tags.
    A PPP protocol number whose first byte is odd is the 1-byte compressed form (RFC 1661 6.5).
    """
    if frame[off] != 0x11 or frame[off + 1] != 0:
        return 0, off
    off += 6
    if frame[off] & 1:
        return _PPP_PROTOCOLS.get(frame[off], 0), off + 1
    return _PPP_PROTOCOLS.get(frame[off] << 8 | frame[off + 1], 0), off + 2


def _by_ethertype(frame: bytes, ethertype: int, off: int, depth: int) -> Segment | None:
    if ethertype == _ETHERTYPE_BRIDGED:
        ethertype, off = frame[off + 12] << 8 | frame[off + 13], off + 14
    return _network(frame, ethertype, off, depth + 1)


def _udp_tunnel(frame: bytes, off: int, port: int) -> tuple[int, int] | None:
    """(EtherType, offset) of the packet inside a UDP tunnel payload at ``off``; None if it is not one."""
    if port == _VXLAN:
        return (_ETHERTYPE_BRIDGED, off + 8) if frame[off] & 0x08 else None  # I flag: a valid VNI
    if port == _GENEVE:
        if frame[off] >> 6 != 0:
            return None
        return frame[off + 2] << 8 | frame[off + 3], off + 8 + (frame[off] & 0x3F) * 4
    if port == _GTP_U:
        return _gtp_u(frame, off)
    return _capwap(frame, off)


def _gtp_u(frame: bytes, off: int) -> tuple[int, int] | None:
    flags, message_type = frame[off], frame[off + 1]
    # GTPv1, protocol type GTP, message G-PDU (user data); anything else is signalling
    if flags >> 5 != 1 or not flags & 0x10 or message_type != 0xFF:
        return None
    inner = off + 8
    if flags & 0x07:  # E, S or PN: sequence number, N-PDU number and next-extension type follow
        next_extension = frame[inner + 3]
        inner += 4
        while next_extension:
            length = frame[inner] * 4
            if not length:
                return None
            next_extension = frame[inner + length - 1]
            inner += length
    return _IP_VERSIONS.get(frame[inner] >> 4, 0), inner


def _capwap(frame: bytes, off: int) -> tuple[int, int] | None:
    if frame[off] != 0:  # version 0, plain CAPWAP header (not DTLS-protected)
        return None
    header_length = (frame[off + 1] >> 3) * 4
    wireless_binding = (frame[off + 2] >> 1) & 0x1F
    native = frame[off + 2] & 0x01  # T: the payload is in the wireless binding's native format
    inner = off + header_length
    if not native:
        return _ETHERTYPE_BRIDGED, inner
    if wireless_binding != 1:  # only IEEE 802.11 is understood
        return None
    frame_control, control_flags = frame[inner], frame[inner + 1]
    if (frame_control >> 2) & 0x03 != 2:
        # Some access points send the frame control field byte-swapped (Wireshark's "swap" option).
        frame_control, control_flags = control_flags, frame_control
        if (frame_control >> 2) & 0x03 != 2:  # not a data frame
            return None
    header = 24
    if control_flags & 0x03 == 0x03:  # to-DS and from-DS: a fourth address
        header += 6
    if frame_control & 0x80:  # QoS data subtype
        header += 2
        if control_flags & 0x80:  # +HTC
            header += 4
    llc = inner + header
    if frame[llc : llc + 6] != _LLC_SNAP:
        return None
    return frame[llc + 6] << 8 | frame[llc + 7], llc + 8


def _gre(frame: bytes, off: int, depth: int) -> Segment | None:
    flags, protocol = frame[off], frame[off + 2] << 8 | frame[off + 3]
    if frame[off + 1] & 0x07:  # only version 0 carries packets (version 1 is PPTP's enhanced GRE)
        return None
    inner = off + 4 + 4 * bool(flags & 0x80) + 4 * bool(flags & 0x20) + 4 * bool(flags & 0x10)
    return _by_ethertype(frame, protocol, inner, depth)
