"""X.509 summaries of the certificates TLS carries: :func:`summarize_x509` and :func:`name_to_text`.

X.509 itself is read by ``cryptography``; this module turns its objects into a flat, frozen
:class:`~helloscope.parsers.certs.X509Summary` and its many exception types into :class:`ParseError`,
and reads from the DER what ``cryptography`` refuses. Imported where a certificate is met, not before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helloscope.parsers.certs import X509Summary
from helloscope.parsers.errors import ParseError

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


def summarize_x509(der: bytes) -> X509Summary:
    """Summarize one DER certificate; one that cannot be read even around its bad fields raises ParseError.

    One bad field must not hide the rest. cryptography refuses a whole certificate for an invalid
    PrintableString (``*`` and ``_`` are common in real ones), an invalid time or a serial number it
    dislikes, and a whole Name or extension list for one bad value, so: a certificate that does not load
    is loaded again with its names emptied and a placeholder serial number and validity (names, serial
    number, validity, version and signature algorithm are then read from the DER here, names attribute
    by attribute), a name that does not read is read attribute by attribute, an extension list that does
    not read is read one extension at a time, and when not even the copy loads, what the DER itself shows
    is still summarised. ``unreadable`` lists what could still not be read. cryptography reports bad DER
    as ValueError, but its lazy accessors raise whatever they meet on hostile input (DuplicateExtension,
    UnsupportedGeneralNameType, even KeyError for a string tag it has no type for), hence the broad
    catches; only reads of cryptography objects run under them.
    """
    unreadable: list[str] = []
    try:
        loaded = _load(der)
    except Exception as exc:
        raise ParseError(f"unreadable X.509 certificate: {exc!r}", 0) from exc
    cert, tbs = loaded.cert, loaded.tbs
    as_loaded = cert if loaded.whole else None
    serial, not_before, not_after = _serial_and_validity(as_loaded, tbs, unreadable)
    subject_text, subject_names = _name(as_loaded, "subject", tbs.subject if tbs else None, unreadable)
    issuer_text, issuer_names = _name(as_loaded, "issuer", tbs.issuer if tbs else None, unreadable)
    try:
        self_signed = as_loaded.subject == as_loaded.issuer if as_loaded else bool(tbs and tbs.subject == tbs.issuer)
    except Exception:
        self_signed = bool(tbs and tbs.subject == tbs.issuer)
    key_type, key_bits, curve = "unknown", None, None
    try:
        if cert is not None:
            key_type, key_bits, curve = _key_summary(cert)
        else:
            unreadable.append("public_key")
    except Exception:
        unreadable.append("public_key")
    values = _extension_values(cert, loaded.der, tbs, unreadable) if cert is not None else {}
    if cert is None:
        unreadable.append("extensions")
    eku = values.get(x509.ExtendedKeyUsage)
    eku_oids = list(eku) if isinstance(eku, x509.ExtendedKeyUsage) else []
    san_dns: list[str] = []
    san_ip: list[str] = []
    san_email: list[str] = []
    san = values.get(x509.SubjectAlternativeName)
    if isinstance(san, x509.SubjectAlternativeName):
        try:
            san_dns = san.get_values_for_type(x509.DNSName)
            san_ip = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
            san_email = san.get_values_for_type(x509.RFC822Name)
        except Exception:
            unreadable.append("san")
    scts = values.get(x509.PrecertificateSignedCertificateTimestamps)
    sct_count = len(scts) if isinstance(scts, x509.PrecertificateSignedCertificateTimestamps) else 0
    return X509Summary(
        subject=subject_text,
        issuer=issuer_text,
        subject_common_names=subject_names,
        issuer_common_names=issuer_names,
        serial_number=serial,
        sha256=hashlib.sha256(der).hexdigest().upper(),
        sha1=hashlib.sha1(der).hexdigest().upper(),
        not_before=not_before,
        not_after=not_after,
        version=_version(cert, tbs, unreadable),
        signature_algorithm=_signature_algorithm(cert, tbs, unreadable),
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        extended_key_usage=tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku_oids),
        client_auth=None if eku is None else not _CLIENT_AUTH_PURPOSES.isdisjoint(eku_oids),
        server_auth_only=eku_oids == [ExtendedKeyUsageOID.SERVER_AUTH],
        sct_count=sct_count,
        self_signed=self_signed,
        san_dns=tuple(san_dns),
        san_ip=tuple(san_ip),
        san_email=tuple(san_email),
        unreadable=tuple(unreadable),
    )


# --- reading around one bad field -----------------------------------------------------------------
# The fallbacks find the pieces in the DER themselves and hand each piece back to cryptography alone (a
# name attribute as the issuer of a CRL shell, see name_to_text; an extension in a copy of the
# certificate that carries only it), so whatever cryptography can read is read exactly as before. The
# copies' signatures no longer match; nothing here verifies signatures, the copies only feed the parser.

_EXTENSIONS_TAG: Final = 0xA3
_VERSION_TAG: Final = 0xA0
_EMPTY_NAME: Final = b"\x30\x00"
# A certificate with more extensions than this is not worth one reload per extension.
_MAX_SALVAGED_EXTENSIONS: Final = 64


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at ``pos``; ValueError if it does not fit."""
    if pos + 2 > len(data):
        raise ValueError("DER element cut short")
    tag, first = data[pos], data[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if not 1 <= size <= 4 or start + size > len(data):
            raise ValueError("DER length invalid")
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    if start + length > len(data):
        raise ValueError("DER element longer than its container")
    return tag, start, start + length


def _der_children(data: bytes, start: int, end: int) -> list[bytes]:
    """Each whole element (header included) in ``data[start:end]``."""
    children = []
    pos = start
    while pos < end:
        _, _, stop = _der_element(data, pos)
        if stop > end:
            raise ValueError("DER element crosses its container")
        children.append(data[pos:stop])
        pos = stop
    return children


def _contents(element: bytes) -> list[bytes]:
    """The elements inside a constructed element."""
    _, start, end = _der_element(element, 0)
    return _der_children(element, start, end)


@dataclass(frozen=True, slots=True)
class _Tbs:
    """A certificate cut into its parts: the TBSCertificate's elements, then signature algorithm and value."""

    elements: tuple[bytes, ...]  # of the TBSCertificate, DER
    trailer: bytes  # signatureAlgorithm and signatureValue, DER
    issuer_at: int
    extensions_at: int | None

    @staticmethod
    def of(der: bytes) -> _Tbs:
        """ValueError when the outer structure is not a certificate's."""
        tbs, *rest = _contents(der)
        elements = tuple(_contents(tbs))
        issuer_at = 3 if elements and elements[0][0] == _VERSION_TAG else 2  # [0] version is optional
        if len(elements) < issuer_at + 4:
            raise ValueError("TBSCertificate too short")
        at = next((index for index, element in enumerate(elements) if element[0] == _EXTENSIONS_TAG), None)
        return _Tbs(elements, b"".join(rest), issuer_at, at)

    @property
    def issuer(self) -> bytes:
        return self.elements[self.issuer_at]

    @property
    def subject(self) -> bytes:
        return self.elements[self.issuer_at + 2]  # after validity

    @property
    def serial_number(self) -> bytes:
        return self.elements[self.issuer_at - 2]

    @property
    def signature(self) -> bytes:
        return self.elements[self.issuer_at - 1]

    @property
    def validity(self) -> bytes:
        return self.elements[self.issuer_at + 1]

    @property
    def version(self) -> int:
        """As X.509 counts: v1 when the [0] element is absent."""
        if self.issuer_at == 2:
            return 1
        (number,) = _contents(self.elements[0])
        return _integer(number) + 1

    def certificate_shaped(self) -> bool:
        """Whether the parts have the types a certificate's have: what the DER is read as when nothing loads."""
        at = self.issuer_at
        return self.serial_number[0] == _INTEGER and all(
            self.elements[index][0] == _SEQUENCE for index in range(at - 1, at + 4)
        )

    @property
    def extensions(self) -> tuple[bytes, ...]:
        if self.extensions_at is None:
            return ()
        try:
            (sequence,) = _contents(self.elements[self.extensions_at])
            return tuple(_contents(sequence))
        except ValueError:
            return ()

    def copy(self, replace: dict[int, bytes]) -> bytes:
        """The certificate with some TBSCertificate elements replaced."""
        elements = b"".join(replace.get(index, element) for index, element in enumerate(self.elements))
        return _der(_SEQUENCE, _der(_SEQUENCE, elements) + self.trailer)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A certificate as cryptography loaded it, and how much of it is the original."""

    cert: x509.Certificate | None  # None: not even the copy loaded
    tbs: _Tbs | None  # None only where cryptography reads what the walker here does not
    der: bytes  # what loaded: the certificate, or its copy
    whole: bool  # the certificate itself loaded: its names, serial number and validity are cryptography's


def _load(der: bytes) -> _Loaded:
    """The certificate as cryptography loads it, or its copy with the fields it refuses set aside."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        tbs = _Tbs.of(der)  # ValueError: not even the outer structure; the caller reports the first error
        at = tbs.issuer_at
        copy = tbs.copy(
            {at - 2: _PLACEHOLDER_SERIAL, at: _EMPTY_NAME, at + 1: _PLACEHOLDER_VALIDITY, at + 2: _EMPTY_NAME}
        )
        try:
            return _Loaded(x509.load_der_x509_certificate(copy), tbs, copy, whole=False)
        except ValueError:
            if not tbs.certificate_shaped():
                raise
            return _Loaded(None, tbs, der, whole=False)
    try:
        return _Loaded(cert, _Tbs.of(der), der, whole=True)
    except ValueError:
        return _Loaded(cert, None, der, whole=True)  # cryptography reads what this walker does not


def _serial_and_validity(
    cert: x509.Certificate | None, tbs: _Tbs | None, unreadable: list[str]
) -> tuple[str, datetime | None, datetime | None]:
    """Serial number as upper-case hex, and validity: cryptography's when it read them, else the DER's."""
    if cert is not None:
        try:
            return format(cert.serial_number, "X"), cert.not_valid_before_utc, cert.not_valid_after_utc
        except Exception:
            pass
    serial = ""
    try:
        serial = format(_integer(tbs.serial_number) if tbs else None, "X")
    except (ValueError, TypeError):
        unreadable.append("serial_number")
    try:
        times = _contents(tbs.validity) if tbs else []
    except ValueError:
        times = []
    validity: list[datetime | None] = []
    for index, what in enumerate(("not_before", "not_after")):
        try:
            validity.append(_time(times[index]))
        except (ValueError, IndexError):
            validity.append(None)
            unreadable.append(what)
    return serial, validity[0], validity[1]


def _version(cert: x509.Certificate | None, tbs: _Tbs | None, unreadable: list[str]) -> int | None:
    try:
        return tbs.version if tbs is not None else cert.version.value + 1 if cert is not None else None
    except Exception:  # a version cryptography does not know (InvalidVersion), or bad DER
        unreadable.append("version")
        return None


def _signature_algorithm(cert: x509.Certificate | None, tbs: _Tbs | None, unreadable: list[str]) -> str:
    try:
        if tbs is not None:
            dotted = _oid_dotted(_contents(tbs.signature)[0])
        else:
            assert cert is not None  # _load gives one or the other
            dotted = cert.signature_algorithm_oid.dotted_string
    except Exception:
        unreadable.append("signature_algorithm")
        return ""
    return _SIGNATURE_ALGORITHMS.get(dotted, dotted)


# Go's crypto/x509 SignatureAlgorithm names, which Beats writes and ECS shows (x509.signature_algorithm).
_SIGNATURE_ALGORITHMS: Final = {
    "1.2.840.113549.1.1.4": "MD5-RSA",
    "1.2.840.113549.1.1.5": "SHA1-RSA",
    "1.2.840.113549.1.1.11": "SHA256-RSA",
    "1.2.840.113549.1.1.12": "SHA384-RSA",
    "1.2.840.113549.1.1.13": "SHA512-RSA",
    "1.2.840.10040.4.3": "DSA-SHA1",
    "2.16.840.1.101.3.4.3.2": "DSA-SHA256",
    "1.2.840.10045.4.1": "ECDSA-SHA1",
    "1.2.840.10045.4.3.2": "ECDSA-SHA256",
    "1.2.840.10045.4.3.3": "ECDSA-SHA384",
    "1.2.840.10045.4.3.4": "ECDSA-SHA512",
    "1.3.101.112": "Ed25519",
}

_INTEGER: Final = 0x02
_UTC_TIME: Final = 0x17
# The forms BER allows and DER does not (no seconds, an offset instead of Z, fractions) are read too:
# they are what makes cryptography refuse a validity.
_TIMES: Final = {
    _UTC_TIME: re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(Z|[+-]\d{4})"),
    0x18: re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:[.,]\d+)?(Z|[+-]\d{4})?"),
}


def _integer(element: bytes) -> int:
    tag, start, end = _der_element(element, 0)
    if tag != _INTEGER or start == end:
        raise ValueError("not an INTEGER")
    return int.from_bytes(element[start:end], "big", signed=True)


def _time(element: bytes) -> datetime:
    """A UTCTime or GeneralizedTime, in UTC; ValueError when it is neither."""
    tag, start, end = _der_element(element, 0)
    pattern = _TIMES.get(tag)
    match = pattern.fullmatch(element[start:end]) if pattern else None
    if match is None:
        raise ValueError("not a time")
    year, month, day, hour, minute, second, zone = match.groups()
    number = int(year)
    if tag == _UTC_TIME:
        number += 1900 if number >= 50 else 2000  # RFC 5280 4.1.2.5.1
    moment = datetime(number, int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC)
    if zone in (None, b"Z"):
        return moment
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return moment - offset if zone[:1] == b"+" else moment + offset


def _name(
    cert: x509.Certificate | None, what: str, der_name: bytes | None, unreadable: list[str]
) -> tuple[str, tuple[str, ...]]:
    """A name's RFC 4514 text and common names: cryptography's, else read attribute by attribute."""
    if cert is not None:
        try:
            return _described(getattr(cert, what))
        except Exception:
            pass
    text, common_names, complete = _salvaged_name(der_name) if der_name is not None else ("", (), False)
    if not complete:
        unreadable.append(what)
    return text, common_names


def _described(name: x509.Name) -> tuple[str, tuple[str, ...]]:
    common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return name.rfc4514_string(), tuple(cn.value for cn in common_names if isinstance(cn.value, str))


def _salvaged_name(der_name: bytes) -> tuple[str, tuple[str, ...], bool]:
    """RFC 4514 text and common names of a Name read attribute by attribute, and whether all could be read.

    A value that cannot be read is written as RFC 4514 2.4 writes a value with no string form: ``#`` and
    the hex of its BER encoding.
    """
    try:
        rdns = _contents(der_name)
    except ValueError:
        return "", (), False
    texts = []
    common_names: list[str] = []
    complete = True
    for rdn in rdns:
        try:
            attributes = _contents(rdn)
        except ValueError:
            complete = False
            continue
        parts = []
        for attribute in attributes:
            try:
                text, names = _described(_read_name(_der(_SEQUENCE, _der(_SET, attribute))))
            except Exception:
                text, names = _raw_attribute(attribute)
                complete = False
            parts.append(text)
            common_names.extend(names)
        texts.append("+".join(parts))
    return ",".join(reversed(texts)), tuple(common_names), complete  # RFC 4514: the most specific RDN first


# PrintableString, IA5String, VisibleString: a value of printable ASCII outside the type's alphabet (a
# "*" or "_" in a PrintableString, as in many real certificates) still reads as the text it plainly is.
_ASCII_STRINGS: Final = frozenset({0x13, 0x16, 0x1A})
_RFC4514_SPECIAL: Final = frozenset('"+,;<>\\')


def _raw_attribute(attribute: bytes) -> tuple[str, tuple[str, ...]]:
    """An attribute cryptography refused: its RFC 4514 text, and its value if it is a common name that reads."""
    try:
        oid, value = _contents(attribute)[:2]
        tag, start, end = _der_element(value, 0)
        name = _SHORT_NAMES.get(_oid_dotted(oid), _oid_dotted(oid))
    except (ValueError, IndexError):
        return "#" + attribute.hex(), ()
    raw = value[start:end]
    if tag in _ASCII_STRINGS and raw and all(0x20 <= byte < 0x7F for byte in raw):
        plain = raw.decode("ascii")
        return f"{name}={_rfc4514_escape(plain)}", (plain,) if name == "CN" else ()
    return f"{name}=#{value.hex()}", ()


def _rfc4514_escape(text: str) -> str:
    escaped = "".join("\\" + char if char in _RFC4514_SPECIAL else char for char in text)
    if escaped[0] in "# ":
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


_SHORT_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
}


def _oid_dotted(element: bytes) -> str:
    """An OBJECT IDENTIFIER in its dotted form."""
    tag, start, end = _der_element(element, 0)
    if tag != 0x06 or start == end or element[end - 1] & 0x80:
        raise ValueError("not an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in element[start:end]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def _extension_values(
    cert: x509.Certificate, der: bytes, tbs: _Tbs | None, unreadable: list[str]
) -> dict[type[x509.ExtensionType], x509.ExtensionType]:
    """Extension values by class; when the list as a whole is unreadable, each extension on its own."""
    try:
        return {type(extension.value): extension.value for extension in cert.extensions}
    except Exception:
        pass
    values: dict[type[x509.ExtensionType], x509.ExtensionType] = {}
    extensions = tbs.extensions if tbs is not None else ()
    if tbs is None or tbs.extensions_at is None or not extensions or len(extensions) > _MAX_SALVAGED_EXTENSIONS:
        unreadable.append("extensions")
        return values
    loaded = _Tbs.of(der)  # the DER that loaded: its names are readable, or emptied
    for extension in extensions:
        try:
            copy = loaded.copy({tbs.extensions_at: _der(_EXTENSIONS_TAG, _der(_SEQUENCE, extension))})
            (value,) = x509.load_der_x509_certificate(copy).extensions
            values[type(value.value)] = value.value
        except Exception:
            unreadable.append(f"extension {_extension_oid(extension)}")
    return values


def _extension_oid(extension: bytes) -> str:
    try:
        return _oid_dotted(_contents(extension)[0])
    except (ValueError, IndexError):
        return "?"


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
_SET = 0x31
_CRL_SIGNATURE = _der(_SEQUENCE, _der(0x06, bytes.fromhex("2a864886f70d01010b")))  # sha256WithRSAEncryption
_CRL_THIS_UPDATE = _der(0x17, b"700101000000Z")
_CRL_EMPTY_SIGNATURE = _der(0x03, b"\x00")
# What a copy of a certificate carries instead of a serial number or validity cryptography refuses.
_PLACEHOLDER_SERIAL = _der(_INTEGER, b"\x01")
_PLACEHOLDER_VALIDITY = _der(_SEQUENCE, _CRL_THIS_UPDATE + _CRL_THIS_UPDATE)


def _read_name(der_name: bytes) -> x509.Name:
    """A DER Name as cryptography reads it; ParseError when it does not, or when bytes follow it."""
    tbs = _der(_SEQUENCE, _CRL_SIGNATURE + der_name + _CRL_THIS_UPDATE)
    try:
        issuer = x509.load_der_x509_crl(_der(_SEQUENCE, tbs + _CRL_SIGNATURE + _CRL_EMPTY_SIGNATURE)).issuer
        encoded = issuer.public_bytes()
    except Exception as exc:  # as in summarize_x509
        raise ParseError(f"unreadable DistinguishedName: {exc!r}", 0) from exc
    # Re-encoding must give the input back, or bytes after the Name were read as CRL fields.
    if encoded != der_name:
        raise ParseError("bytes after the DistinguishedName", 0)
    return issuer


def name_to_text(der_name: bytes) -> str:
    """A DER DistinguishedName (a CertificateRequest CA entry) as an RFC 4514 string."""
    name = _read_name(der_name)
    try:
        return name.rfc4514_string()
    except Exception as exc:  # as in summarize_x509
        raise ParseError(f"unreadable DistinguishedName: {exc!r}", 0) from exc
