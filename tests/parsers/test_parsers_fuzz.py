"""Property tests: whatever the bytes, every public parser returns or raises ParseError, nothing else.

Random bytes rarely get past a length field, so each parser is also fed mutations (overwrites,
truncations, insertions) of a real message, which reach the extension and X.509 code paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.certs import parse_certificate, parse_certificate_request
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import ja3, ja3s
from helloscope.parsers.hello import parse_client_hello, parse_server_hello, parse_sslv2_client_hello
from helloscope.parsers.records import HandshakeReader, RecordReader
from helloscope.parsers.x509 import name_to_text, summarize_x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.parsers import rfc8448

# HELLOSCOPE_FUZZ_EXAMPLES raises the budget for a long local run.
FUZZ = settings(
    max_examples=int(os.environ.get("HELLOSCOPE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _leaf() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=fuzz,O=helloscope")
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("fuzz.example")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


LEAF = _leaf()
CA_NAME = x509.Name.from_rfc4514_string("CN=Client CA,O=Example").public_bytes()
FLAGS = bytes([11]) + bytes(10) + b"\x01"
# Seeds: a ClientHello with every decoded extension, the RFC 8448 hellos, and certificate messages.
CH_SEED = (
    rfc8448.CLIENT_HELLO[4:-6]
    + bytes.fromhex(
        "0010 0005 0003 02 6832"  # alpn h2
        "0031 0000"  # post_handshake_auth
        "0015 0002 0000"  # padding
        "003e 000c"
    )
    + FLAGS
    + bytes.fromhex(
        "fe0d 000b 00 0001 0001 07 0000 0001 ff"  # ECH outer
        "0029 0011 0008 0002 6964 00000000 0005 04 00000000"
    )
)  # pre_shared_key, last
CH_SEED = CH_SEED[:45] + (len(CH_SEED) - 47).to_bytes(2, "big") + CH_SEED[47:]
TLS12_CERTIFICATE = (len(LEAF) + 3).to_bytes(3, "big") + len(LEAF).to_bytes(3, "big") + LEAF
TLS13_CR = (
    b"\x00"
    + (10 + 4 + 2 + 2 + len(CA_NAME) + 4 + len(FLAGS)).to_bytes(2, "big")
    + bytes.fromhex("000d 0006 0004 0807 0403")
    + b"\x00\x2f"
    + (len(CA_NAME) + 4).to_bytes(2, "big")
    + (len(CA_NAME) + 2).to_bytes(2, "big")
    + len(CA_NAME).to_bytes(2, "big")
    + CA_NAME
    + b"\x00\x3e"
    + len(FLAGS).to_bytes(2, "big")
    + FLAGS
)
TLS12_CR = (
    b"\x02\x01\x40"
    + bytes.fromhex("0004 0403 0804")
    + (len(CA_NAME) + 2).to_bytes(2, "big")
    + len(CA_NAME).to_bytes(2, "big")
    + CA_NAME
)
SSLV2_SEED = bytes.fromhex("8025 01 0301 000c 0000 0010 010080 00002f 000035 0000ff") + bytes(16)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["overwrite", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "overwrite" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at : at + draw(st.integers(1, 4))]
    return bytes(data)


def inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(seed))


def _only_parse_error(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse(data)


@FUZZ
@given(inputs(CH_SEED))
def test_client_hello(data: bytes) -> None:
    try:
        hello = parse_client_hello(data)
    except ParseError:
        return
    ja3(hello)
    assert hello.max_version >= 0


def test_client_hello_seed_decodes_everything() -> None:
    # Guards the fuzz seed itself: if it stopped parsing, the mutations would only test the outer layer.
    hello = parse_client_hello(CH_SEED)
    assert hello.anomalies == ()
    assert hello.alpn == (b"h2",) and hello.post_handshake_auth and hello.padding_length == 2
    assert hello.request_mtls and hello.ech is not None and hello.has_pre_shared_key


@FUZZ
@given(inputs(rfc8448.SERVER_HELLO[4:]))
def test_server_hello(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        ja3s(parse_server_hello(data))


@FUZZ
@given(inputs(SSLV2_SEED))
def test_sslv2_client_hello(data: bytes) -> None:
    _only_parse_error(parse_sslv2_client_hello, data)


@FUZZ
@given(st.binary(max_size=40))
def test_alerts(data: bytes) -> None:
    _only_parse_error(parse_alerts, data)


@FUZZ
@given(inputs(TLS12_CERTIFICATE), st.booleans())
def test_certificate(data: bytes, tls13: bool) -> None:
    _only_parse_error(lambda d: parse_certificate(d, tls13), data)


@FUZZ
@given(st.one_of(inputs(TLS13_CR), inputs(TLS12_CR)), st.booleans(), st.booleans())
def test_certificate_request(data: bytes, tls13: bool, tls12: bool) -> None:
    _only_parse_error(lambda d: parse_certificate_request(d, tls13, tls12), data)


def test_certificate_request_seeds_parse() -> None:
    assert parse_certificate_request(TLS13_CR, tls13=True).echoes_request_mtls
    assert parse_certificate_request(TLS12_CR, tls13=False).certificate_authorities == (CA_NAME,)
    assert parse_certificate(TLS12_CERTIFICATE, tls13=False).certificates == (LEAF,)


@FUZZ
@given(inputs(LEAF))
def test_summarize_x509(data: bytes) -> None:
    _only_parse_error(summarize_x509, data)


@FUZZ
@given(inputs(CA_NAME))
def test_name_to_text(data: bytes) -> None:
    _only_parse_error(name_to_text, data)


@FUZZ
@given(
    st.lists(st.one_of(st.binary(max_size=30), mutated(rfc8448.CLIENT_HELLO_RECORD)), max_size=6), st.integers(1, 300)
)
def test_record_reader(chunks: list[bytes], max_fragment: int) -> None:
    reader = RecordReader(max_fragment)
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            records = reader.feed(chunk)
        except ParseError:
            return
        assert all(len(r.payload) <= max_fragment for r in records)
        assert reader.buffered <= fed


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=30), mutated(rfc8448.CLIENT_HELLO)), max_size=6))
def test_handshake_reader(chunks: list[bytes]) -> None:
    reader = HandshakeReader(max_message=500)
    for chunk in chunks:
        try:
            messages = reader.feed(chunk)
        except ParseError:
            return
        assert all(m.raw_length == 4 + len(m.body) <= 504 for m in messages)


@pytest.mark.parametrize(
    "parse",
    [parse_client_hello, parse_server_hello, parse_sslv2_client_hello, parse_alerts, summarize_x509, name_to_text],
)
def test_empty_input(parse: Callable[[bytes], object]) -> None:
    with pytest.raises(ParseError):
        parse(b"")
