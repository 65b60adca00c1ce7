"""A certificate with one invalid field keeps everything else readable.

The certificates are made by cryptography's CertificateBuilder and signed; one field is then broken by a
raw DER edit of the same length (so every enclosing length stays right): a PrintableString holding "*"
(outside its alphabet, common in real certificates: cryptography refuses the whole certificate, openssl
reads it), an invalid UTF8String (both refuse it, but a peer can send any bytes), a SAN whose inner
length is wrong (openssl reads the certificate).
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helloscope.parsers.certs import summarize_x509

NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)
BAD_CN = "BADNAMEX"
BAD_SAN = "SANBADXX.example"


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org Inc"),
            x509.NameAttribute(NameOID.COMMON_NAME, BAD_CN),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("good.example"), x509.DNSName(BAD_SAN)]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


GOOD = _certificate()
# 0xff and 0xfe never occur in UTF-8; a lone 0xc3 starts a sequence that never ends.
BAD_NAME = GOOD.replace(BAD_CN.encode(), b"\xff\xfeBADNA\xc3")
# UTF8String (0x0c) made PrintableString (0x13) with a "*": the wildcard CNs of many real certificates.
STAR_NAME = GOOD.replace(b"\x0c\x08" + BAD_CN.encode(), b"\x13\x08BAD*NAME")
# The second dNSName claims 48 bytes where 16 follow: the SAN's DER is broken, the certificate's is not.
BAD_SAN_DER = GOOD.replace(b"\x82\x10" + BAD_SAN.encode(), b"\x82\x30" + BAD_SAN.encode())
BOTH = BAD_NAME.replace(b"\x82\x10" + BAD_SAN.encode(), b"\x82\x30" + BAD_SAN.encode())


def test_the_edits_hit_one_field_each():
    assert len({GOOD, BAD_NAME, STAR_NAME, BAD_SAN_DER, BOTH}) == 5
    assert len(GOOD) == len(BAD_NAME) == len(STAR_NAME) == len(BAD_SAN_DER) == len(BOTH)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("der", [STAR_NAME, BAD_SAN_DER], ids=["printable", "san"])
def test_openssl_loads_the_broken_certificates(der):
    out = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-enddate"],
        input=der,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert b"serial=1234ABCD" in out


def _common(der: bytes) -> None:
    summary = summarize_x509(der)
    assert summary.sha256 == hashlib.sha256(der).hexdigest()
    assert summary.serial_number == "1234ABCD"
    assert (summary.not_before, summary.not_after) == (NOT_BEFORE, NOT_AFTER)
    assert summary.issuer == "CN=Issuing CA"
    assert (summary.key_type, summary.key_bits, summary.curve) == ("ec", 256, "secp256r1")
    assert not summary.self_signed


def test_an_invalid_utf8string_in_the_subject_keeps_the_rest():
    _common(BAD_NAME)
    summary = summarize_x509(BAD_NAME)
    # The bad value in RFC 4514's #hex form, the good attribute as it was.
    assert summary.subject == "CN=#0c08fffe4241444e41c3,O=Org Inc"
    assert summary.san_dns == ("good.example", BAD_SAN)
    assert summary.client_auth is True
    assert summary.unreadable == ("subject",)


def test_a_printable_string_outside_its_alphabet_keeps_the_certificate_and_its_text():
    _common(STAR_NAME)
    summary = summarize_x509(STAR_NAME)
    assert summary.subject == "CN=BAD*NAME,O=Org Inc"
    assert summary.san_dns == ("good.example", BAD_SAN)
    assert summary.client_auth is True
    assert summary.unreadable == ("subject",)


def test_a_malformed_san_keeps_the_other_extensions():
    _common(BAD_SAN_DER)
    summary = summarize_x509(BAD_SAN_DER)
    assert summary.subject == f"CN={BAD_CN},O=Org Inc"
    assert summary.san_dns == ()
    assert summary.extended_key_usage == ("clientAuth",) and summary.client_auth is True
    assert summary.unreadable == ("extension 2.5.29.17",)


def test_both_at_once():
    _common(BOTH)
    summary = summarize_x509(BOTH)
    assert summary.subject.startswith("CN=#0c08")
    assert summary.extended_key_usage == ("clientAuth",)
    assert summary.unreadable == ("subject", "extension 2.5.29.17")


def test_a_well_formed_certificate_has_nothing_unreadable():
    summary = summarize_x509(GOOD)
    assert summary.subject == f"CN={BAD_CN},O=Org Inc"
    assert summary.san_dns == ("good.example", BAD_SAN)
    assert summary.unreadable == ()
