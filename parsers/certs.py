"""Certificate and CertificateRequest messages (RFC 8446 4.3.2, 4.4.2; RFC 5246 7.4.2, 7.4.4), and the
flat summary of an X.509 certificate (:class:`X509Summary`) that :mod:`helloscope.parsers.x509` makes.

Nothing here needs ``cryptography``: reading a message costs no import of it, and a run that meets
no certificate never loads it (startup time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from helloscope.parsers.buffer import Reader
from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import (
    TLS_FLAGS_DECODERS,
    DecoderTable,
    Extension,
    decode_extensions,
    opaque_items,
    pull_extensions,
    pull_signature_algorithms,
    uint16_vector,
)
from helloscope.parsers.registry import CERTIFICATE_AUTHORITIES, SIGNATURE_ALGORITHMS


@dataclass(frozen=True, slots=True)
class CertificateMessage:
    """A Certificate message: the certificates as sent (DER), with TLS 1.3's request context."""

    request_context: bytes
    certificates: tuple[bytes, ...]  # DER, leaf first

    @property
    def empty(self) -> bool:
        """No certificate: the client declined a CertificateRequest."""
        return not self.certificates


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """A CertificateRequest: what the server asks a client certificate to be, in either version's form."""

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


def chain_sha256(certificates: tuple[bytes, ...]) -> tuple[str, ...]:
    """Each certificate's SHA-256 fingerprint, upper-case hex (ECS hash fields), in the message's order."""
    return tuple(hashlib.sha256(der).hexdigest().upper() for der in certificates)


def _pull_distinguished_name(reader: Reader) -> bytes:
    return reader.pull_opaque(2, "DistinguishedName")


def _pull_distinguished_names(reader: Reader) -> tuple[bytes, ...]:
    return reader.pull_vector(2, "certificate_authorities", _pull_distinguished_name)


def _distinguished_names(data: bytes) -> tuple[bytes, ...]:
    return tuple(name for _, name in opaque_items(data, 0, 2))


_REQUEST_DECODERS: Final[DecoderTable] = {
    SIGNATURE_ALGORITHMS: ("signature_algorithms", uint16_vector),
    CERTIFICATE_AUTHORITIES: ("certificate_authorities", _distinguished_names),
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


# --- X.509 summaries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class X509Summary:
    """What an event reports of an X.509 certificate, read once from its DER by parsers/x509.py."""

    subject: str  # RFC 4514, unescaped for display
    issuer: str
    subject_common_names: tuple[str, ...]
    issuer_common_names: tuple[str, ...]
    serial_number: str  # upper-case hex, as ECS x509.serial_number
    sha256: str  # upper-case hex of the DER, as ECS hash fields
    sha1: str
    not_before: datetime | None  # timezone-aware UTC; None when unreadable
    not_after: datetime | None
    version: int | None  # 1, 2 or 3, as X.509 counts (the DER says 0, 1 or 2)
    signature_algorithm: str  # Go's crypto/x509 name (ECS's example SHA256-RSA), else the dotted OID
    key_type: str  # rsa, ec, ed25519, ed448, dsa or unknown
    key_bits: int | None
    curve: str | None
    extended_key_usage: tuple[str, ...]
    client_auth: bool | None  # None: no EKU extension, so any purpose
    server_auth_only: bool
    sct_count: int
    self_signed: bool  # by name: subject == issuer
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    san_email: tuple[str, ...]
    # Fields that could not be read even on their own ("subject", "extension 2.5.29.17"); the others are
    # exact. Empty for a well-formed certificate.
    unreadable: tuple[str, ...] = ()
