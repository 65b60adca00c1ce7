"""Certificate and CertificateRequest messages (RFC 8446 4.3.2, 4.4.2; RFC 5246 7.4.2, 7.4.4) and
X.509 summaries of the certificates they carry.

X.509 itself is read by ``cryptography``; this module only turns its objects into a flat, frozen
summary and its many exception types into :class:`ParseError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from helloscope.parsers.buffer import Reader
from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import (
    TLS_FLAGS_DECODERS,
    DecoderTable,
    Extension,
    decode_extensions,
    pull_extensions,
    pull_signature_algorithms,
)
from helloscope.parsers.registry import CERTIFICATE_AUTHORITIES, SIGNATURE_ALGORITHMS


@dataclass(frozen=True, slots=True)
class CertificateMessage:
    request_context: bytes
    certificates: tuple[bytes, ...]  # DER, leaf first

    @property
    def empty(self) -> bool:
        """No certificate: the client declined a CertificateRequest."""
        return not self.certificates


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    request_context: bytes
    certificate_types: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    certificate_authorities: tuple[bytes, ...]  # DER DistinguishedNames; see name_to_text
    extensions: tuple[Extension, ...]
    tls_flags: TlsFlags | None
    anomalies: tuple[str, ...] = ()  # TLS 1.3 extension problems, same codes as the hellos

    @property
    def echoes_request_mtls(self) -> bool:
        return self.tls_flags is not None and self.tls_flags.request_mtls


def _pull_certificate_entry(reader: Reader) -> bytes:
    der = reader.pull_opaque(3, "cert_data")
    pull_extensions(reader)  # per-certificate OCSP/SCT extensions: checked for framing, not reported
    return der


def _pull_asn1_cert(reader: Reader) -> bytes:
    return reader.pull_opaque(3, "ASN.1Cert")


def _expect_end(reader: Reader, what: str) -> None:
    if not reader.eof():
        raise ParseError(f"{reader.remaining} bytes after {what}", reader.position)


def parse_certificate(body: bytes, tls13: bool) -> CertificateMessage:
    """A Certificate handshake body; ``tls13`` selects the context-and-entries layout."""
    reader = Reader(body)
    context = reader.pull_opaque(1, "certificate_request_context") if tls13 else b""
    certificates = reader.pull_vector(3, "certificate_list", _pull_certificate_entry if tls13 else _pull_asn1_cert)
    _expect_end(reader, "Certificate")
    return CertificateMessage(context, certificates)


def _pull_distinguished_name(reader: Reader) -> bytes:
    return reader.pull_opaque(2, "DistinguishedName")


def _pull_distinguished_names(reader: Reader) -> tuple[bytes, ...]:
    return reader.pull_vector(2, "certificate_authorities", _pull_distinguished_name)


_REQUEST_DECODERS: Final[DecoderTable] = {
    SIGNATURE_ALGORITHMS: ("signature_algorithms", pull_signature_algorithms),
    CERTIFICATE_AUTHORITIES: ("certificate_authorities", _pull_distinguished_names),
    **TLS_FLAGS_DECODERS,
}


def parse_certificate_request(body: bytes, tls13: bool, tls12: bool = True) -> CertificateRequest:
    """A CertificateRequest body.

    TLS 1.3 carries everything in extensions; TLS 1.0/1.1 and SSLv3 (``tls12=False``) lack the
    supported_signature_algorithms field that TLS 1.2 put between the types and the CA names.
    """
    reader = Reader(body)
    if tls13:
        context = reader.pull_opaque(1, "certificate_request_context")
        extensions = pull_extensions(reader)
        _expect_end(reader, "CertificateRequest")
        values, anomalies = decode_extensions(extensions, _REQUEST_DECODERS)
        return CertificateRequest(
            request_context=context,
            certificate_types=(),
            signature_algorithms=values.get("signature_algorithms", ()),
            certificate_authorities=values.get("certificate_authorities", ()),
            extensions=extensions,
            tls_flags=values.get("tls_flags"),
            anomalies=tuple(dict.fromkeys(anomalies)),
        )
    certificate_types = tuple(reader.pull_opaque(1, "certificate_types"))
    signature_algorithms = pull_signature_algorithms(reader) if tls12 else ()
    authorities = _pull_distinguished_names(reader)
    _expect_end(reader, "CertificateRequest")
    return CertificateRequest(b"", certificate_types, signature_algorithms, authorities, (), None)


# --- X.509 ----------------------------------------------------------------------------------------

_EKU_NAMES: Final[dict[x509.ObjectIdentifier, str]] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "smartcardLogon",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "pkInitKDC",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsecIKE",
}

# anyExtendedKeyUsage permits client authentication as much as clientAuth does (RFC 5280 4.2.1.12).
_CLIENT_AUTH_PURPOSES: Final = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})

# Ed25519/Ed448 keys have no "size" attribute; these are their public key sizes in bits (RFC 8032).
_EDWARDS_BITS: Final = {"ed25519": 256, "ed448": 456}


@dataclass(frozen=True, slots=True)
class X509Summary:
    subject: str  # RFC 4514, unescaped for display
    issuer: str
    serial_number: str  # upper-case hex, as ECS x509.serial_number
    sha256: str  # lower-case hex of the DER
    not_before: datetime  # timezone-aware UTC
    not_after: datetime
    key_type: str  # rsa, ec, ed25519, ed448, dsa or unknown
    key_bits: int | None
    curve: str | None
    extended_key_usage: tuple[str, ...]
    client_auth: bool | None  # None: no EKU extension, so any purpose
    server_auth_only: bool
    sct_count: int
    self_signed: bool  # by name: subject == issuer
    san_dns: tuple[str, ...]


def _key_summary(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    try:
        key = cert.public_key()
    except UnsupportedAlgorithm:
        return ("unknown", None, None)
    if isinstance(key, rsa.RSAPublicKey):
        return ("rsa", key.key_size, None)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ec", key.key_size, key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("ed25519", _EDWARDS_BITS["ed25519"], None)
    if isinstance(key, ed448.Ed448PublicKey):
        return ("ed448", _EDWARDS_BITS["ed448"], None)
    if isinstance(key, dsa.DSAPublicKey):
        return ("dsa", key.key_size, None)
    return ("unknown", None, None)


def _extension_value(extensions: x509.Extensions, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def summarize_x509(der: bytes) -> X509Summary:
    """Summarize one DER certificate; anything cryptography cannot read raises ParseError.

    cryptography reports bad DER as ValueError, but its lazy accessors raise whatever they meet on
    hostile input (DuplicateExtension, UnsupportedGeneralNameType, even KeyError for a string tag it
    has no type for), hence the broad catch; only reads of cryptography objects run under it.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject, cert.issuer
        subject_text, issuer_text, self_signed = subject.rfc4514_string(), issuer.rfc4514_string(), subject == issuer
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        serial = cert.serial_number
        key_type, key_bits, curve = _key_summary(cert)
        extensions = cert.extensions
        eku = _extension_value(extensions, x509.ExtendedKeyUsage)
        eku_oids = list(eku) if isinstance(eku, x509.ExtendedKeyUsage) else []
        san = _extension_value(extensions, x509.SubjectAlternativeName)
        san_dns = san.get_values_for_type(x509.DNSName) if isinstance(san, x509.SubjectAlternativeName) else []
        scts = _extension_value(extensions, x509.PrecertificateSignedCertificateTimestamps)
        sct_count = len(scts) if isinstance(scts, x509.PrecertificateSignedCertificateTimestamps) else 0
    except Exception as exc:
        raise ParseError(f"unreadable X.509 certificate: {exc!r}", 0) from exc
    return X509Summary(
        subject=subject_text,
        issuer=issuer_text,
        serial_number=format(serial, "X"),
        sha256=hashlib.sha256(der).hexdigest(),
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        extended_key_usage=tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku_oids),
        client_auth=None if eku is None else not _CLIENT_AUTH_PURPOSES.isdisjoint(eku_oids),
        server_auth_only=eku_oids == [ExtendedKeyUsageOID.SERVER_AUTH],
        sct_count=sct_count,
        self_signed=self_signed,
        san_dns=tuple(san_dns),
    )


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


# cryptography has no public loader for a bare Name, so the CA name is placed as the issuer of an
# otherwise empty CRL shell (RFC 5280 5.1) and read back by cryptography's own Name parser.
_SEQUENCE = 0x30
_CRL_SIGNATURE = _der(_SEQUENCE, _der(0x06, bytes.fromhex("2a864886f70d01010b")))  # sha256WithRSAEncryption
_CRL_THIS_UPDATE = _der(0x17, b"700101000000Z")
_CRL_EMPTY_SIGNATURE = _der(0x03, b"\x00")


def name_to_text(der_name: bytes) -> str:
    """A DER DistinguishedName (a CertificateRequest CA entry) as an RFC 4514 string."""
    tbs = _der(_SEQUENCE, _CRL_SIGNATURE + der_name + _CRL_THIS_UPDATE)
    try:
        issuer = x509.load_der_x509_crl(_der(_SEQUENCE, tbs + _CRL_SIGNATURE + _CRL_EMPTY_SIGNATURE)).issuer
        encoded, text = issuer.public_bytes(), issuer.rfc4514_string()
    except Exception as exc:  # as in summarize_x509
        raise ParseError(f"unreadable DistinguishedName: {exc!r}", 0) from exc
    # Re-encoding must give the input back, or bytes after the Name were read as CRL fields.
    if encoded != der_name:
        raise ParseError("bytes after the DistinguishedName", 0)
    return text
