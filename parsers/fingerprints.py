"""Client fingerprints: JA3/JA3S (Salesforce, BSD 3-Clause) and JA4 (FoxIO, BSD 3-Clause).

JA3 is ``legacy_version,ciphers,extensions,groups,point_formats`` and JA3S ``version,cipher,extensions``,
decimal values joined by '-', GREASE values left out, then MD5. The version is the legacy one: a TLS
1.3 hello still says 771. Like tshark, the padding extension counts as an extension.

JA4 follows FoxIO's ``technical_details/JA4.md``: ``a_b_c`` where ``a`` describes the hello in ten
characters, ``b`` hashes the cipher suites and ``c`` the extensions plus signature algorithms, GREASE
ignored everywhere. The rest of "JA4+" (JA4S, JA4X, JA4H...) is under the non-OSI FoxIO License and is
deliberately not implemented here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final, NamedTuple

from helloscope.parsers.hello import ClientHello, ServerHello
from helloscope.parsers.registry import ALPN, SERVER_NAME

# RFC 8701: 0x?A?A with both bytes equal. A set look-up is what makes the per-value filter cheap.
_GREASE: Final = frozenset(0x0A0A + 0x1010 * i for i in range(16))

# Each fingerprint is a function of its hello's *shape*: the fields it reads (``ja3_shape`` ...), not
# randoms, session ids or key shares. ``ja3_of_shape`` and its siblings compute from a shape, so a caller
# that meets the same shapes over and over can keep what they give (sniffer.handshake.finish does).


def _join(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values if v not in _GREASE)


def _md5(text: str) -> str:
    # JA3 is an identifier, not a security use of MD5.
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def ja3_string(hello: ClientHello) -> str | None:
    """The JA3 input string, or None for an SSLv2 hello, which tshark and JA3 do not fingerprint."""
    return None if hello.sslv2 else ja3_of_shape(*ja3_shape(hello))[0]


def ja3(hello: ClientHello) -> str | None:
    return None if hello.sslv2 else ja3_of_shape(*ja3_shape(hello))[1]


Ja3Shape = tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def ja3_shape(hello: ClientHello) -> Ja3Shape:
    """What JA3 reads of a hello (not an SSLv2 one)."""
    return (
        hello.legacy_version,
        hello.cipher_suites,
        hello.extension_types,
        hello.supported_groups,
        hello.ec_point_formats,
    )


def ja3_of_shape(legacy_version: int, *lists: tuple[int, ...]) -> tuple[str, str]:
    """The JA3 string and its hash, for a :func:`ja3_shape`."""
    text = ",".join((str(legacy_version), *map(_join, lists)))
    return text, _md5(text)


def ja3s_string(server_hello: ServerHello) -> str:
    return ja3s_of_shape(*ja3s_shape(server_hello))[0]


def ja3s(server_hello: ServerHello) -> str:
    return ja3s_of_shape(*ja3s_shape(server_hello))[1]


def ja3s_shape(server_hello: ServerHello) -> tuple[int, int, tuple[int, ...]]:
    """What JA3S reads of a ServerHello."""
    return server_hello.legacy_version, server_hello.cipher_suite, server_hello.extension_types


def ja3s_of_shape(legacy_version: int, cipher_suite: int, extension_types: tuple[int, ...]) -> tuple[str, str]:
    """The JA3S string and its hash, for a :func:`ja3s_shape`."""
    text = ",".join((str(legacy_version), str(cipher_suite), _join(extension_types)))
    return text, _md5(text)


# --- JA4 ------------------------------------------------------------------------------------------

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
# The hash part of a JA4 whose list is empty (JA4.md: "000000000000", not the hash of "").
_JA4_EMPTY = "0" * 12
JA4_TRANSPORTS = frozenset({"t", "q", "d"})  # TCP, QUIC, DTLS
# Part ``a`` already tells whether SNI and ALPN are present, so the sorted list leaves them out.
_JA4_UNSORTED_ONLY = frozenset({f"{SERVER_NAME:04x}", f"{ALPN:04x}"})


def _hex4(values: Iterable[int]) -> list[str]:
    return [f"{value:04x}" for value in values if value not in _GREASE]


def _sha256_12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else _JA4_EMPTY


def _alpn_code(hello: ClientHello) -> str:
    """First and last character of the first ALPN value, "00" without one.

    ALPN values are opaque bytes. When either end is not ASCII alphanumeric the spec takes the hex
    form's ends instead (high nibble of the first byte, low nibble of the last). A value that starts
    with a non-ASCII byte is "99" in FoxIO's reference output (their tls-non-ascii-alpn golden), and
    matching the reference is what makes the fingerprint comparable with JA4 databases.
    """
    first = hello.alpn[0] if hello.alpn else b""
    if not first:
        return "00"
    if first[0] > 0x7F:
        return "99"
    head, tail = first[:1], first[-1:]
    if head.isalnum() and tail.isalnum() and tail.isascii():
        return (head + tail).decode("ascii")
    return f"{first[0]:02x}"[0] + f"{first[-1]:02x}"[1]


class Ja4(NamedTuple):
    """The four JA4 forms of one hello: hashed or raw (``_r``), sorted or original order (``_o``)."""

    ja4: str
    ja4_r: str
    ja4_o: str
    ja4_ro: str


def ja4_variants(hello: ClientHello, transport: str = "t") -> Ja4:
    """All four JA4 forms from one pass over the hello (an event shows all four).

    The sorted form leaves SNI and ALPN out of the extension list because part ``a`` already says
    whether they are present; the original-order form (``_o``) keeps them, as FoxIO's output does.
    When the list without SNI and ALPN is empty, the reference prints the all-zero hash even for
    ``_o`` (a hello with only an SNI extension).
    """
    return ja4_of_shape(*ja4_shape(hello, transport))


Ja4Shape = tuple[str, int, tuple[int, ...], tuple[int, ...], tuple[int, ...], str]


def ja4_shape(hello: ClientHello, transport: str = "t") -> Ja4Shape:
    """What JA4 reads of a hello, ``transport`` first (t, q or d)."""
    if transport not in JA4_TRANSPORTS:
        raise ValueError(f"JA4 transport must be one of t, q, d, not {transport!r}")
    return (
        transport,
        hello.max_version,
        hello.cipher_suites,
        hello.extension_types,
        hello.signature_algorithms,
        _alpn_code(hello),
    )


def ja4_of_shape(
    transport: str,
    max_version: int,
    cipher_suites: tuple[int, ...],
    extension_types: tuple[int, ...],
    signature_algorithms: tuple[int, ...],
    alpn_code: str,
) -> Ja4:
    """The four JA4 forms, for a :func:`ja4_shape`."""
    ciphers = _hex4(cipher_suites)
    extensions = _hex4(extension_types)
    prefix = (
        f"{transport}{_JA4_VERSIONS.get(max_version, '00')}"
        f"{'d' if SERVER_NAME in extension_types else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{alpn_code}"
    )
    fingerprinted = [ext for ext in extensions if ext not in _JA4_UNSORTED_ONLY]
    sigalgs = ",".join(_hex4(signature_algorithms))

    def with_sigalgs(listed: list[str]) -> str:
        text = ",".join(listed)
        return f"{text}_{sigalgs}" if sigalgs and text else text

    def hashed(ciphers_text: str, extension_text: str) -> str:
        extension_hash = _sha256_12(extension_text) if fingerprinted else _JA4_EMPTY
        return f"{prefix}_{_sha256_12(ciphers_text)}_{extension_hash}"

    sorted_ciphers, sorted_extensions = ",".join(sorted(ciphers)), with_sigalgs(sorted(fingerprinted))
    wire_ciphers, wire_extensions = ",".join(ciphers), with_sigalgs(extensions)
    return Ja4(
        ja4=hashed(sorted_ciphers, sorted_extensions),
        ja4_r=f"{prefix}_{sorted_ciphers}_{sorted_extensions}",
        ja4_o=hashed(wire_ciphers, wire_extensions),
        ja4_ro=f"{prefix}_{wire_ciphers}_{wire_extensions}",
    )


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """JA4: sorted lists, hashed. ``transport`` is t (TLS over TCP), q (QUIC) or d (DTLS)."""
    return ja4_variants(hello, transport).ja4


def ja4_r(hello: ClientHello, transport: str = "t") -> str:
    """JA4_r: the sorted lists in clear, for looking at what a JA4 hash stands for."""
    return ja4_variants(hello, transport).ja4_r


def ja4_o(hello: ClientHello, transport: str = "t") -> str:
    """JA4_o: lists in wire order, hashed; tells apart clients that only reorder extensions."""
    return ja4_variants(hello, transport).ja4_o


def ja4_ro(hello: ClientHello, transport: str = "t") -> str:
    return ja4_variants(hello, transport).ja4_ro
