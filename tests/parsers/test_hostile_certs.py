"""A certificate with one invalid field keeps everything else readable.

The certificates are made by cryptography's CertificateBuilder and signed; one field is then broken by a
raw DER edit of the same length (so every enclosing length stays right): a PrintableString holding "*"
(outside its alphabet, common in real certificates: cryptography refuses the whole certificate, openssl
reads it), an invalid UTF8String (both refuse it, but a peer can send any bytes), a SAN whose inner
length is wrong (openssl reads the certificate); and edits that make cryptography refuse the whole
certificate: an invalid time, a negative serial number (refused by a future cryptography, played here),
a broken signature algorithm.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helloscope.parsers.x509 import summarize_x509

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
    assert summary.sha256 == hashlib.sha256(der).hexdigest().upper()
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


# --- certificates cryptography refuses whole (issue 16 item 13) ------------------------------------
# A digit of notBefore made a letter: cryptography refuses the certificate for its validity alone.
BAD_TIME = GOOD.replace(b"250101000000Z", b"2501010000XXZ")
# The serial's first byte with its top bit set: a negative serial number, which cryptography only warns
# about today ("will cause an exception in a future release"); _refusing_negative_serials plays that release.
NEGATIVE_SERIAL = GOOD.replace(bytes.fromhex("02041234abcd"), bytes.fromhex("02049234abcd"))
# The TBSCertificate's signature algorithm OID tagged as NULL: not even a copy with placeholders loads.
NOTHING_LOADS = GOOD.replace(bytes.fromhex("300a06082a8648ce3d040302"), bytes.fromhex("300a05082a8648ce3d040302"), 1)


def test_the_refusal_edits_hit_one_field_each():
    assert len({GOOD, BAD_TIME, NEGATIVE_SERIAL, NOTHING_LOADS}) == 4
    assert len(GOOD) == len(BAD_TIME) == len(NEGATIVE_SERIAL) == len(NOTHING_LOADS)
    for der in (BAD_TIME, NOTHING_LOADS):
        with pytest.raises(ValueError):
            x509.load_der_x509_certificate(der)


def _names_and_hashes(summary, der: bytes) -> None:
    assert summary.subject == f"CN={BAD_CN},O=Org Inc" and summary.issuer == "CN=Issuing CA"
    assert (summary.subject_common_names, summary.issuer_common_names) == ((BAD_CN,), ("Issuing CA",))
    assert summary.sha256 == hashlib.sha256(der).hexdigest().upper()
    assert summary.sha1 == hashlib.sha1(der).hexdigest().upper()
    assert summary.version == 3


def test_an_invalid_validity_time_keeps_everything_else():
    summary = summarize_x509(BAD_TIME)
    _names_and_hashes(summary, BAD_TIME)
    assert (summary.not_before, summary.not_after) == (None, NOT_AFTER)
    assert summary.serial_number == "1234ABCD" and summary.signature_algorithm == "ECDSA-SHA256"
    assert (summary.key_type, summary.key_bits, summary.curve) == ("ec", 256, "secp256r1")
    assert summary.san_dns == ("good.example", BAD_SAN) and summary.client_auth is True
    assert summary.unreadable == ("not_before",)


@pytest.fixture
def _refusing_negative_serials(monkeypatch: pytest.MonkeyPatch) -> None:
    load = x509.load_der_x509_certificate

    def refusing(der: bytes) -> x509.Certificate:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            try:
                certificate = load(der)
                certificate.serial_number  # noqa: B018 - where cryptography warns today
            except CryptographyDeprecationWarning as warning:
                raise ValueError(str(warning)) from None
        return certificate

    monkeypatch.setattr(x509, "load_der_x509_certificate", refusing)


@pytest.mark.usefixtures("_refusing_negative_serials")
def test_a_serial_number_cryptography_refuses_is_read_from_the_der():
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(NEGATIVE_SERIAL)
    summary = summarize_x509(NEGATIVE_SERIAL)
    _names_and_hashes(summary, NEGATIVE_SERIAL)
    assert summary.serial_number == format(int.from_bytes(bytes.fromhex("9234abcd"), "big", signed=True), "X")
    assert (summary.not_before, summary.not_after) == (NOT_BEFORE, NOT_AFTER)
    assert (summary.key_type, summary.curve) == ("ec", "secp256r1") and summary.extended_key_usage == ("clientAuth",)
    assert summary.unreadable == ()


def test_a_negative_serial_reads_the_same_as_cryptography_reads_it_today():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        assert summarize_x509(NEGATIVE_SERIAL).serial_number == "-6DCB5433"


def test_when_nothing_loads_the_der_still_gives_names_serial_validity_and_hashes():
    summary = summarize_x509(NOTHING_LOADS)
    _names_and_hashes(summary, NOTHING_LOADS)
    assert summary.serial_number == "1234ABCD" and (summary.not_before, summary.not_after) == (NOT_BEFORE, NOT_AFTER)
    assert summary.key_type == "unknown" and summary.san_dns == ()
    assert summary.unreadable == ("public_key", "extensions", "signature_algorithm")
