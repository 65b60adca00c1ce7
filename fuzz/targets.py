"""One fuzz target per parser entry point: bytes in, and only ParseError may come out.

Each target takes the raw fuzzer input. Parsers with a mode (TLS 1.3 or 1.2 framing, which message,
where a stream splits) take it from the first byte or two, so one input space covers every mode and
the seeds in ``fuzz/seeds.py`` carry the same prefix. Both the atheris runner (``fuzz/run.py``) and
the smoke test call these functions, so a finding replays as a plain function call.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.certs import parse_certificate, parse_certificate_request
from helloscope.parsers.decrypt import (
    AES_CCM,
    AES_GCM,
    TLS13_SUITES,
    Tls12RecordDecryptor,
    Tls13RecordDecryptor,
    derive_traffic_keys,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import ja3, ja3s, ja4, ja4_o, ja4_r, ja4_ro
from helloscope.parsers.flags import decode_tls_flags
from helloscope.parsers.hello import parse_client_hello, parse_server_hello, parse_sslv2_client_hello
from helloscope.parsers.keylog import KeyLog
from helloscope.parsers.preamble import (
    classify_preamble,
    find_client_hello,
    find_server_response,
    is_sslv2_client_hello,
)
from helloscope.parsers.quic import (
    CLIENT_IN,
    INITIAL,
    CryptoStream,
    initial_keys,
    parse_datagram,
    parse_frames,
    parse_transport_parameters,
    short_header,
    unprotect,
)
from helloscope.parsers.records import HandshakeReader, RecordReader
from helloscope.parsers.tickets import parse_encrypted_extensions, parse_new_session_ticket
from helloscope.parsers.x509 import name_to_text, summarize_x509
from helloscope.sniffer.capture import fast
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import CaptureError, CaptureReader
from helloscope.sniffer.report.events import Observer, build_event, to_json_line
from helloscope.sniffer.run.parallel import owner_of
from helloscope.sniffer.run.pipeline import feed_capture
from helloscope.sniffer.stats import RunStats
from helloscope.sniffer.transport.lifecycle import Limits
from helloscope.sniffer.transport.tables import ConnectionTables

Target = Callable[[bytes], None]


def _split(data: bytes) -> tuple[int, bytes]:
    """A cut point chosen by the input's first byte, and the rest: streams arrive in arbitrary pieces."""
    if not data:
        return 0, b""
    rest = data[1:]
    return (data[0] * len(rest)) // 256, rest


def records(data: bytes) -> None:
    cut, stream = _split(data)
    reader = RecordReader()
    handshakes = HandshakeReader()
    for piece in (stream[:cut], stream[cut:]):
        for record in reader.feed(piece):
            if record.content_type == 22:
                handshakes.feed(record.payload)
    _ = reader.buffered, reader.error


def handshake(data: bytes) -> None:
    cut, stream = _split(data)
    reader = HandshakeReader()
    reader.feed(stream[:cut])
    reader.feed(stream[cut:])
    _ = reader.pending, reader.error


def client_hello(data: bytes) -> None:
    hello = parse_client_hello(data)
    # The fingerprints walk every list of the hello: a hello that parses must fingerprint.
    ja3(hello)
    for transport in ("t", "q"):
        ja4(hello, transport), ja4_r(hello, transport), ja4_o(hello, transport), ja4_ro(hello, transport)
    _ = hello.max_version, hello.request_mtls


def server_hello(data: bytes) -> None:
    hello = parse_server_hello(data)
    ja3s(hello)
    _ = hello.version


def sslv2_hello(data: bytes) -> None:
    is_sslv2_client_hello(data)
    hello = parse_sslv2_client_hello(data)
    ja3(hello)
    ja4(hello)


def tls_flags(data: bytes) -> None:
    flags = decode_tls_flags(0x3E if data[:1] == b"\x00" else 0xFE01, data[1:])
    _ = flags.names, flags.request_mtls


def certificate(data: bytes) -> None:
    mode = data[:1] or b"\x00"
    parse_certificate(data[1:], tls13=bool(mode[0] & 1))


def certificate_request(data: bytes) -> None:
    mode = (data[:1] or b"\x00")[0]
    request = parse_certificate_request(data[1:], tls13=bool(mode & 1), tls12=bool(mode & 2))
    for name in request.certificate_authorities:
        name_to_text(name)
    _ = request.echoes_request_mtls


def x509(data: bytes) -> None:
    summarize_x509(data)
    name_to_text(data)


def alerts(data: bytes) -> None:
    for alert in parse_alerts(data):
        _ = alert.name, alert.fatal


def tickets(data: bytes) -> None:
    if data[:1] == b"\x00":
        parse_encrypted_extensions(data[1:])
    else:
        parse_new_session_ticket(data[1:])


def preamble(data: bytes) -> None:
    cut, stream = _split(data)
    client, server = stream[:cut], stream[cut:]
    classify_preamble(client, server)
    find_client_hello(client)
    find_server_response(server)


def keylog(data: bytes) -> None:
    # Key logs are read as text with undecodable bytes replaced, as helloscope.sniffer.handshake.decryption does.
    cut, raw = _split(data)
    log = KeyLog(max_line_chars=512)
    log.feed(raw[:cut].decode("utf-8", "replace"))
    log.feed(raw[cut:].decode("utf-8", "replace"))
    log.finish()
    log.secret("CLIENT_RANDOM", bytes(32))


_SECRET48: Final = bytes(range(48))
_SUITES13: Final = sorted(TLS13_SUITES)
_AEADS: Final = {AES_GCM: AESGCM, AES_CCM: AESCCM}


def _seal13(suite_code: int, inner: bytes) -> tuple[bytes, bytes]:
    """Protect ``inner`` as the first record of a direction, so the fuzzer reaches the inner-plaintext
    framing (content type, zero padding) behind the authentication tag."""
    suite = TLS13_SUITES[suite_code]
    keys = derive_traffic_keys(suite_code, _SECRET48[: suite.hash_length])
    aead = (
        AESCCM(keys.key, tag_length=suite.tag_length)
        if suite.aead == AES_CCM
        else _AEADS.get(suite.aead, ChaCha20Poly1305)(keys.key)  # type: ignore[operator]
    )
    header = b"\x17\x03\x03" + (len(inner) + suite.tag_length).to_bytes(2, "big")
    return header, aead.encrypt(keys.iv, inner, header)


def tls13_decrypt(data: bytes) -> None:
    mode = (data[:1] or b"\x00")[0]
    suite_code = _SUITES13[mode % len(_SUITES13)]
    decryptor = Tls13RecordDecryptor(suite_code, _SECRET48[: TLS13_SUITES[suite_code].hash_length])
    body = data[1:]
    if mode & 0x80:
        # Raw framing: a 5-byte header and whatever ciphertext follows, as the sniffer hands them over.
        decryptor.decrypt(body[:5], body[5:])
    elif len(body) <= 1 << 14:
        decryptor.decrypt(*_seal13(suite_code, body))


def tls12_decrypt(data: bytes) -> None:
    mode = (data[:1] or b"\x00")[0]
    suite_code = (0xC02F, 0xC030, 0xCCA8)[mode % 3]
    decryptor = Tls12RecordDecryptor(suite_code, _SECRET48, bytes(32), bytes(range(32)), from_client=bool(mode & 4))
    decryptor.decrypt(data[1:6], data[6:])


def quic_packet(data: bytes) -> None:
    """A datagram as the QUIC table sees it: headers, then Initial protection with the derivable keys."""
    headers = parse_datagram(data)
    for header in headers:
        if header.packet_type == INITIAL:
            packet = unprotect(data, header, initial_keys(header.version, header.dcid, CLIENT_IN))
            parse_frames(packet.payload)
    if headers:
        end = headers[-1].end
        short_header(data, end, headers[0].version, headers[0].dcid)


def quic_frames(data: bytes) -> None:
    mode = (data[:1] or b"\x00")[0]
    frames = parse_frames(data[1:], application=bool(mode & 1))
    stream = CryptoStream(max_bytes=4096)
    for frame in frames.crypto:
        stream.add(frame.offset, frame.data)
    if frames.close is not None:
        _ = frames.close.tls_alert


def quic_transport_parameters(data: bytes) -> None:
    for parameter in parse_transport_parameters(data):
        _ = parameter.name


# The C core's entry points (helloscope.sniffer.capture._core, through capture.fast) against the Python
# code they accelerate: any difference is a finding. Without the C core both sides are the same code.


def _capture(data: bytes, accelerated: bool) -> Any:
    try:
        reader = CaptureReader(io.BytesIO(data), "fuzz", accelerated=accelerated)
    except CaptureError as error:
        return str(error)
    frames = [(ts.hex(), linktype, frame, reader.bytes_read, reader.packets) for ts, linktype, frame in reader]
    return frames, reader.truncation, reader.skipped, reader.secrets


def core_capture(data: bytes) -> None:
    """A capture file: C frame splitting and decode give exactly the Python reader's frames and segments,
    the flow tables give the same events and statistics with the C skimmer and the reader's sieve as
    without, and a worker's sieve yields exactly the frames its flow hash gives it."""
    reference = _capture(data, accelerated=False)
    if _capture(data, accelerated=True) != reference:
        raise AssertionError("C frame splitting differs from CaptureReader")
    if isinstance(reference, str):
        return
    for _, linktype, frame, *_ in reference[0]:
        segment = fast.decode(linktype, frame)
        reference_segment = decode(linktype, frame)
        if segment is not fast.NOT_MINE and segment != reference_segment:
            raise AssertionError(f"C decode differs from decode.py on link type {linktype}: {frame.hex()}")
        owner = fast.NOT_MINE if fast.flow_owner is None else fast.flow_owner(linktype, frame, 3)
        if owner is not fast.NOT_MINE and owner != _owner(linktype, frame):
            raise AssertionError(f"C flow_owner differs from run.parallel's hash: {frame.hex()}")
    for limits in (Limits(), Limits(idle_timeout=0.001, max_flows=4)):
        python = _flow_tables(data, limits, "python")
        if _flow_tables(data, limits, "skimmer") != python or _flow_tables(data, limits, "sieve") != python:
            raise AssertionError("the C flow skimmer or sieve changed the flow table's events or statistics")
    if fast.Sieve is not None:
        _check_worker_sieve(data, [(ts, linktype, frame) for ts, linktype, frame, *_ in reference[0]])


class _Share:
    """What a worker's sieve reads its sweep clock from: never due, so every foreign frame may be taken."""

    __slots__ = ("tick",)

    def __init__(self) -> None:
        self.tick = float("inf")


def _owner(linktype: int, frame: bytes) -> int:
    segment = decode(linktype, frame)
    if segment is None:
        return 0
    addresses = int.from_bytes(segment.src, "big") ^ int.from_bytes(segment.dst, "big")
    return owner_of(addresses, segment.sport ^ segment.dport, 3)


def _check_worker_sieve(data: bytes, frames: list[tuple[str, int, bytes]]) -> None:
    """Worker 1 of 3 reads the capture with its sieve (and an empty flow table, so only foreign frames
    can go): what it passes over is all and only foreign, and the rest comes in order."""
    reader = CaptureReader(io.BytesIO(data), "fuzz")
    reader.sieve = sieve = ConnectionTables(lambda report: None, RunStats()).sieve(_Share(), 1, 3)
    met = iter([(ts.hex(), linktype, frame) for ts, linktype, frame in reader])
    passed_over = 0
    following = next(met, None)
    for frame in frames:
        if frame == following:
            following = next(met, None)
        elif _owner(frame[1], frame[2]) != 1:
            passed_over += 1
        else:
            raise AssertionError(f"a worker's sieve passed over its own frame: {frame[2].hex()}")
    if following is not None or passed_over != sieve.foreign or reader.packets != len(frames):
        raise AssertionError("a worker's sieve yields other frames than the reader reads")


def _flow_tables(data: bytes, limits: Limits, path: str) -> Any:
    """Events and statistics of a capture through the flow tables: every packet through the Python table
    ("python"), or the C skimmer taking what it can ("skimmer"), or the reader's sieve and then the skimmer."""
    events: list[str] = []
    stats = RunStats()
    observer = Observer("fuzz")
    tables = ConnectionTables(lambda report: events.append(to_json_line(build_event(report, observer))), stats, limits)
    if path == "python":
        tables.skim = None
    feed_capture(CaptureReader(io.BytesIO(data), "fuzz"), tables, stats, sieved=path == "sieve")
    tables.flush()
    return events, stats.as_dict()


def _framed(reader: Any, piece: bytes) -> Any:
    try:
        outcome: Any = reader.feed(piece)
    except ParseError as error:
        outcome = (error.what, error.offset)
    poison = reader.error
    return outcome, reader.buffered, None if poison is None else (poison.what, poison.offset)


def core_records(data: bytes) -> None:
    """A byte stream in two pieces, as ``records`` takes it: the C RecordReader answers as the pure one."""
    cut, stream = _split(data)
    core, pure = fast.RecordReader(), RecordReader()
    for piece in (stream[:cut], stream[cut:], b""):
        if _framed(core, piece) != _framed(pure, piece):
            raise AssertionError("C RecordReader differs from parsers.records.RecordReader")


TARGETS: Final[dict[str, Target]] = {
    target.__name__: target
    for target in (
        records,
        handshake,
        client_hello,
        server_hello,
        sslv2_hello,
        tls_flags,
        certificate,
        certificate_request,
        x509,
        alerts,
        tickets,
        preamble,
        keylog,
        tls13_decrypt,
        tls12_decrypt,
        quic_packet,
        quic_frames,
        quic_transport_parameters,
        core_capture,
        core_records,
    )
}


def check(target: Target, data: bytes) -> None:
    """Run one input: a ParseError is the parser's documented answer, anything else propagates."""
    with contextlib.suppress(ParseError):
        target(data)
