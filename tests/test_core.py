"""The C core (sniffer/capture/_core.c) against the pure-Python code it accelerates: identical or it does not ship.

- Frame splitting: every capture under pcaps/ and in the corpus gives the same frames (timestamps
  compared bit for bit), the same reader state at every frame, and the same damage report, read whole
  and read through a stream that trickles a few bytes at a time; so do cut and corrupted captures.
- Decode: every frame the C decoder claims gives the very Segment decode.py gives.
- The whole pipeline: byte-identical events and identical statistics with and without HELLOSCOPE_PURE.
- The flow skimmer: the same events and statistics with it and without it, also under limits where it
  must leave packets to the flow table (idle flows, a table over its memory bound, a small flow cap).
- RecordReader: the C reader against parsers.records on real streams in random pieces and on garbage.
- An AddressSanitizer/UBSan build of the extension, fed every fixture and many damaged inputs.

Every test here compares against the C core, so all skip when it is not built (or HELLOSCOPE_PURE is set).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import sysconfig
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helloscope.parsers.errors import ParseError
from helloscope.parsers.records import RecordReader as PureRecordReader
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import SUPPORTED_LINKTYPES, decode
from helloscope.sniffer.capture.files import CaptureError, CaptureReader, open_capture
from helloscope.sniffer.report.events import Observer, build_event
from helloscope.sniffer.run.parallel import flow_owner, owner_of
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PCAPS, REPO

pytestmark = pytest.mark.skipif(fast.core is None, reason="the C core is not built, or HELLOSCOPE_PURE is set")

ALL_FIXTURES = sorted(PCAPS.rglob("*.pcap*"))
NOT_MINE = fast.NOT_MINE
CoreRecordReader: Any = fast.RecordReader


# ----- frame splitting --------------------------------------------------------------------------


class _Trickle(io.RawIOBase):
    """A stream that gives at most ``step`` bytes per read, like a slow pipe: records straddle refills."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._at, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        piece = self._data[self._at : self._at + min(self._step, size if size >= 0 else self._step)]
        self._at += len(piece)
        return piece

    read = read1


def _reading(reader_or_error: CaptureReader | str) -> Any:
    """Everything a caller can observe of a reader: each frame with the reader's state as it is yielded,
    then the final state and the damage report; or the CaptureError message."""
    if isinstance(reader_or_error, str):
        return reader_or_error
    reader = reader_or_error
    frames = [
        (
            struct.pack("<d", ts).hex(),
            linktype,
            frame,
            reader.bytes_read,
            reader.packets,
            reader.skipped,
            len(reader.secrets),
        )
        for ts, linktype, frame in reader
    ]
    return frames, reader.truncation, reader.packets, reader.skipped, reader.secrets, reader.bytes_read, reader.format


def _read_path(path: Path, accelerated: bool) -> Any:
    try:
        return _reading(open_capture(str(path), accelerated=accelerated))
    except CaptureError as error:
        return str(error)


def _read_bytes(data: bytes, accelerated: bool, step: int = 0) -> Any:
    stream: Any = _Trickle(data, step) if step else io.BytesIO(data)
    try:
        return _reading(CaptureReader(stream, "mem", accelerated=accelerated))
    except CaptureError as error:
        return str(error)


def _assert_decode_matches(linktype: int, frame: bytes) -> bool:
    """Whether the C decoder claimed the frame; fails if its answer differs from decode.py's."""
    mine = fast.decode(linktype, frame)
    if mine is NOT_MINE:
        return False
    reference = decode(linktype, frame)
    assert mine == reference, (linktype, frame.hex())
    if reference is not None:
        assert type(mine) is type(reference)
        assert [type(value) for value in mine] == [type(value) for value in reference]
    return True


def _assert_capture_matches(path: Path) -> tuple[int, int]:
    """(frames, frames decoded in C) after comparing both readers and both decoders on one capture."""
    reference = _read_path(path, accelerated=False)
    assert _read_path(path, accelerated=True) == reference
    if isinstance(reference, str):
        return 0, 0
    claimed = sum(_assert_decode_matches(linktype, frame) for _, linktype, frame, *_ in reference[0])
    return len(reference[0]), claimed


@pytest.mark.parametrize("capture", ALL_FIXTURES, ids=lambda path: path.relative_to(PCAPS).as_posix())
def test_frames_and_segments_match_on_fixture(capture: Path) -> None:
    frames, claimed = _assert_capture_matches(capture)
    assert frames == 0 or claimed > 0  # every fixture is Ethernet or raw IP TCP: the C decoder takes part


def test_frames_and_segments_match_on_corpus(corpus: Path) -> None:
    frames = claimed = captures = 0
    for capture in sorted(corpus.rglob("*.pcap*")):
        counted = _assert_capture_matches(capture)
        frames += counted[0]
        claimed += counted[1]
        captures += counted[0] > 0
    assert captures > 250
    assert claimed > frames * 0.9


def _frames_of(path: Path, limit: int) -> list[tuple[int, bytes]]:
    return [(linktype, frame) for _, linktype, frame in open_capture(str(path), accelerated=False)][:limit]


def _pcapng(little: bool, frames: list[tuple[int, bytes]], seed: int) -> bytes:
    """A pcapng file using every block the reader knows and some it ignores, in either byte order."""
    rng = random.Random(seed)
    e = "<" if little else ">"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)

    def option(code: int, value: bytes) -> bytes:
        return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    shb = block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    linktypes = sorted({linktype for linktype, _ in frames}) or [1]
    out = [shb]
    # interface 0: default microseconds; 1: nanoseconds with an offset; 2: 2^-10 s; one per frame link type
    resolutions = [b"", option(9, b"\x09") + option(14, struct.pack(e + "q", 1_600_000_000)), option(9, b"\x8a")]
    interfaces = []
    for index, linktype in enumerate(linktypes * 3):
        options = resolutions[index % 3] + (struct.pack(e + "HH", 0, 0) if index % 2 else b"")
        out.append(block(1, struct.pack(e + "HxxI", linktype, 0 if index % 2 else 1500) + options))
        interfaces.append(linktype)
    for n, (linktype, frame) in enumerate(frames):
        ifid = rng.choice([i for i, lt in enumerate(interfaces) if lt == linktype])
        ticks = rng.getrandbits(62)
        high, low = ticks >> 32, ticks & 0xFFFFFFFF
        kind = n % 7
        if kind == 1:
            out.append(block(2, struct.pack(e + "HHIIII", ifid, 0, high, low, len(frame), len(frame)) + frame))
        elif kind == 2 and interfaces[0] == linktype:
            out.append(block(3, struct.pack(e + "I", len(frame) + rng.choice([0, 0, 5])) + frame))
        elif kind == 3:
            out.append(block(0x0A, struct.pack(e + "II", 0x544C534B, 11) + b"CLIENT_RAND"))
            out.append(
                block(
                    6, struct.pack(e + "IIII", ifid, high, low, len(frame)) + struct.pack(e + "I", len(frame)) + frame
                )
            )
        elif kind == 4:
            out.append(block(4, b"\0" * 8))  # a name resolution block: ignored
            out.append(block(6, struct.pack(e + "IIIII", 99, high, low, len(frame), 0) + frame))  # undeclared interface
        else:
            epb = struct.pack(e + "IIII", ifid, high, low, len(frame)) + struct.pack(e + "I", len(frame)) + frame
            out.append(block(6, epb + option(1, b"comment")))
    out.append(shb)  # a new section: interfaces are forgotten, so its packets are skipped
    out.append(block(6, struct.pack(e + "IIIII", 0, 0, 0, 4, 4) + b"abcd"))
    return b"".join(out)


@pytest.fixture(scope="module")
def sample_frames() -> list[tuple[int, bytes]]:
    return _frames_of(PCAPS / "tls13-required-presented.pcap", 40) + _frames_of(PCAPS / "tls12-noauth.pcap", 20)


@pytest.fixture(scope="module")
def damaged_sources(sample_frames: list[tuple[int, bytes]]) -> list[bytes]:
    """Small whole captures whose every cut and many corruptions the readers must agree on."""
    pcap = (PCAPS / "tls12-noauth.pcap").read_bytes()
    swapped = bytearray(pcap)  # the same records in big-endian byte order, nanosecond magic
    swapped[:24] = b"\xa1\xb2\x3c\x4d" + struct.pack(">HHiIII", *struct.unpack_from("<HHiIII", pcap, 4))
    at = 24
    while at + 16 <= len(pcap):
        fields = struct.unpack_from("<IIII", pcap, at)
        struct.pack_into(">IIII", swapped, at, *fields)
        at += 16 + fields[2]
    return [pcap, bytes(swapped), _pcapng(True, sample_frames[:12], 1), _pcapng(False, sample_frames[12:24], 2)]


def test_synthetic_pcapng_uses_every_block(damaged_sources: list[bytes]) -> None:
    for data in damaged_sources[2:]:
        frames, truncation, packets, skipped, secrets, *_ = _read_bytes(data, accelerated=False)
        assert truncation is None and packets >= 8 and skipped >= 2 and secrets
        assert len({ts for ts, *_ in frames}) > 5
        assert _read_bytes(data, accelerated=True) == _read_bytes(data, accelerated=False)


@pytest.mark.parametrize("step", [1, 7, 300])
def test_readers_match_on_a_trickling_stream(damaged_sources: list[bytes], step: int) -> None:
    for data in damaged_sources:
        assert _read_bytes(data, True, step) == _read_bytes(data, False, step)


def test_readers_match_at_every_cut(damaged_sources: list[bytes]) -> None:
    for data in damaged_sources:
        for cut in range(len(data) + 1):
            assert _read_bytes(data[:cut], True) == _read_bytes(data[:cut], False), cut


def test_readers_match_on_corrupted_lengths(damaged_sources: list[bytes]) -> None:
    rng = random.Random(13)
    for data in damaged_sources:
        for _ in range(400):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(damaged))
                damaged[at] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256), damaged[at] ^ 1 << rng.randrange(8)])
            assert _read_bytes(bytes(damaged), True) == _read_bytes(bytes(damaged), False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_readers_match_on_random_damage(damaged_sources: list[bytes], data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(damaged_sources))
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(source) - 1), st.binary(min_size=1, max_size=8)), max_size=4)
    )
    damaged = bytearray(source)
    for at, value in edits:
        damaged[at : at + len(value)] = value
    step = data.draw(st.sampled_from([0, 0, 3, 64]))
    assert _read_bytes(bytes(damaged), True, step) == _read_bytes(bytes(damaged), False, step)


# ----- decode -----------------------------------------------------------------------------------


def test_decode_matches_on_every_cut_and_mutation(sample_frames: list[tuple[int, bytes]]) -> None:
    rng = random.Random(7)
    claimed = 0
    for linktype, frame in sample_frames:
        for cut in range(len(frame) + 1):
            claimed += _assert_decode_matches(linktype, frame[:cut])
        for _ in range(100):
            mutated = bytearray(frame)
            at = rng.randrange(min(len(frame), 80))
            mutated[at] = rng.randrange(256)
            claimed += _assert_decode_matches(linktype, bytes(mutated))
    assert claimed > 1000


def _headers(frame: bytes) -> list[bytes]:
    """The IP packet of an Ethernet frame behind each link layer the C decoder knows."""
    ip = frame[14:]
    family = b"\x02\x00\x00\x00" if ip[:1] and ip[0] >> 4 == 4 else b"\x1e\x00\x00\x00"
    return [ip, family + ip]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_matches_on_random_frames(sample_frames: list[tuple[int, bytes]], data: st.DataObject) -> None:
    _, frame = data.draw(st.sampled_from(sample_frames))
    linktype = data.draw(st.sampled_from(sorted(SUPPORTED_LINKTYPES | {147})))
    shape = data.draw(st.sampled_from(["ethernet", "vlan", "sll", "sll2", "ip", "null", "random"]))
    if shape == "vlan":
        frame = (
            frame[:12]
            + data.draw(st.sampled_from([b"\x81\x00", b"\x88\xa8", b"\x89\x09", b"\x88\x64"]))
            + b"\0" * 6
            + frame[12:]
        )
    elif shape == "sll":
        frame = b"\0" * 14 + frame[12:]
    elif shape == "sll2":
        frame = frame[12:14] + b"\0" * 18 + frame[14:]
    elif shape in ("ip", "null"):
        frame = _headers(frame)[shape == "null"]
    elif shape == "random":
        frame = data.draw(st.binary(max_size=120))
    edits = data.draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3))
    mutated = bytearray(frame)
    for at, value in edits:
        if at < len(mutated):
            mutated[at] = value
    _assert_decode_matches(linktype, bytes(mutated))


def test_decode_leaves_what_it_does_not_know_to_decode_py() -> None:
    assert fast.decode(9, b"\xff\x03\x00\x21" + bytes(40)) is NOT_MINE  # PPP
    assert fast.decode(1, bytearray(60)) is NOT_MINE  # not bytes: decode.py would return slices of it
    ipip = bytes.fromhex("4500002800000000ff04") + bytes(10)
    assert fast.decode(101, ipip) is NOT_MINE


# ----- the whole pipeline -----------------------------------------------------------------------

_ANALYZE = """
import json, sys
from pathlib import Path
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.files import CaptureError, open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.pipeline import analyze_files
if sys.argv[1] == "records":
    # the flow table seam proposed for tcp.py (its own import of the framer), applied from outside
    import helloscope.sniffer.transport.tcp as tcp
    tcp.RecordReader = fast.RecordReader
out = {"core": fast.core is not None, "runs": {}}
for name in sys.argv[2:]:
    path = Path(name)
    try:
        open_capture(name).close()
    except CaptureError:
        continue
    keys = KeyLog()
    keylog = path.with_suffix(".keylog")
    if keylog.exists():
        keys.feed(keylog.read_text())
        keys.finish()
    events, stats = analyze_files([open_capture(name)], Observer("test"), keys=keys)
    out["runs"][name] = [json.dumps(events, sort_keys=True), stats.as_dict()]
print(json.dumps(out))
"""


def _analyze_all(captures: list[Path], pure: bool, records: bool = False) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "HELLOSCOPE_PURE"}
    if pure:
        env["HELLOSCOPE_PURE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _ANALYZE, "records" if records else "-", *map(str, captures)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    )
    result = json.loads(done.stdout)
    assert result["core"] is not pure
    return result["runs"]


def _assert_pipeline_identical(captures: list[Path]) -> int:
    """Pure, C core as wired, and C core with the C RecordReader in the flow table: the same events."""
    pure = _analyze_all(captures, pure=True)
    for core in (_analyze_all(captures, pure=False), _analyze_all(captures, pure=False, records=True)):
        assert core.keys() == pure.keys()
        for name in pure:
            assert core[name][0] == pure[name][0], name
            assert core[name][1] == pure[name][1], name
    return len(pure)


def test_pipeline_events_identical_with_and_without_core_on_fixtures() -> None:
    assert _assert_pipeline_identical(ALL_FIXTURES) == len(ALL_FIXTURES)


def test_pipeline_events_identical_with_and_without_core_on_corpus(corpus: Path) -> None:
    assert _assert_pipeline_identical(sorted(corpus.rglob("*.pcap*"))) > 250


# ----- which worker owns a frame ----------------------------------------------------------------


def fixture_frames() -> Iterator[tuple[int, bytes]]:
    """(linktype, frame) of every frame of every fixture the reader opens."""
    for capture in ALL_FIXTURES:
        try:
            reader = open_capture(str(capture))
        except CaptureError:
            continue
        for _, linktype, frame in reader:
            yield linktype, frame


def _python_owner(linktype: int, frame: bytes, workers: int) -> int:
    """run.parallel's flow hash computed from decode.py's segment, as it is without the C core."""
    segment = decode(linktype, frame)
    if segment is None:
        return 0
    addresses = int.from_bytes(segment.src, "big") ^ int.from_bytes(segment.dst, "big")
    return owner_of(addresses, segment.sport ^ segment.dport, workers)


def test_flow_owner_is_the_python_hash_on_every_fixture_frame_and_garbage() -> None:
    rng = random.Random(7)
    compared = 0
    for linktype, frame in fixture_frames():
        for workers in (1, 2, 3, 7, 64, 1 << 40):
            owner = fast.core.flow_owner(linktype, frame, workers)
            if owner is not NOT_MINE:
                assert owner == _python_owner(linktype, frame, workers), frame.hex()
                compared += 1
    assert compared > 5_000
    for _ in range(3000):
        garbage = rng.randbytes(rng.randrange(100))
        linktype = rng.choice(sorted(SUPPORTED_LINKTYPES))
        owner = fast.core.flow_owner(linktype, garbage, 5)
        assert owner is NOT_MINE or owner == _python_owner(linktype, garbage, 5)
    with pytest.raises(ZeroDivisionError):
        fast.core.flow_owner(1, b"", 0)


# ----- the flow skimmer -------------------------------------------------------------------------

# Limits under which the skimmer must decline what it usually takes: done flows idle past the timeout
# between two packets, a table always over its memory bound, a flow cap that evicts reported flows.
_SKIM_LIMITS = {
    "default": Limits(),
    "idle": Limits(idle_timeout=0.0005),
    "memory": Limits(max_memory=1),
    "cap": Limits(max_flows=2),
}


# Where the packets of reported connections that only keep them alive are taken: nowhere (each through
# TcpTable.packet), by the skimmer the pipeline calls, or by the reader's sieve before they are objects.
_SKIM_PATHS = ("python", "skimmer", "sieve")


def _skimmed_run(capture: Path, limits: Limits, path: str) -> tuple[str, dict[str, int], int, int]:
    """Events, statistics, how many packets were taken whole on ``path`` (0 on "python"), and how many
    of those only lengthened the record trace of a connection not yet reported."""
    stats = RunStats()
    events: list[dict[str, Any]] = []
    observer = Observer("test")
    tables = ConnectionTables(lambda report: events.append(build_event(report, observer)), stats, limits)
    taken = 0
    if path == "python":
        tables.skim = None
    else:
        assert tables.skim is not None
        inner = tables.skim

        def counting(linktype: int, frame: bytes, timestamp: float) -> Any:
            nonlocal taken
            answer = inner(linktype, frame, timestamp)
            taken += answer is fast.SKIMMED
            return answer

        tables.skim = counting
    with open_capture(str(capture)) as reader:
        feed_capture(reader, tables, stats, None, sieved=path == "sieve")
        if reader.sieve is not None:
            taken += reader.sieve.skimmed
    tables.flush()
    traced = 0 if tables.tcp.skimmer is None else tables.tcp.skimmer.traced
    return json.dumps(events, sort_keys=True), stats.as_dict(), taken, traced


@pytest.mark.parametrize("limits", _SKIM_LIMITS, ids=str)
def test_skimmer_and_sieve_give_the_flow_tables_events_and_statistics(limits: str) -> None:
    """Every fixture through each path: the same events and statistics."""
    taken = dict.fromkeys(_SKIM_PATHS, 0)
    traced = dict.fromkeys(_SKIM_PATHS, 0)
    for capture in ALL_FIXTURES:
        runs = {path: _skimmed_run(capture, _SKIM_LIMITS[limits], path) for path in _SKIM_PATHS}
        for path in _SKIM_PATHS:
            assert runs[path][:2] == runs["python"][:2], (capture.name, path)
            taken[path] += runs[path][2]
            traced[path] += runs[path][3]
    if limits == "default":
        # packets after the fixtures' reports (ACKs, data) were taken whole, by the sieve before the skimmer,
        # and so were keyless TLS 1.3 records that only lengthened a trace
        assert taken["skimmer"] >= 10
        assert taken["sieve"] >= taken["skimmer"] * 0.9
        assert traced["skimmer"] >= 10 and traced["sieve"] >= 10
    elif limits == "memory":
        # a table over its bound sheds connections first: every packet went to Python
        assert taken["skimmer"] == taken["sieve"] == 0


def test_sieve_takes_a_workers_foreign_frames_unless_its_sweep_clock_is_due() -> None:
    """A worker's sieve passes over the frames another worker owns, except those at or past its ``tick``."""

    capture = PCAPS / "tls13-resumed-psk.pcap"  # two connections, one per worker of two
    owners = [flow_owner(linktype, frame, 2) for _, linktype, frame in open_capture(str(capture))]
    assert 0 < owners.count(0) < len(owners)
    tables = ConnectionTables(lambda report: None, RunStats())
    for worker in (0, 1):
        for tick, foreign in ((float("inf"), owners.count(1 - worker)), (0.0, 0)):
            with open_capture(str(capture)) as reader:
                reader.sieve = sieve = tables.sieve(_Share(tick), worker, 2)
                yielded = [flow_owner(linktype, frame, 2) for _, linktype, frame in reader]
            assert reader.packets == len(owners)
            assert sieve.foreign == foreign
            assert yielded.count(1 - worker) == owners.count(1 - worker) - foreign
    with pytest.raises(ValueError, match="below"):
        tables.sieve(_Share(0.0), 2, 2)
    with pytest.raises(TypeError, match="slot"):
        tables.sieve(object(), 0, 2)


def test_skimmer_refuses_a_flow_type_without_the_lifecycle_slots() -> None:
    class NoSlots:
        done = False

    with pytest.raises(TypeError, match="slot"):
        fast.core.FlowSkimmer({}, object(), NoSlots, 1.0)


# ----- TLS record framing -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def streams() -> list[bytes]:
    """Every TCP direction of the fixtures from its TLS start, and a few cut mid-stream."""
    from helloscope.parsers.preamble import find_client_hello, find_server_response

    from fuzz.seeds import _flows

    found: list[bytes] = []
    for capture in sorted(PCAPS.glob("*.pcap")):
        for stream in _flows(capture)[0].values():
            start = find_client_hello(stream)
            if start is None:
                start = find_server_response(stream)
            if start is not None:
                found.append(stream[start:])
    assert len(found) > 20
    return found + [stream[3:] for stream in found[:5]] + [stream[:-1] + b"\x99" * 9 for stream in found[5:10]]


def _feed(reader: Any, piece: bytes | bytearray | memoryview) -> Any:
    """What one feed() shows: the records or the ParseError, then the reader's state."""
    try:
        outcome: Any = reader.feed(piece)
    except ParseError as error:
        outcome = ("ParseError", error.what, error.offset)
    poison = reader.error
    state = (reader.buffered, None if poison is None else (type(poison), poison.what, poison.offset))
    return outcome, state


def _assert_readers_agree(stream: bytes, cuts: list[int], kind: type = bytes, max_fragment: int | None = None) -> None:
    arguments = () if max_fragment is None else (max_fragment,)
    pure, core = PureRecordReader(*arguments), CoreRecordReader(*arguments)
    at = 0
    for cut in [*sorted(cuts), len(stream)]:
        piece = kind(stream[at:cut])
        assert _feed(core, piece) == _feed(pure, piece)
        at = max(at, cut)
    assert _feed(core, b"") == _feed(pure, b"")


def test_record_reader_matches_on_real_streams(streams: list[bytes]) -> None:
    for stream in streams:
        _assert_readers_agree(stream, [])
        _assert_readers_agree(stream, list(range(0, len(stream), 5)))
        _assert_readers_agree(stream, list(range(0, len(stream), 1 + len(stream) // 7)), bytearray)
        _assert_readers_agree(stream, [len(stream) // 2], memoryview, max_fragment=1000)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_record_reader_matches_on_random_chunkings(streams: list[bytes], data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from(streams))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    max_fragment = data.draw(st.sampled_from([None, None, 0, 100, 16384, -1]))
    _assert_readers_agree(stream, cuts, kind, max_fragment)


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                lambda t, v, n, body: bytes([t, 3, v]) + n.to_bytes(2, "big") + body,
                st.integers(18, 26),
                st.integers(0, 4),
                st.integers(0, 60),
                st.binary(max_size=60),
            ),
        ),
        max_size=12,
    )
)
def test_record_reader_matches_on_random_bytes(pieces: list[bytes]) -> None:
    stream = b"".join(pieces)
    cuts, at = [], 0
    for piece in pieces:
        at += len(piece)
        cuts.append(at)
    _assert_readers_agree(stream, cuts)


def test_record_reader_api() -> None:
    reader = CoreRecordReader(max_fragment=10)
    assert reader.feed(b"\x17\x03\x03\x00\x02ab\x17") == PureRecordReader().feed(b"\x17\x03\x03\x00\x02ab")
    assert reader.buffered == 1 and reader.error is None
    with pytest.raises(ParseError, match="record_overflow: 11 bytes > 10 at offset 7"):
        reader.feed(b"\x03\x03\x00\x0b")
    with pytest.raises(ParseError, match="record_overflow"):
        reader.feed(b"")  # poisoned for good
    with pytest.raises(TypeError):
        CoreRecordReader().feed("text")
    with pytest.raises(AttributeError):
        reader.anything = 1


# ----- memory -----------------------------------------------------------------------------------


def test_no_reference_leaks(damaged_sources: list[bytes], sample_frames: list[tuple[int, bytes]]) -> None:
    """Reference leaks show as memory that grows with the number of calls, also on the error paths."""

    def work() -> None:
        for data in damaged_sources:
            _read_bytes(data, True)
            _read_bytes(data[: len(data) // 3], True)
        for linktype, frame in sample_frames:
            fast.decode(linktype, frame)
            fast.decode(linktype, frame[:30])
        for garbage in (b"\x16\x03\x01\x00\x10" + bytes(20), b"\x99" * 10, b"\x16\x03\x01\xff\xff"):
            reader = CoreRecordReader()
            for piece in (garbage[:3], garbage[3:], b"x"):
                with contextlib.suppress(ParseError):
                    reader.feed(piece)
        with pytest.raises(TypeError):
            fast.core.split_pcapng(b"", 0, True, [("x",)], 0.0)
        with pytest.raises(ValueError):
            fast.core.split_pcap(b"", 5, True, 1000000, 1, 100)

    for _ in range(3):
        work()
    tracemalloc.start()
    try:
        work()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            work()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


# ----- sanitizers -------------------------------------------------------------------------------

_SANITIZED = """
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("helloscope.sniffer.capture._core", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
from tests.test_core import exercise
exercise()
print("exercised")
"""


class _Share:
    """A worker's share as its sieve reads it: the float ``tick`` past which foreign frames go to Python."""

    __slots__ = ("tick",)

    def __init__(self, tick: float) -> None:
        self.tick = tick


def _read_sieved(data: bytes, tick: float) -> None:
    """A capture read by worker 1 of 3 through its sieve."""
    with contextlib.suppress(CaptureError):
        reader = CaptureReader(io.BytesIO(data), "mem")
        reader.sieve = ConnectionTables(lambda report: None, RunStats()).sieve(_Share(tick), 1, 3)
        for _ in reader:
            pass


def exercise() -> None:
    """Every fixture and many damaged inputs through every C entry point (run under the sanitizers)."""
    assert fast.core is not None and Path(fast.core.__file__).parent != REPO / "sniffer" / "capture"
    rng = random.Random(1)
    streams: list[bytes] = []
    for linktype, frame in fixture_frames():
        segment = fast.decode(linktype, frame)
        for cut in (0, 1, 13, 14, 15, 33, 34, 35, 53, 54, len(frame) - 1):
            fast.decode(linktype, frame[:cut])
        fast.core.flow_owner(linktype, frame, 3)
        if segment is not NOT_MINE and segment is not None and segment.payload:
            streams.append(segment.payload)
    samples = [(1, frame) for frame in streams[:1]]
    for data in [
        (PCAPS / "tls12-noauth.pcap").read_bytes(),
        _pcapng(True, samples * 8, 3),
        _pcapng(False, samples * 8, 4),
    ]:
        for cut in range(len(data) + 1):
            _read_bytes(data[:cut], True)
        for _ in range(300):
            damaged = bytearray(data)
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            _read_bytes(bytes(damaged), True, rng.choice([0, 5]))
            _read_sieved(bytes(damaged), rng.choice([0.0, 1e9]))
    for _ in range(2000):
        garbage = rng.randbytes(rng.randrange(200))
        _read_bytes(b"\xd4\xc3\xb2\xa1" + garbage, True)
        _read_bytes(b"\x0a\x0d\x0d\x0a" + garbage[:4] + b"\x4d\x3c\x2b\x1a" + garbage, True)
        for linktype in (0, 1, 12, 101, 108, 113, 228, 229, 276):
            fast.decode(linktype, garbage)
        list(fast.core.split_pcap(garbage, 0, rng.random() < 0.5, 1000000, 1, rng.randrange(300)))
        list(fast.core.split_pcapng(garbage, 0, True, [(1, 0, 1e6, 0.0)], 0.0))
        reader = CoreRecordReader(rng.choice([18432, 0, 10]))
        for piece in (garbage[:7], garbage[7:50], garbage[50:]):
            try:
                reader.feed(piece)
            except ParseError:
                break
    for capture in ALL_FIXTURES:
        for limits in _SKIM_LIMITS.values():
            _skimmed_run(capture, limits, "sieve")
    skim = ConnectionTables(lambda report: None, RunStats()).skim
    assert skim is not None
    for _ in range(2000):
        garbage = rng.randbytes(rng.randrange(120))
        for linktype in (0, 1, 12, 101, 108, 113, 228, 229, 276):
            skim(linktype, garbage, rng.random())
            fast.core.flow_owner(linktype, garbage, 1 + rng.randrange(64))
    for stream in streams:
        reader = CoreRecordReader()
        for at in range(0, len(stream), 3):
            try:
                reader.feed(stream[at : at + 3])
            except ParseError:
                break


def _asan_runtime() -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    path = found.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def test_sanitized_build_meets_no_error(tmp_path: Path) -> None:
    runtime = _asan_runtime()
    if runtime is None:
        pytest.skip("gcc or its AddressSanitizer runtime is absent")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = tmp_path / f"_core{suffix}"
    include = sysconfig.get_paths()["include"]
    compiled = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer", "-ffp-contract=off",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Werror",
         f"-I{include}", str(REPO / "sniffer" / "capture" / "_core.c"), "-o", str(target)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    env = {key: value for key, value in os.environ.items() if key != "HELLOSCOPE_PURE"}
    env.update(
        LD_PRELOAD=runtime,
        # CPython's own allocations at exit are not ours; every read and write of ours is still checked
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        PYTHONMALLOC="malloc",  # every object its own allocation, so an overread hits a redzone
    )
    done = subprocess.run(
        [sys.executable, "-c", _SANITIZED, str(target)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    report = done.stderr[-5000:]
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, report
    assert done.returncode == 0 and "exercised" in done.stdout, report
