"""capture.decode against tshark on real captures of every supported link type, and on rewritten copies.

Where the corpus has no example (DLT_RAW 12/14, LINKTYPE_IPV6, LOOP, 802.1ad, IPv6 routing/fragment/AH
headers, IPv4 options on TCP, fragments), real frames are rewritten into that form; tshark checks the
rewritten files too wherever it dissects them.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path

import pytest
from helloscope.sniffer.capture.decode import SUPPORTED_LINKTYPES, Segment, decode
from helloscope.sniffer.capture.files import open_capture
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CORPUS, need_corpus, tshark_fields

NDPI = "nDPI/tests/cfgs/default/pcap/"
VLAN = "FlowTest/pcap/tls12.pcap"  # Ethernet, every frame 802.1Q-tagged
ETHERNET = "FlowTest/pcap/tls13.pcap"  # plain Ethernet, IPv4 without options, first frame a 74-byte SYN
NULL_IPV6 = "ja4/pcap/ipv6.pcapng"  # classic pcap, BSD null link type, IPv6 TCP
NULL_IPV4 = "illustrated-tls13/captures/capture.pcap"
RAW_IPV4 = NDPI + "codm.pcap"  # LINKTYPE_RAW
QINQ = NDPI + "zoom.pcap"  # two stacked 802.1Q tags on some frames

# (capture, tshark frame number) whose IP total length exceeds the frame although nothing was snapped:
# tshark clamps the payload to the frame, decode reports the announced rest as snapped.
LYING_IP_LENGTH = {(NDPI + "tls_invalid_reads.pcap", 2)}

FIELDS = [
    "frame.number",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
]
# dissector names tshark may list before the IP layer we decode, and between IPv6 and the transport
LINK_LAYERS = {"eth", "ethertype", "vlan", "ieee8021ad", "cmd", "sll", "null", "raw", "ppp"}
IPV6_EXTENSIONS = {"ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr", "ipv6.dstopts", "ah"}

Summary = tuple[int, bytes, bytes, int, int, int, int] | None


def frames(path: Path) -> list[tuple[int, bytes]]:
    with open_capture(str(path)) as reader:
        return [(linktype, frame) for _, linktype, frame in reader]


def summary(segment: Segment | None) -> Summary:
    """What tshark can tell us about a segment; the payload counted with what the snap length cut."""
    if segment is None:
        return None
    return (
        segment.proto,
        segment.src,
        segment.dst,
        segment.sport,
        segment.dport,
        segment.seq,
        len(segment.payload) + segment.snapped,
    )


# Layers decode opens: after UDP these tunnel dissectors, after IP another IP or GRE.
UDP_TUNNELS = {"gtp", "vxlan", "geneve", "capwap.data"}
TUNNEL_LINKS = {"eth", "ethertype", "wlan", "llc", "gre", "vlan"}
JOIN = "|"


def tshark_expected(row: list[str]) -> Summary:
    """The innermost TCP/UDP header decode reaches, as tshark dissects it; None where decode gives None."""
    field = dict(zip(FIELDS, row, strict=False))
    layers = field["frame.protocols"].split(":")
    at = 0
    while at < len(layers) and layers[at] in LINK_LAYERS:
        at += 1
    seen = Counter[str]()  # occurrences of ip / ipv6 / tcp / udp before the chosen one
    while True:
        if at == len(layers) or layers[at] not in ("ip", "ipv6"):
            return None
        ip = layers[at]
        seen[ip] += 1
        at += 1
        while at < len(layers) and layers[at] in IPV6_EXTENSIONS:
            at += 1
        if at < len(layers) and layers[at] in ("ip", "ipv6", "gre"):
            while at < len(layers) and layers[at] in TUNNEL_LINKS:
                at += 1
            continue  # IP in IP or GRE: decode opens it
        if at == len(layers) or layers[at] not in ("tcp", "udp"):
            return None
        transport = layers[at]
        seen[transport] += 1
        if transport == "udp" and at + 1 < len(layers) and layers[at + 1] in UDP_TUNNELS:
            inner = at + 2
            while inner < len(layers) and layers[inner] in TUNNEL_LINKS:
                inner += 1
            if inner < len(layers) and layers[inner] in ("ip", "ipv6"):
                at = inner
                continue
        break

    def nth(name: str, kind: str) -> str:
        return field[name].split(JOIN)[seen[kind] - 1]

    if ip == "ip" and (nth("ip.flags.mf", "ip") in ("1", "True") or nth("ip.frag_offset", "ip") not in ("", "0")):
        return None
    src = ipaddress.ip_address(nth(ip + ".src", ip)).packed
    dst = ipaddress.ip_address(nth(ip + ".dst", ip)).packed
    if transport == "tcp":
        return (
            6,
            src,
            dst,
            int(nth("tcp.srcport", "tcp")),
            int(nth("tcp.dstport", "tcp")),
            int(nth("tcp.seq_raw", "tcp")),
            int(nth("tcp.len", "tcp")),
        )
    return (
        17,
        src,
        dst,
        int(nth("udp.srcport", "udp")),
        int(nth("udp.dstport", "udp")),
        0,
        int(nth("udp.length", "udp")) - 8,
    )


def compare_with_tshark(path: Path, lying: Collection[int] = ()) -> Counter[int | None]:
    """Assert decode agrees with tshark on every frame; return how many TCP, UDP and None results."""
    rows = tshark_fields(
        path,
        "frame",
        FIELDS,
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        aggregator=JOIN,
    )
    got = [decode(linktype, frame) for linktype, frame in frames(path)]
    assert len(got) == len(rows)
    for segment, row in zip(got, rows, strict=True):
        expected = tshark_expected(row)
        number = int(row[0])
        if number in lying:
            assert segment is not None and expected is not None and segment.snapped > 0
            assert len(segment.payload) == expected[-1], number
        else:
            assert summary(segment) == expected, (number, row[1])
    return Counter(None if segment is None else segment.proto for segment in got)


@pytest.mark.parametrize(
    "name,must_have",
    [
        (ETHERNET, {6}),
        (VLAN, {6}),
        ("mercury/unit_tests/pcaps/tlsv1_3.pcap", {6}),  # 60-byte frames: Ethernet padding after IP
        (NDPI + "tls_invalid_reads.pcap", {6}),  # Ethernet trailers, 802.1Q, a lying IP length
        ("mercury/unit_tests/pcaps/emix.pcap", {6, 17}),  # IPv4 options, IPv6 hop-by-hop, padding
        ("mercury/unit_tests/pcaps/geneve.pcap", {6}),  # Geneve: the inner TCP is decoded
        ("mercury/unit_tests/pcaps/tls_sgt.pcap", {6}),  # Cisco MetaData (TrustSec) header
        (NDPI + "vxlan.pcap", {17}),  # 802.1Q, VXLAN
        (NDPI + "ja3_lots_of_cipher_suites_2_anon.pcap", {6}),  # GTP-U
        (NDPI + "capwap_data.pcapng", {6}),  # CAPWAP data carrying byte-swapped 802.11 frames
        (NDPI + "4in6tunnel.pcap", {6}),
        (QINQ, {6, 17}),
        (NDPI + "6in4tunnel.pcap", {6}),  # IPv6 in IPv4
        (NDPI + "sites.pcapng", {6, 17}),  # pcapng with 22 interfaces
        ("mercury/unit_tests/pcaps/sll_tls.pcap", {6}),
        (NDPI + "KakaoTalk_chat.pcap", {6, 17}),  # SLL
        (NDPI + "tls_heur__vmess-tcp.pcapng", {6}),  # SLL in pcapng
        ("mercury/unit_tests/pcaps/sll2_tls.pcap", {6}),
        (NULL_IPV6, {6}),
        (NULL_IPV4, {6}),
        ("ja4/pcap/tls-alpn-h2.pcap", {6}),  # null, IPv6
        ("portfolio/pcap_files/mTLS_with_nginx/nginx-mtls.pcapng", {6}),  # null in pcapng
        (RAW_IPV4, {17}),
        (NDPI + "psiphon3.pcap", {6}),  # LINKTYPE_RAW
        (NDPI + "ossfuzz_seed_fake_traces_1.pcapng", {6}),  # LINKTYPE_IPV4
        ("mercury/unit_tests/pcaps/quic_ppp.pcap", {17}),  # PPP (protocol 0x0021 IPv4, 0x0057 IPv6)
    ],
)
def test_matches_tshark(corpus: Path, name: str, must_have: set[int | None]) -> None:
    lying = {number for capture, number in LYING_IP_LENGTH if capture == name}
    counts = compare_with_tshark(corpus / name, lying)
    assert must_have <= set(counts), counts


def test_snap_length_cut_counts_the_missing_payload(corpus: Path, tmp_path: Path) -> None:
    """A rewritten copy cut to 80 bytes per frame: tshark still reads the payload length from IP."""
    editcap = shutil.which("editcap") or pytest.skip("editcap is not installed")
    cut = tmp_path / "snap80.pcap"
    subprocess.run([editcap, "-s", "80", str(corpus / ETHERNET), str(cut)], check=True, capture_output=True)
    compare_with_tshark(cut)
    snapped = [decode(lt, frame) for lt, frame in frames(cut)]
    assert any(segment is not None and segment.snapped for segment in snapped)


# -- rewritten copies ------------------------------------------------------------------------------


def write_pcap(path: Path, linktype: int, packets: list[bytes]) -> Path:
    records = b"".join(
        struct.pack("<IIII", 1_700_000_000 + index, 0, len(frame), len(frame)) + frame
        for index, frame in enumerate(packets)
    )
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype) + records)
    return path


def decoded(packets: list[tuple[int, bytes]]) -> list[Segment | None]:
    return [decode(linktype, frame) for linktype, frame in packets]


def ip_frames(name: str, linktype: int, header: int) -> list[bytes]:
    """The IP packets of a corpus capture with ``header`` link-layer bytes stripped."""
    packets = frames(need_corpus(CORPUS / name))
    assert packets and all(lt == linktype for lt, _ in packets)
    return [frame[header:] for _, frame in packets]


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ipv4_link_types(corpus: Path, linktype: int) -> None:
    packets = ip_frames(RAW_IPV4, 101, 0)
    original = decoded([(101, frame) for frame in packets])
    assert any(original)
    assert decoded([(linktype, frame) for frame in packets]) == original


@pytest.mark.parametrize("linktype", [101, 12, 14, 229])
def test_raw_ipv6_link_types(corpus: Path, linktype: int) -> None:
    expected = decoded(frames(corpus / NULL_IPV6))
    assert any(expected)
    assert decoded([(linktype, frame) for frame in ip_frames(NULL_IPV6, 0, 4)]) == expected


@pytest.mark.parametrize("name,family", [(NULL_IPV4, 2), (NULL_IPV6, 24), (NULL_IPV6, 28), (NULL_IPV6, 30)])
def test_loopback_family_in_either_byte_order(corpus: Path, name: str, family: int) -> None:
    expected = decoded(frames(corpus / name))
    packets = ip_frames(name, 0, 4)
    big_endian = struct.pack(">I", family)
    assert decoded([(108, big_endian + frame) for frame in packets]) == expected
    assert decoded([(0, big_endian + frame) for frame in packets]) == expected
    assert decoded([(0, struct.pack("<I", family) + frame) for frame in packets]) == expected
    assert decoded([(0, struct.pack("<I", 7) + frame) for frame in packets]) == [None] * len(packets)


def _retag(frame: bytes, ethertype: int) -> bytes:
    if frame[12:14] != b"\x81\x00":
        return frame
    return frame[:12] + struct.pack(">H", ethertype) + frame[14:]


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda f: _retag(f, 0x88A8),  # 802.1ad outer tag
        lambda f: _retag(f, 0x9100),
        lambda f: f[:12] + b"\x81\x00\x00\x07" + f[12:],  # one more tag on top
        lambda f: f[:12] + b"\x89\x09\x01\x01\x00\x01\x00\x02" + f[12:],  # Cisco MetaData on top
        lambda f: f + b"\x00" * 20,  # an Ethernet trailer after the IP packet
    ],
    ids=["802.1ad", "9100", "extra-802.1Q", "cisco-metadata", "trailer"],
)
def test_ethernet_rewrites(corpus: Path, rewrite: Callable[[bytes], bytes]) -> None:
    packets = frames(corpus / QINQ)
    expected = decoded(packets)
    assert decoded([(lt, rewrite(frame)) for lt, frame in packets]) == expected


def _ipv4_tcp(corpus: Path) -> list[bytes]:
    """Ethernet frames of a real capture, IPv4 without options, TCP."""
    packets = [frame for _, frame in frames(corpus / ETHERNET)]
    assert packets and all(frame[12:15] == b"\x08\x00\x45" and frame[23] == 6 for frame in packets)
    return packets


def _with_ipv4_options(frame: bytes) -> bytes:
    """Four NOP options added: IHL 6, total length + 4 (the checksum is left stale, nobody checks it)."""
    total = struct.unpack_from(">H", frame, 16)[0] + 4
    return frame[:14] + b"\x46" + frame[15:16] + struct.pack(">H", total) + frame[18:34] + b"\x01" * 4 + frame[34:]


def test_ipv4_options_are_skipped(corpus: Path, tmp_path: Path) -> None:
    packets = _ipv4_tcp(corpus)
    rewritten = [_with_ipv4_options(frame) for frame in packets]
    assert decoded([(1, f) for f in rewritten]) == decoded([(1, f) for f in packets])
    compare_with_tshark(write_pcap(tmp_path / "options.pcap", 1, rewritten))


def test_udp_length_shorter_than_ip_ends_the_datagram(corpus: Path, tmp_path: Path) -> None:
    packets = [frame for _, frame in frames(corpus / RAW_IPV4) if frame[0] == 0x45 and frame[9] == 17]
    assert packets
    # the UDP length field made 3 bytes shorter than the IP packet says; the rest is trailing junk
    shorter = [
        frame[:24] + struct.pack(">H", struct.unpack_from(">H", frame, 24)[0] - 3) + frame[26:] for frame in packets
    ]
    for frame, original in zip(shorter, decoded([(101, frame) for frame in packets]), strict=True):
        segment = decode(101, frame)
        assert segment is not None and original is not None
        assert segment.payload == original.payload[:-3]
    compare_with_tshark(write_pcap(tmp_path / "udp.pcap", 101, shorter))


def _set_fragment(frame: bytes, value: int) -> bytes:
    return frame[:20] + struct.pack(">H", value) + frame[22:]


@pytest.mark.parametrize(
    "fragment,whole",
    [
        (0x4000, True),  # DF only
        (0x0000, True),
        (0x2000, False),  # first fragment, more to come: we do not reassemble
        (0x0010, False),  # a later fragment
        (0x2010, False),
    ],
)
def test_ipv4_fragments(corpus: Path, fragment: int, whole: bool) -> None:
    for frame in _ipv4_tcp(corpus):
        segment = decode(1, _set_fragment(frame, fragment))
        assert (segment == decode(1, frame)) if whole else segment is None


def test_ipv4_length_zero_means_segmentation_offload(corpus: Path) -> None:
    for frame in _ipv4_tcp(corpus):
        segment = decode(1, frame[:16] + b"\x00\x00" + frame[18:] + b"more")
        assert segment is not None
        assert segment.payload == frame[14 + 20 + (frame[46] >> 4) * 4 :] + b"more"


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x5F]),  # IHL 15 words: longer than the total length of small packets
        bytes([0x44]),  # IHL below 5
        bytes([0x65]),  # version 6 in an IPv4 ethertype
    ],
)
def test_bad_ipv4_headers(corpus: Path, header: bytes) -> None:
    syn = _ipv4_tcp(corpus)[0]
    assert decode(1, syn[:14] + header + syn[15:]) is None


@pytest.mark.parametrize("data_offset", [0x00, 0x40, 0xF0])
def test_bad_tcp_data_offset(corpus: Path, data_offset: int) -> None:
    syn = _ipv4_tcp(corpus)[0]
    assert len(syn) == 74  # a 40-byte TCP header: no room for 60
    assert decode(1, syn[:46] + bytes([data_offset]) + syn[47:]) is None


def _ipv6_with(frame: bytes, *headers: tuple[int, bytes]) -> bytes:
    """A null-link IPv6 frame with extension headers inserted before its transport header.

    Each header is (its protocol number, its bytes after the next-header byte); the chain is linked so
    the last one names the original transport protocol.
    """
    ip = frame[4:]
    chain, next_header = b"", ip[6]
    for number, body in reversed(headers):
        chain = bytes([next_header]) + body + chain
        next_header = number
    payload_length = struct.unpack_from(">H", ip, 4)[0] + len(chain)
    return frame[:4] + ip[:4] + struct.pack(">HB", payload_length, next_header) + ip[7:40] + chain + ip[40:]


HOP_BY_HOP = (0, bytes([0, 1, 4, 0, 0, 0, 0]))  # PadN
DEST_OPTIONS = (60, bytes([1, 1, 12]) + bytes(12))
ROUTING = (43, bytes([2, 4, 0]) + bytes(4) + bytes(16))  # a segment list of one address, none left
ATOMIC_FRAGMENT = (44, bytes(7))
AUTH = (51, bytes([4]) + bytes(2) + b"\x00\x00\x01\x00" + b"\x00\x00\x00\x01" + bytes(12))  # 24 bytes
MOBILITY = (135, bytes([0, 5, 0]) + bytes(4))


@pytest.mark.parametrize(
    "headers",
    [
        [HOP_BY_HOP],
        [DEST_OPTIONS],
        [ROUTING],
        [ATOMIC_FRAGMENT],
        [AUTH],
        [HOP_BY_HOP, ROUTING, DEST_OPTIONS, ATOMIC_FRAGMENT, AUTH, DEST_OPTIONS],
    ],
    ids=["hop-by-hop", "destination", "routing", "atomic-fragment", "ah", "chain"],
)
def test_ipv6_extension_headers(corpus: Path, tmp_path: Path, headers: list[tuple[int, bytes]]) -> None:
    packets = frames(corpus / NULL_IPV6)
    rewritten = [_ipv6_with(frame, *headers) for _, frame in packets]
    assert decoded([(0, frame) for frame in rewritten]) == decoded(packets)
    compare_with_tshark(write_pcap(tmp_path / "ext.pcap", 0, rewritten))


def test_ipv6_mobility_header_is_skipped(corpus: Path) -> None:
    packets = frames(corpus / NULL_IPV6)
    assert decoded([(0, _ipv6_with(frame, MOBILITY)) for _, frame in packets]) == decoded(packets)


@pytest.mark.parametrize(
    "headers",
    [
        [(44, bytes([0, 0, 1]) + bytes(4))],  # first fragment, more to come
        [(44, bytes([0, 0, 8]) + bytes(4))],  # a later fragment
        [HOP_BY_HOP, (44, bytes([0, 1, 0]) + bytes(4))],
        [(50, bytes(15))],  # ESP: the transport header is encrypted
    ],
    ids=["first-fragment", "later-fragment", "later-fragment-after-hop-by-hop", "esp"],
)
def test_ipv6_packets_we_cannot_read(corpus: Path, headers: list[tuple[int, bytes]]) -> None:
    for _, frame in frames(corpus / NULL_IPV6):
        assert decode(0, _ipv6_with(frame, *headers)) is None


def test_ipv6_no_next_header(corpus: Path) -> None:
    for _, frame in frames(corpus / NULL_IPV6):
        assert decode(0, frame[:10] + b"\x3b" + frame[11:]) is None


# -- malformed input -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [ETHERNET, VLAN, NULL_IPV6, RAW_IPV4, "mercury/unit_tests/pcaps/sll2_tls.pcap"])
def test_every_truncation_of_real_frames(corpus: Path, name: str) -> None:
    """A frame cut anywhere decodes to None or to the same headers with the cut payload counted."""
    for linktype, frame in frames(corpus / name):
        full = decode(linktype, frame)
        for length in range(len(frame)):
            segment = decode(linktype, frame[:length])
            if segment is not None:
                assert full is not None and summary(segment) == summary(full)
                assert full.payload.startswith(segment.payload)


LINKTYPES = sorted(SUPPORTED_LINKTYPES) + [9, 147, 65535]


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from(LINKTYPES), frame=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(linktype: int, frame: bytes) -> None:
    segment = decode(linktype, frame)
    assert segment is None or isinstance(segment, Segment)


REAL_FRAMES = [
    (lt, frame)
    for name in (VLAN, NULL_IPV6, RAW_IPV4, QINQ)
    if (CORPUS / name).is_file()
    for lt, frame in frames(CORPUS / name)[:40]
]


@pytest.mark.skipif(not REAL_FRAMES, reason="../shared/corpus is absent")
@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mutated_real_frames_never_raise(data: st.DataObject) -> None:
    """Random bytes rarely reach the TCP header; corrupting real frames does."""
    linktype, frame = data.draw(st.sampled_from(REAL_FRAMES))
    mutated = bytearray(frame)
    for position, value in data.draw(
        st.lists(st.tuples(st.integers(0, len(frame) - 1), st.integers(0, 255)), max_size=4)
    ):
        mutated[position] = value
    cut = data.draw(st.integers(0, len(frame)))
    segment = decode(linktype, bytes(mutated[:cut]))
    if segment is not None:
        assert segment.proto in (6, 17) and len(segment.src) == len(segment.dst) in (4, 16)
        assert segment.snapped >= 0 and len(segment.payload) <= cut
