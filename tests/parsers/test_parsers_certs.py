"""Certificate, CertificateRequest and X.509 summaries: real client-auth handshakes from public
captures (checked against tshark and openssl), TLS 1.3 layouts and certificates built here."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helloscope.parsers.certs import CertificateMessage, parse_certificate, parse_certificate_request
from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import Extension
from helloscope.parsers.records import HandshakeMessage
from helloscope.parsers.x509 import name_to_text, summarize_x509

from tests.helpers import tshark_fields
from tests.parsers.corpus_streams import plaintext_handshake, tcp_streams

XMPP = "wireshark-notes/tls/xmpp-ssl.pcapng"
MTLS_SUCCESS = "nealfennimore-cs-gy-6903/project5/mtls/mtls-success.pcap"
TLS10 = "FlowTest/pcap/tls10.pcap"
TLS12 = "FlowTest/pcap/tls12.pcap"


def _handshake(capture: Path) -> tuple[list[HandshakeMessage], list[HandshakeMessage]]:
    [stream] = [s for s in tcp_streams(capture) if s.client]
    return plaintext_handshake(stream.client), plaintext_handshake(stream.server)


def _one(messages: list[HandshakeMessage], msg_type: int) -> bytes:
    [body] = [m.body for m in messages if m.msg_type == msg_type]
    return body


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v, 0) for v in text.split(",") if v)


def vec(size: int, data: bytes) -> bytes:
    return len(data).to_bytes(size, "big") + data


def ext(ext_type: int, data: bytes = b"") -> bytes:
    return ext_type.to_bytes(2, "big") + vec(2, data)


# --- TLS <= 1.2 from public captures -------------------------------------------------------------


def test_tls12_request_and_empty_client_certificate(corpus: Path) -> None:
    capture = corpus / XMPP
    client, server = _handshake(capture)
    request = parse_certificate_request(_one(server, 13), tls13=False)
    [[types, schemes]] = tshark_fields(
        capture, "tls.handshake.type == 13", ["tls.handshake.cert_type", "tls.handshake.sig_hash_alg"]
    )
    assert request.certificate_types == _ints(types) == (1, 2, 64)
    # tshark lists the ServerKeyExchange's signature scheme first: the request's list follows it.
    assert request.signature_algorithms == _ints(schemes)[1:]
    assert len(request.signature_algorithms) == 15
    assert request.certificate_authorities == () and request.request_context == b""
    assert request.extensions == () and request.tls_flags is None and not request.echoes_request_mtls
    certificate = parse_certificate(_one(client, 11), tls13=False)
    assert certificate == CertificateMessage(b"", ()) and certificate.empty


def test_tls10_request_has_no_signature_algorithms(corpus: Path) -> None:
    _, server = _handshake(corpus / TLS10)
    body = _one(server, 13)
    request = parse_certificate_request(body, tls13=False, tls12=False)
    assert request.certificate_types == (1, 2, 64)
    assert request.signature_algorithms == () and request.certificate_authorities == ()
    with pytest.raises(ParseError):
        parse_certificate_request(body, tls13=False)  # read as TLS 1.2 the CA list is missing


def test_ca_name_in_request_is_the_issuer_of_the_client_certificate(corpus: Path) -> None:
    client, server = _handshake(corpus / MTLS_SUCCESS)
    request = parse_certificate_request(_one(server, 13), tls13=False)
    [ca_name] = request.certificate_authorities
    chain = parse_certificate(_one(client, 11), tls13=False)
    assert len(chain.certificates) == 2 and not chain.empty
    leaf = summarize_x509(chain.certificates[0])
    assert name_to_text(ca_name) == leaf.issuer == "CN=Easy-RSA CA"
    assert leaf.subject == "CN=client"
    assert leaf.client_auth is True and not leaf.server_auth_only
    server_leaf = summarize_x509(parse_certificate(_one(server, 11), tls13=False).certificates[0])
    assert server_leaf.server_auth_only and server_leaf.client_auth is False


@pytest.mark.parametrize("name", [XMPP, MTLS_SUCCESS, TLS12, TLS10])
def test_truncated_real_messages_raise_only_parse_error(corpus: Path, name: str) -> None:
    client, server = _handshake(corpus / name)
    tls12 = name != TLS10
    bodies = [(m.msg_type, m.body) for m in client + server if m.msg_type in (11, 13)]
    assert len(bodies) >= 2
    for msg_type, body in bodies:
        for cut in range(len(body)):
            with pytest.raises(ParseError):
                if msg_type == 11:
                    parse_certificate(body[:cut], tls13=False)
                else:
                    parse_certificate_request(body[:cut], tls13=False, tls12=tls12)
        with pytest.raises(ParseError):
            (
                parse_certificate(body + b"\x00", tls13=False)
                if msg_type == 11
                else parse_certificate_request(body + b"\x00", tls13=False, tls12=tls12)
            )


# --- X.509 summaries against openssl ------------------------------------------------------------


def _openssl_text(der: bytes) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-text", "-serial", "-dates", "-fingerprint", "-sha256"],
        input=der,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()


def _openssl_date(text: str, label: str) -> datetime:
    value = re.search(rf"^{label}=(.+)$", text, re.M)
    assert value is not None
    return datetime.strptime(value.group(1), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        "mercury/unit_tests/pcaps/geneve.pcap",  # public web chains with embedded SCTs
        MTLS_SUCCESS,  # a client certificate with clientAuth, EC P-384
        TLS12,
    ],
)
def test_summaries_agree_with_openssl(corpus: Path, name: str) -> None:
    checked = 0
    for stream in tcp_streams(corpus / name)[:6]:
        for message in plaintext_handshake(stream.client) + plaintext_handshake(stream.server):
            if message.msg_type != 11:
                continue
            for der in parse_certificate(message.body, tls13=False).certificates:
                summary = summarize_x509(der)
                text = _openssl_text(der)
                serial = re.search(r"^serial=([0-9A-F]+)$", text, re.M)
                assert serial is not None and int(serial.group(1), 16) == int(summary.serial_number, 16)
                assert f"Fingerprint={summary.sha256}" in text.replace(":", "")
                assert summary.not_before == _openssl_date(text, "notBefore")
                assert summary.not_after == _openssl_date(text, "notAfter")
                assert f"Public-Key: ({summary.key_bits} bit)" in text
                assert summary.sct_count == text.count("Signed Certificate Timestamp:")
                assert summary.san_dns == tuple(re.findall(r"DNS:([^,\s]+)", text))
                has_eku = "X509v3 Extended Key Usage" in text
                assert (summary.client_auth is not None) == has_eku
                assert bool(summary.client_auth) == ("TLS Web Client Authentication" in text)
                checked += 1
    assert checked >= 2


def test_sct_count_on_a_real_leaf(corpus: Path) -> None:
    _, server = _handshake(corpus / "nDPI/tests/cfgs/default/pcap/443-firefox.pcap")
    leaf = summarize_x509(parse_certificate(_one(server, 11), tls13=False).certificates[0])
    assert leaf.subject == "CN=www.ntop.org" and leaf.sct_count == 2 and "www.ntop.org" in leaf.san_dns


def test_malformed_certificate_in_a_real_capture(corpus: Path) -> None:
    _, server = _handshake(corpus / "FlowTest/pcap/tls_malformed_cert.pcap")
    message = parse_certificate(_one(server, 11), tls13=False)
    with pytest.raises(ParseError):
        summarize_x509(message.certificates[0])


# --- X.509 summaries of certificates built here ---------------------------------------------------

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _certificate(
    key: object,
    subject: str = "CN=client",
    issuer: str | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    dns: list[str] | None = None,
) -> bytes:
    signer = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()  # type: ignore[attr-defined]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(subject))
        .issuer_name(x509.Name.from_rfc4514_string(issuer or subject))
        .public_key(public)
        .serial_number(0x0123456789ABCDEF)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if dns is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("key", "key_type", "bits", "curve"),
    [
        (rsa.generate_private_key(65537, 1024), "rsa", 1024, None),
        (ec.generate_private_key(ec.SECP384R1()), "ec", 384, "secp384r1"),
        (ed25519.Ed25519PrivateKey.generate(), "ed25519", 256, None),
        (ed448.Ed448PrivateKey.generate(), "ed448", 456, None),
        (dsa.generate_private_key(1024), "dsa", 1024, None),
    ],
)
def test_key_types(key: object, key_type: str, bits: int, curve: str | None) -> None:
    summary = summarize_x509(_certificate(key))
    assert (summary.key_type, summary.key_bits, summary.curve) == (key_type, bits, curve)


def test_summary_fields() -> None:
    der = _certificate(
        ec.generate_private_key(ec.SECP256R1()),
        subject="CN=alice,O=Example\\, Inc.",
        issuer="CN=Example CA",
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns=["a.example", "b.example"],
    )
    summary = summarize_x509(der)
    assert summary.subject == "CN=alice,O=Example\\, Inc."
    assert summary.issuer == "CN=Example CA" and not summary.self_signed
    assert summary.serial_number == "123456789ABCDEF"
    assert summary.not_before == NOW and summary.not_before.tzinfo is not None
    assert summary.not_after == NOW + timedelta(days=30)
    assert summary.extended_key_usage == ("serverAuth",)
    assert summary.client_auth is False and summary.server_auth_only
    assert summary.san_dns == ("a.example", "b.example")
    assert summary.sct_count == 0


@pytest.mark.parametrize(
    ("eku", "names", "client_auth", "server_only"),
    [
        (None, (), None, False),
        ([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], ("clientAuth", "serverAuth"), True, False),
        ([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], ("anyExtendedKeyUsage",), True, False),
        ([x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")], ("1.3.6.1.4.1.99999.1",), False, False),
    ],
)
def test_extended_key_usage(
    eku: list[x509.ObjectIdentifier] | None, names: tuple[str, ...], client_auth: bool | None, server_only: bool
) -> None:
    summary = summarize_x509(_certificate(ed25519.Ed25519PrivateKey.generate(), eku=eku))
    assert summary.extended_key_usage == names
    assert summary.client_auth is client_auth and summary.server_auth_only is server_only
    assert summary.self_signed


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x00", b"\x04\x02ab", bytes(64)])
def test_garbage_certificates_raise_parse_error(der: bytes) -> None:
    with pytest.raises(ParseError):
        summarize_x509(der)


def test_name_to_text() -> None:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.COMMON_NAME, "Root, Two")]
    )
    assert name_to_text(name.public_bytes()) == "CN=Root\\, Two,C=US"
    assert name_to_text(b"\x30\x00") == ""
    for bad in (
        b"",
        b"\x30",
        name.public_bytes()[:-1],
        name.public_bytes() + b"\x00",
        name.public_bytes() + bytes.fromhex("170d3730303130313030303030305a"),
        b"\x31\x00",
    ):
        with pytest.raises(ParseError):
            name_to_text(bad)


# --- TLS 1.3 layouts ------------------------------------------------------------------------------

FLAG_80 = bytes([11]) + bytes(10) + b"\x01"


def test_tls13_certificate_with_entry_extensions() -> None:
    leaf = _certificate(ed25519.Ed25519PrivateKey.generate())
    ca = _certificate(ec.generate_private_key(ec.SECP256R1()), subject="CN=ca")
    entries = vec(3, leaf) + vec(2, ext(5, b"\x01\x00")) + vec(3, ca) + vec(2, b"")
    body = vec(1, b"\x07") + vec(3, entries)
    message = parse_certificate(body, tls13=True)
    assert message == CertificateMessage(b"\x07", (leaf, ca))
    for cut in range(len(body)):
        with pytest.raises(ParseError):
            parse_certificate(body[:cut], tls13=True)
    with pytest.raises(ParseError):
        parse_certificate(body, tls13=False)


def test_tls13_empty_certificate() -> None:
    message = parse_certificate(b"\x00\x00\x00\x00", tls13=True)
    assert message.empty and message.request_context == b""
    # The TLS 1.2 empty Certificate is one byte shorter: no context.
    assert parse_certificate(b"\x00\x00\x00", tls13=False).empty


def test_tls13_certificate_request_with_flag_echo() -> None:
    ca = x509.Name.from_rfc4514_string("CN=Client CA,O=Example").public_bytes()
    extensions = ext(13, vec(2, bytes.fromhex("0807 0403 0804"))) + ext(47, vec(2, vec(2, ca))) + ext(62, FLAG_80)
    body = vec(1, b"") + vec(2, extensions)
    request = parse_certificate_request(body, tls13=True)
    assert request.request_context == b"" and request.certificate_types == ()
    assert request.signature_algorithms == (0x0807, 0x0403, 0x0804)
    assert request.certificate_authorities == (ca,)
    assert [name_to_text(n) for n in request.certificate_authorities] == ["CN=Client CA,O=Example"]
    assert request.tls_flags == TlsFlags(62, (80,), ())
    assert request.echoes_request_mtls
    assert [e.type for e in request.extensions] == [13, 47, 62]
    assert request.anomalies == ()
    for cut in range(len(body)):
        with pytest.raises(ParseError):
            parse_certificate_request(body[:cut], tls13=True)


def test_tls13_certificate_request_anomalies() -> None:
    extensions = ext(13, b"\x00\x03\x08\x07\x04") + ext(0xFE01, b"\x02\x00\x00") + ext(13, b"")
    request = parse_certificate_request(b"\x00" + vec(2, extensions), tls13=True)
    assert request.signature_algorithms == ()
    assert request.tls_flags == TlsFlags(0xFE01, (), ("nonminimal",))
    assert not request.echoes_request_mtls
    assert request.anomalies == ("malformed_extension:13", "tls_flags_malformed:nonminimal", "duplicate_extension:13")
    assert request.extensions[1] == Extension(0xFE01, b"\x02\x00\x00")
