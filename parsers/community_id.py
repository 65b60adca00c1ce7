"""Community ID v1 (Corelight's community-id-spec): one flow hash that Zeek, Suricata and others agree on.

``"1:" + base64(SHA-1(seed, saddr, daddr, proto, 0, sport, dport))`` with the two endpoints put in a
canonical order first, so both directions of a connection get the same ID. All integers are network
byte order; addresses are the raw 4 or 16 bytes. Only port-based protocols and port-less ones are
covered: ICMP's type/code mapping is not needed by a TLS sensor.
"""

from __future__ import annotations

import binascii
import hashlib
import struct

VERSION_PREFIX = "1:"


def community_id(
    proto: int,
    src_ip: bytes,
    src_port: int | None,
    dst_ip: bytes,
    dst_port: int | None,
    seed: int = 0,
) -> str:
    """The Community ID v1 of a flow; ports are None for protocols without them."""
    if len(src_ip) != len(dst_ip) or len(src_ip) not in (4, 16):
        raise ValueError("addresses must both be IPv4 (4 bytes) or both IPv6 (16 bytes)")
    if (src_port is None) != (dst_port is None):
        raise ValueError("give both ports or neither")
    # Bytes compare as unsigned big-endian numbers, which is the spec's ordering of addresses.
    if (dst_ip, dst_port or 0) < (src_ip, src_port or 0):
        src_ip, src_port, dst_ip, dst_port = dst_ip, dst_port, src_ip, src_port
    if src_port is not None and dst_port is not None:
        tail = struct.pack("!BBHH", proto, 0, src_port, dst_port)
    else:
        tail = struct.pack("!BB", proto, 0)
    # SHA-1 is what the specification fixes; the ID is a join key, not a security measure.
    digest = hashlib.sha1(b"".join((struct.pack("!H", seed), src_ip, dst_ip, tail)), usedforsecurity=False).digest()
    return VERSION_PREFIX + binascii.b2a_base64(digest, newline=False).decode("ascii")
