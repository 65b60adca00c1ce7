"""helloscope.sniffer.capture.files against real captures, their rewritten copies, and damaged files.

Every format variant is made from a real capture, either with Wireshark's tools (editcap, mergecap) or
by a small writer below that re-encodes the same frames in another pcap/pcapng layout; tshark confirms
the writer's output where it matters, so these tests do not just check the reader against itself.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import shutil
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from helloscope.sniffer.capture import files as capture
from helloscope.sniffer.capture.files import CaptureError, CaptureReader, Truncation, open_capture
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import REPO, tshark_fields

PCAP = "FlowTest/pcap/tls12.pcap"  # Ethernet, microseconds, 26 packets
SLL_PCAP = "mercury/unit_tests/pcaps/sll_tls.pcap"
PCAPNG = "wireshark-notes/tls/tls-null.pcapng"  # SHB/IDB options, EPBs, an Interface Statistics Block
WITH_SECRETS = ("ja4/pcap/chrome-cloudflare-quic-with-secrets.pcapng", "ja4/pcap/http2-with-cookies.pcapng")

Frames = list[tuple[int, int, bytes]]


def frames(reader: CaptureReader) -> Frames:
    """(timestamp in µs, link type, frame) of every packet, the reader closed afterwards."""
    with reader:
        return [(round(ts * 1_000_000), linktype, bytes(frame)) for ts, linktype, frame in reader]


def read_path(path: Path | str) -> Frames:
    return frames(open_capture(str(path)))


def read_bytes(data: bytes) -> CaptureReader:
    return CaptureReader(io.BytesIO(data), "<memory>")


def tshark_packets(path: Path, display_filter: str = "frame") -> list[tuple[Decimal, int]]:
    """(timestamp, captured length) of every frame as tshark reads it."""
    return [
        (Decimal(epoch), int(caplen))
        for epoch, caplen in tshark_fields(path, display_filter, ["frame.time_epoch", "frame.cap_len"])
    ]


def assert_same_packets(got: list[tuple[Decimal, int]], expected: list[tuple[Decimal, int]]) -> None:
    """Same captured lengths, timestamps within a microsecond."""
    assert [caplen for _, caplen in got] == [caplen for _, caplen in expected]
    for (ts, _), (expected_ts, _) in zip(got, expected, strict=True):
        assert abs(ts - expected_ts) < Decimal("0.000001"), (ts, expected_ts)


@pytest.fixture(params=[None, 509], ids=["1MiB-reads", "509-byte-reads"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with the reader's normal read size, and again with reads so small that records
    straddle refills all the time."""
    if request.param is not None:
        monkeypatch.setattr(capture, "_CHUNK", request.param)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


# -- real captures against tshark ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        PCAP,
        SLL_PCAP,
        PCAPNG,
        WITH_SECRETS[0],
        "mercury/unit_tests/pcaps/sll2_tls.pcap",
        "ja4/pcap/ipv6.pcapng",  # a classic pcap despite its name
        "nDPI/tests/cfgs/default/pcap/sites.pcapng",  # 22 interfaces, three timestamp resolutions
        "nDPI/tests/cfgs/default/pcap/tls_heur__vmess-tcp.pcapng",  # SLL, nanoseconds
        "nDPI/tests/cfgs/default/pcap/ossfuzz_seed_fake_traces_1.pcapng",  # LINKTYPE_IPV4
        "portfolio/pcap_files/mTLS_with_nginx/nginx-mtls.pcapng",  # null link type, Name Resolution Block
    ],
)
def test_packets_match_tshark(corpus: Path, name: str) -> None:
    path = corpus / name
    expected = tshark_packets(path)
    with open_capture(str(path)) as reader:
        got = [(Decimal(ts), len(frame)) for ts, _, frame in reader]
    assert reader.truncation is None
    assert reader.packets == len(got)
    assert reader.bytes_read == path.stat().st_size
    assert_same_packets(got, expected)


@pytest.mark.parametrize(("name", "fmt"), [(PCAP, capture.PCAP), ("wireshark-notes/ssl3/dump.pcapng", capture.PCAPNG)])
def test_format_is_known_before_the_first_packet(corpus: Path, name: str, fmt: str) -> None:
    # A caller seals its key log on it: only pcapng can carry Decryption Secrets Blocks.
    with open_capture(str(corpus / name)) as reader:
        assert reader.format == fmt
        assert reader.packets == 0


def test_interfaces_of_different_link_types(corpus: Path, tmp_path: Path) -> None:
    """mergecap of an Ethernet and an SLL capture: one pcapng section, two interfaces."""
    mergecap = need_tool("mergecap")
    merged = tmp_path / "merged.pcapng"
    subprocess.run(
        [mergecap, "-F", "pcapng", "-w", str(merged), str(corpus / PCAP), str(corpus / SLL_PCAP)],
        check=True,
        capture_output=True,
    )
    got = read_path(merged)
    assert {linktype for _, linktype, _ in got} == {1, 113}
    assert sorted(got) == sorted(read_path(corpus / PCAP) + read_path(corpus / SLL_PCAP))


# -- one capture, many encodings -------------------------------------------------------------------


def _swap_pcap(data: bytes) -> bytes:
    """The same classic pcap written by a big-endian host: every header field byte-swapped."""
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data)))
    pos = 24
    while pos < len(data):
        sec, frac, caplen, wirelen = struct.unpack_from("<IIII", data, pos)
        out += struct.pack(">IIII", sec, frac, caplen, wirelen) + data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
    return bytes(out)


def _editcap(source: Path, target: Path, fmt: str) -> Path:
    subprocess.run([need_tool("editcap"), "-F", fmt, str(source), str(target)], check=True, capture_output=True)
    return target


@pytest.mark.parametrize("variant", ["pcap", "nsecpcap", "pcapng", "big-endian", "two-sections", "gzip"])
def test_rewritten_copies_read_the_same(corpus: Path, tmp_path: Path, variant: str) -> None:
    source = corpus / PCAP
    expected = read_path(source)
    target = tmp_path / "copy"
    if variant == "big-endian":
        target.write_bytes(_swap_pcap(source.read_bytes()))
    elif variant == "two-sections":
        part = _editcap(source, tmp_path / "part.pcapng", "pcapng").read_bytes()
        target.write_bytes(part + part)
        expected = expected + expected
    elif variant == "gzip":
        target.write_bytes(gzip.compress(source.read_bytes()))
    else:
        _editcap(source, target, variant)
    assert read_path(target) == expected


def test_standard_input_is_a_pipe(corpus: Path) -> None:
    """open_capture("-") reading a real pipe (not seekable) gives the same frames as the file."""
    code = (
        "import hashlib, sys\n"
        "from helloscope.sniffer.capture.files import open_capture\n"
        "h = hashlib.sha256()\n"
        "for ts, lt, frame in open_capture('-'):\n"
        "    h.update(b'%d %d ' % (round(ts * 1e6), lt) + frame)\n"
        "print(h.hexdigest())\n"
    )
    expected = hashlib.sha256()
    for ts, linktype, frame in read_path(corpus / PCAPNG):
        expected.update(b"%d %d " % (ts, linktype) + frame)
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=(corpus / PCAPNG).read_bytes(),
        capture_output=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert result.stdout.decode().strip() == expected.hexdigest()


# A small pcapng writer, so that block types and options no capture tool here writes (big-endian
# sections, binary timestamp resolution, if_tsoffset, SPB, obsolete PB, unknown blocks) can be made from
# real frames.


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)


def _shb(e: str) -> bytes:
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(e: str, linktype: int, tsresol: int | None = None, tsoffset: int | None = None, snaplen: int = 0) -> bytes:
    options = b""
    if tsresol is not None:
        options += struct.pack(e + "HHB3x", 9, 1, tsresol)
    if tsoffset is not None:
        options += struct.pack(e + "HHq", 14, 8, tsoffset)
    if options:
        options += struct.pack(e + "HH", 0, 0)
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + options)


def _epb(e: str, interface: int, ticks: int, frame: bytes) -> bytes:
    header = struct.pack(e + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
    return _block(e, 6, header + frame)


def _pb(e: str, interface: int, ticks: int, frame: bytes) -> bytes:
    drops = 7  # non-zero, so that reading the 16-bit interface id as 32 bits would be caught
    header = struct.pack(e + "HHIIII", interface, drops, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
    return _block(e, 2, header + frame)


def _spb(e: str, frame: bytes) -> bytes:
    return _block(e, 3, struct.pack(e + "I", len(frame)) + frame)


def _dsb(e: str, secrets: bytes) -> bytes:
    return _block(e, 0x0A, struct.pack(e + "II", 0x544C534B, len(secrets)) + secrets)


def _written(variant: str, packets: Frames) -> bytes:
    """The packets re-encoded as one pcapng layout (timestamps in µs on input)."""
    first = packets[0][0]
    if variant == "big-endian":
        return _shb(">") + _idb(">", 1) + b"".join(_epb(">", 0, ts, f) for ts, _, f in packets)
    if variant == "binary-resolution":  # 2^-30 s units
        return (
            _shb("<")
            + _idb("<", 1, 0x80 | 30)
            + b"".join(_epb("<", 0, (ts << 30) // 1_000_000, f) for ts, _, f in packets)
        )
    if variant == "nanoseconds-with-offset":
        base = first // 1_000_000
        return (
            _shb("<")
            + _idb("<", 1, 9, base)
            + b"".join(_epb("<", 0, (ts - base * 1_000_000) * 1000, f) for ts, _, f in packets)
        )
    if variant == "obsolete-packet-blocks":
        return _shb("<") + _idb("<", 1) + b"".join(_pb("<", 0, ts, f) for ts, _, f in packets)
    if variant == "mixed-sections":
        # the byte order changes from section to section, and so do the interfaces: every other section
        # declares an unused SLL interface first, so the Ethernet one is interface 1 there, 0 elsewhere
        out = b""
        for index, (ts, _, frame) in enumerate(packets):
            e = "<>"[index % 2]
            if index % 2:
                out += _shb(e) + _idb(e, 113) + _idb(e, 1) + _epb(e, 1, ts, frame)
            else:
                out += _shb(e) + _idb(e, 1) + _epb(e, 0, ts, frame)
        return out
    if variant == "unknown-blocks":
        junk = _block("<", 0x40000BAD, b"custom block") + _block("<", 5, bytes(20))
        return _shb("<") + junk + _idb("<", 1) + b"".join(junk + _epb("<", 0, ts, f) for ts, _, f in packets)
    raise AssertionError(variant)


WRITTEN = [
    "big-endian",
    "binary-resolution",
    "nanoseconds-with-offset",
    "obsolete-packet-blocks",
    "mixed-sections",
    "unknown-blocks",
]


@pytest.mark.parametrize("variant", WRITTEN)
def test_pcapng_layouts_read_the_same(corpus: Path, variant: str, chunk: None) -> None:
    packets = read_path(corpus / PCAP)
    reader = read_bytes(_written(variant, packets))
    assert frames(reader) == packets
    assert reader.truncation is None and reader.skipped == 0


@pytest.mark.parametrize("variant", WRITTEN)
def test_pcapng_writer_agrees_with_tshark(corpus: Path, tmp_path: Path, variant: str) -> None:
    """Guards the writer above: tshark must read its output as the original capture."""
    written = tmp_path / "written.pcapng"
    written.write_bytes(_written(variant, read_path(corpus / PCAP)))
    # tshark lists unknown blocks as pseudo-frames; every real packet here is Ethernet
    assert_same_packets(tshark_packets(written, "eth"), tshark_packets(corpus / PCAP))


def test_simple_packet_blocks_use_interface_zero_and_the_last_timestamp(corpus: Path) -> None:
    packets = read_path(corpus / SLL_PCAP) + read_path(corpus / PCAP)[:3]
    ts0, _, first = packets[0]
    data = _shb("<") + _idb("<", 113) + _idb("<", 1) + _epb("<", 0, ts0, first)
    data += b"".join(_spb("<", f) for _, _, f in packets[1:])
    assert frames(read_bytes(data)) == [(ts0, 113, frame) for _, _, frame in packets]


def test_simple_packet_block_honours_the_snap_length(corpus: Path) -> None:
    _, _, frame = read_path(corpus / PCAP)[0]
    data = _shb("<") + _idb("<", 1, snaplen=20) + _spb("<", frame)
    assert [f for _, _, f in frames(read_bytes(data))] == [frame[:20]]


def test_packet_of_an_undeclared_interface_is_skipped_and_counted(corpus: Path) -> None:
    (ts, _, frame), *_ = read_path(corpus / PCAP)
    reader = read_bytes(_shb("<") + _idb("<", 1) + _epb("<", 3, ts, frame) + _epb("<", 0, ts, frame))
    assert frames(reader) == [(ts, 1, frame)]
    assert reader.skipped == 1


# -- decryption secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_SECRETS)
def test_embedded_secrets_are_collected(corpus: Path, name: str) -> None:
    with open_capture(str(corpus / name)) as reader:
        assert sum(1 for _ in reader) > 0
    assert reader.secrets
    text = b"".join(reader.secrets).decode()
    assert any(line.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET ") for line in text.splitlines())


def test_secrets_met_mid_file_are_there_before_the_next_packet(corpus: Path) -> None:
    packets = read_path(corpus / PCAP)
    key_log = b"CLIENT_HANDSHAKE_TRAFFIC_SECRET " + b"ab" * 32 + b" " + b"cd" * 32 + b"\n"
    body = b"".join(_epb("<", 0, ts, f) for ts, _, f in packets[:5])
    body += _dsb("<", key_log) + b"".join(_epb("<", 0, ts, f) for ts, _, f in packets[5:])
    reader = read_bytes(_shb("<") + _idb("<", 1) + body)
    seen = [len(reader.secrets) for _ in reader]
    assert seen == [0] * 5 + [1] * (len(packets) - 5)
    assert reader.secrets == [key_log]


# -- damage ----------------------------------------------------------------------------------------


def _record_starts(data: bytes) -> tuple[list[int], list[int]]:
    """File offsets where the records of a little-endian pcap or single-section pcapng start (with the
    end of the file), and the offsets where each packet record ends."""
    starts, packet_ends = [], []
    pcapng = data[:4] == b"\x0a\x0d\x0d\x0a"
    pos = 0 if pcapng else 24
    while pos < len(data):
        starts.append(pos)
        if pcapng:
            btype, length = struct.unpack_from("<II", data, pos)
        else:
            btype, length = 6, 16 + struct.unpack_from("<I", data, pos + 8)[0]
        pos += length
        if btype == 6:
            packet_ends.append(pos)
    starts.append(pos)
    return starts, packet_ends


@pytest.mark.parametrize("name,step", [(PCAP, 1), (PCAPNG, 1), (WITH_SECRETS[0], 7)])
def test_cut_at_any_offset(corpus: Path, name: str, step: int, chunk: None) -> None:
    data = (corpus / name).read_bytes()
    full = frames(read_bytes(data))
    starts, packet_ends = _record_starts(data)
    assert len(packet_ends) == len(full)
    readable = 24 if starts[0] == 24 else 12  # the pcap file header; the SHB up to its byte-order magic
    for cut in range(0, len(data), step):
        if cut < readable:
            with pytest.raises(CaptureError):
                read_bytes(data[:cut])
            continue
        reader = read_bytes(data[:cut])
        got = frames(reader)
        assert got == full[: sum(1 for end in packet_ends if end <= cut)], cut
        if cut in starts:
            assert reader.truncation is None, cut
        else:
            # the damage is reported at the start of the record the cut falls in
            assert reader.truncation is not None, cut
            assert reader.truncation.offset == max(start for start in starts if start < cut), cut


def test_pcap_cut_inside_a_record_reports_where(corpus: Path, chunk: None) -> None:
    data = (corpus / PCAP).read_bytes()
    ends = _record_starts(data)[1]
    reader = read_bytes(data[: ends[2] + 10])
    assert len(frames(reader)) == 3
    assert reader.truncation == Truncation(ends[2], "record header cut short (need 16, have 10)")
    reader = read_bytes(data[: ends[2] + 20])
    assert len(frames(reader)) == 3
    assert reader.truncation is not None and reader.truncation.offset == ends[2]
    assert "packet data" in reader.truncation.reason and "cut short" in reader.truncation.reason


@pytest.mark.parametrize("caplen", [0x7FFFFFFF, 262145, 0xFFFFFFFF])
def test_absurd_pcap_record_length_is_damage_not_an_allocation(corpus: Path, caplen: int, chunk: None) -> None:
    data = bytearray((corpus / PCAP).read_bytes())
    ends = _record_starts(bytes(data))[1]
    struct.pack_into("<I", data, ends[4] + 8, caplen)
    data += bytes(1 << 20)  # enough bytes after it that a reader trusting the length would read on
    tracemalloc.start()
    try:
        reader = read_bytes(bytes(data))
        got = frames(reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got) == 5
    assert reader.truncation == Truncation(ends[4], f"record length {caplen} exceeds limit 262144")
    assert peak < 8 << 20


def test_pcap_with_a_huge_snap_length_still_bounds_records(corpus: Path) -> None:
    data = bytearray((corpus / PCAP).read_bytes())
    struct.pack_into("<I", data, 16, 0xFFFFFFFF)  # snaplen
    struct.pack_into("<I", data, 24 + 8, 100 << 20)  # first record claims 100 MiB
    reader = read_bytes(bytes(data))
    assert frames(reader) == []
    assert reader.truncation is not None and reader.truncation.offset == 24


@pytest.mark.parametrize("blen", [8, 13, 1 << 30, 0xFFFFFFFC])
def test_bad_pcapng_block_length_is_damage(corpus: Path, blen: int, chunk: None) -> None:
    data = bytearray((corpus / PCAPNG).read_bytes())
    ends = _record_starts(bytes(data))[1]
    struct.pack_into("<I", data, ends[1] + 4, blen)  # the third packet block
    reader = read_bytes(bytes(data))
    assert len(frames(reader)) == 2
    assert reader.truncation == Truncation(ends[1], f"pcapng block length {blen} invalid")


def test_pcapng_trailing_length_mismatch_is_damage(corpus: Path, chunk: None) -> None:
    data = bytearray((corpus / PCAPNG).read_bytes())
    ends = _record_starts(bytes(data))[1]
    struct.pack_into("<I", data, ends[3] - 4, 64)
    reader = read_bytes(bytes(data))
    assert len(frames(reader)) == 3
    assert reader.truncation is not None and reader.truncation.offset == ends[2]


def test_pcapng_packet_longer_than_its_block_is_damage(corpus: Path, chunk: None) -> None:
    data = bytearray((corpus / PCAPNG).read_bytes())
    ends = _record_starts(bytes(data))[1]
    struct.pack_into("<I", data, ends[0] + 20, 0xFFFF)  # captured length of the second packet
    reader = read_bytes(bytes(data))
    assert len(frames(reader)) == 1
    assert reader.truncation is not None and reader.truncation.offset == ends[0]


def test_memory_stays_bounded_on_a_large_file(corpus: Path, tmp_path: Path) -> None:
    """A 16 MB rewritten copy (the records of a real capture repeated) is streamed, never loaded whole."""
    data = (corpus / PCAP).read_bytes()
    big = tmp_path / "big.pcap"
    big.write_bytes(data[:24] + data[24:] * 2000)
    tracemalloc.start()
    try:
        with open_capture(str(big)) as reader:
            count = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 26 * 2000 and reader.truncation is None
    assert peak < 4 << 20


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from(
        [
            b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(8) + b"\xff\xff\x00\x00\x01\x00\x00\x00",
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
        ]
    ),
    body=st.binary(max_size=400),
)
def test_arbitrary_records_never_raise(header: bytes, body: bytes) -> None:
    reader = read_bytes(header + body)
    got = list(reader)
    assert reader.packets == len(got)
    assert reader.truncation is None or 0 <= reader.truncation.offset <= len(header + body)


def _zstd(data: bytes) -> bytes:
    # with its checksum: without one a flipped byte is silently wrong data
    compressor = pytest.importorskip("zstandard").ZstdCompressor(write_checksum=True)
    return compressor.compress(data)  # type: ignore[no-any-return]


# A zstd frame cut short is not in the list: the zstandard package ends such a stream without an error.
@pytest.mark.parametrize(
    "compress,damage",
    [(gzip.compress, "cut"), (lzma.compress, "cut"), (bz2.compress, "cut")]
    + [(compress, "flipped") for compress in (gzip.compress, lzma.compress, bz2.compress, _zstd)],
)
def test_damaged_compressed_capture_is_a_read_error(
    corpus: Path, tmp_path: Path, compress: Callable[[bytes], bytes], damage: str
) -> None:
    """Each decompressor fails its own way (EOFError, zlib.error, LZMAError, ZstdError): all are damage,
    said at the start (this capture is read whole then) or as where the reading stopped."""
    compressed = bytearray(compress((corpus / PCAP).read_bytes()))
    if damage == "cut":
        del compressed[len(compressed) // 2 :]
    else:
        for offset in range(len(compressed) // 2, len(compressed) // 2 + 64):
            compressed[offset] ^= 0x5A
    path = tmp_path / "damaged"
    path.write_bytes(bytes(compressed))
    try:
        with open_capture(str(path)) as reader:
            got = list(reader)
    except CaptureError as error:
        assert "read error" in str(error)
    else:
        assert len(got) < 26
        assert reader.truncation is not None and "read error" in reader.truncation.reason


# -- not a capture ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"\xd4\xc3", "2 bytes"),
        (b"hello, this is a text file\n", "not a pcap or pcapng"),
        (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "header cut short"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x00\x00\x00\x00", "byte-order magic"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as error:
        open_capture(str(path))
    message = str(error.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(str(tmp_path / "absent.pcap"))
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(str(tmp_path))
