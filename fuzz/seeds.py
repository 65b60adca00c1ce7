"""Seed inputs for every fuzz target, cut from real captures with the project's own readers.

Random bytes rarely get past a length field; real messages start the fuzzer deep inside the parsers.
Captures are read with helloscope.sniffer.capture.files and .decode, each TCP direction is put back in
order by helloscope.sniffer.transport.reassembly, and the TLS records and handshake messages are framed
by helloscope.parsers.records; QUIC
client Initials are opened with the keys anyone can derive from their DCID. Each seed carries the mode
prefix its target expects (see fuzz/targets.py).

    python -m fuzz.seeds [--corpus ../shared/corpus] [--out fuzz/seeds-out]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from helloscope.parsers.certs import parse_certificate
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_client_hello
from helloscope.parsers.preamble import find_client_hello, find_server_response, is_sslv2_client_hello
from helloscope.parsers.quic import (
    CLIENT_IN,
    INITIAL,
    CryptoStream,
    initial_keys,
    parse_datagram,
    parse_frames,
    unprotect,
)
from helloscope.parsers.records import HandshakeMessage, HandshakeReader, RecordReader
from helloscope.parsers.registry import ALERT, APPLICATION_DATA, HANDSHAKE
from helloscope.sniffer.capture.decode import TCP, UDP, decode
from helloscope.sniffer.capture.files import CaptureError, open_capture
from helloscope.sniffer.transport.reassembly import StreamReassembler

ROOT: Final = Path(__file__).resolve().parent.parent
PCAPS: Final = ROOT / "pcaps"
DEFAULT_OUT: Final = ROOT / "fuzz" / "seeds-out"
MAX_SEEDS_PER_TARGET: Final = 300
MAX_SEED_BYTES: Final = 16 * 1024  # longer inputs slow every mutation and find nothing more
TRANSPORT_PARAMETERS: Final = 0x39
TLS_FLAGS_CODEPOINTS: Final = {0x3E: b"\x00", 0xFE01: b"\x01"}  # codepoint -> tls_flags target prefix

Seeds = dict[str, set[bytes]]


def _flows(capture: Path) -> tuple[dict[tuple[bytes, int, bytes, int], bytes], list[bytes]]:
    """Every TCP direction's reassembled bytes, and every UDP payload, of one capture."""
    streams: dict[tuple[bytes, int, bytes, int], StreamReassembler] = {}
    data: dict[tuple[bytes, int, bytes, int], bytearray] = defaultdict(bytearray)
    datagrams: list[bytes] = []
    try:
        with open_capture(str(capture)) as reader:
            for _, linktype, frame in reader:
                segment = decode(linktype, frame)
                if segment is None:
                    continue
                if segment.proto == UDP:
                    datagrams.append(segment.payload)
                    continue
                if segment.proto != TCP:
                    continue
                key = (segment.src, segment.sport, segment.dst, segment.dport)
                stream = streams.setdefault(key, StreamReassembler(1 << 20, 1 << 20))
                if segment.flags & 0x02:
                    stream.syn(segment.seq)
                data[key] += stream.add(segment.seq, segment.payload)
    except (CaptureError, OSError):
        pass  # a damaged corpus file still gave what came before the damage
    return {key: bytes(value) for key, value in data.items() if value}, datagrams


def _handshakes(payloads: Iterable[bytes]) -> Iterator[HandshakeMessage]:
    reader = HandshakeReader()
    for payload in payloads:
        try:
            yield from reader.feed(payload)
        except ParseError:
            return


def _tcp_seeds(stream: bytes, seeds: Seeds) -> None:
    if is_sslv2_client_hello(stream):
        seeds["sslv2_hello"].add(stream[: 2 + (((stream[0] & 0x7F) << 8) | stream[1])])
    start = find_client_hello(stream)
    if start is None:
        start = find_server_response(stream)
    if start is None:
        return
    seeds["records"].add(b"\x80" + stream[start : start + MAX_SEED_BYTES])
    seeds["core_records"].add(b"\x80" + stream[start : start + MAX_SEED_BYTES])
    records = RecordReader()
    try:
        framed = records.feed(stream[start:])
    except ParseError:
        framed = []
    handshake_payloads = [record.payload for record in framed if record.content_type == HANDSHAKE]
    seeds["handshake"].add(b"\x80" + b"".join(handshake_payloads)[:MAX_SEED_BYTES])
    for record in framed:
        raw = record.content_type.to_bytes(1, "big") + record.version.to_bytes(2, "big")
        raw += len(record.payload).to_bytes(2, "big") + record.payload
        if record.content_type == ALERT:
            seeds["alerts"].add(record.payload)
        elif record.content_type == APPLICATION_DATA:
            seeds["tls13_decrypt"].add(b"\x80" + raw)
            seeds["tls12_decrypt"].add(b"\x00" + raw)
    for message in _handshakes(handshake_payloads):
        _message_seeds(message, seeds)


def _message_seeds(message: HandshakeMessage, seeds: Seeds) -> None:
    body = message.body
    framed = message.msg_type.to_bytes(1, "big") + len(body).to_bytes(3, "big") + body
    # The same message as the inner plaintext of a protected TLS 1.3 record (type 22), for each suite.
    seeds["tls13_decrypt"].add(bytes([len(seeds["tls13_decrypt"]) % 5]) + framed + b"\x16")
    if message.msg_type == 1:
        seeds["client_hello"].add(body)
        _hello_extension_seeds(body, seeds)
    elif message.msg_type == 2:
        seeds["server_hello"].add(body)
    elif message.msg_type == 4:
        seeds["tickets"].add(b"\x01" + body)
    elif message.msg_type == 8:
        seeds["tickets"].add(b"\x00" + body)
    elif message.msg_type == 11:
        seeds["certificate"].add(b"\x00" + body)
        with contextlib.suppress(ParseError):
            seeds["x509"].update(parse_certificate(body, tls13=False).certificates)
    elif message.msg_type == 13:
        seeds["certificate_request"].add(b"\x02" + body)


def _hello_extension_seeds(body: bytes, seeds: Seeds) -> None:
    try:
        hello = parse_client_hello(body)
    except ParseError:
        return
    for extension in hello.extensions:
        if extension.type in TLS_FLAGS_CODEPOINTS:
            seeds["tls_flags"].add(TLS_FLAGS_CODEPOINTS[extension.type] + extension.data)
        elif extension.type == TRANSPORT_PARAMETERS:
            seeds["quic_transport_parameters"].add(extension.data)


def _quic_seeds(datagrams: list[bytes], seeds: Seeds) -> None:
    crypto: dict[bytes, CryptoStream] = {}
    for datagram in datagrams:
        try:
            headers = parse_datagram(datagram)
        except ParseError:
            continue
        if not headers:
            continue
        seeds["quic_packet"].add(datagram)
        for header in headers:
            if header.packet_type != INITIAL:
                continue
            try:
                packet = unprotect(datagram, header, initial_keys(header.version, header.dcid, CLIENT_IN))
                frames = parse_frames(packet.payload)
            except ParseError:
                continue  # a server Initial: its keys come from the client's DCID, not this one
            seeds["quic_frames"].add(b"\x00" + packet.payload)
            stream = crypto.setdefault(header.dcid, CryptoStream())
            for frame in frames.crypto:
                for message in _handshakes([stream.add(frame.offset, frame.data)]):
                    _message_seeds(message, seeds)


def _preamble_seed(client: bytes, server: bytes) -> bytes:
    """The preamble target's input for this client/server pair: a cut byte, then both directions."""
    client, server = client[:2048], server[:2048]
    joined = client + server
    cut = -(-len(client) * 256 // len(joined)) if joined else 0  # ceiling: targets._split floors
    return bytes([min(cut, 255)]) + joined


def collect(captures: Iterable[Path], keylogs: Iterable[Path] = ()) -> Seeds:
    seeds: Seeds = defaultdict(set)
    for capture in captures:
        with contextlib.suppress(OSError), open(capture, "rb") as file:
            seeds["core_capture"].add(file.read(MAX_SEED_BYTES))  # the file's head: its own blocks, then a cut
        streams, datagrams = _flows(capture)
        for (src, sport, dst, dport), stream in streams.items():
            _tcp_seeds(stream, seeds)
            reply = streams.get((dst, dport, src, sport), b"")
            if sport > dport:  # the ephemeral port's side is almost always the client
                seeds["preamble"].add(_preamble_seed(stream, reply))
        _quic_seeds(datagrams, seeds)
    for path in keylogs:
        seeds["keylog"].add(b"\x80" + path.read_bytes()[:MAX_SEED_BYTES])
    return seeds


def fixture_sources() -> tuple[list[Path], list[Path]]:
    return sorted(PCAPS.glob("*.pcap*")), sorted(PCAPS.glob("*.keylog"))


def corpus_sources(corpus: Path) -> tuple[list[Path], list[Path]]:
    captures = [path for pattern in ("*.pcap", "*.pcapng", "*.cap") for path in corpus.rglob(pattern)]
    keylogs = [path for pattern in ("*.keylog", "*keylog*.txt", "*sslkeylog*") for path in corpus.rglob(pattern)]
    return sorted(captures), sorted(path for path in keylogs if path.stat().st_size < 1 << 20)


def write(seeds: Seeds, out: Path, names: Iterable[str]) -> dict[str, int]:
    """One file per seed (named by its hash) under out/<target>/; every target gets a directory."""
    counts: dict[str, int] = {}
    for name in names:
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        kept = sorted((seed for seed in seeds.get(name, ()) if len(seed) <= MAX_SEED_BYTES + 1), key=len)
        for seed in kept[:MAX_SEEDS_PER_TARGET]:
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        counts[name] = min(len(kept), MAX_SEEDS_PER_TARGET)
    return counts


def generate(out: Path = DEFAULT_OUT, corpus: Path | None = None) -> dict[str, int]:
    from fuzz.targets import TARGETS

    captures, keylogs = fixture_sources()
    if corpus is not None and corpus.is_dir():
        more_captures, more_keylogs = corpus_sources(corpus)
        captures += more_captures
        keylogs += more_keylogs
    return write(collect(captures, keylogs), out, TARGETS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="also cut seeds from these public captures")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for name, count in generate(args.out, args.corpus).items():
        print(f"{name:28} {count} seeds")


if __name__ == "__main__":
    main()
