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

from parsers.hello import ClientHello, ServerHello
from parsers.registry import ALPN, SERVER_NAME, is_grease


def _join(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values if not is_grease(v))


def _md5(text: str) -> str:
    # JA3 is an identifier, not a security use of MD5.
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def ja3_string(hello: ClientHello) -> str | None:
    """The JA3 input string, or None for an SSLv2 hello, which tshark and JA3 do not fingerprint."""
    if hello.sslv2:
        return None
    return ",".join(
        (
            str(hello.legacy_version),
            _join(hello.cipher_suites),
            _join(hello.extension_types),
            _join(hello.supported_groups),
            _join(hello.ec_point_formats),
        )
    )


def ja3(hello: ClientHello) -> str | None:
    text = ja3_string(hello)
    return None if text is None else _md5(text)


def ja3s_string(server_hello: ServerHello) -> str:
    return ",".join(
        (
            str(server_hello.legacy_version),
            str(server_hello.cipher_suite),
            _join(server_hello.extension_types),
        )
    )


def ja3s(server_hello: ServerHello) -> str:
    return _md5(ja3s_string(server_hello))


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
    return [f"{value:04x}" for value in values if not is_grease(value)]


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


def _ja4_parts(hello: ClientHello, transport: str, original_order: bool) -> tuple[str, str, str, bool]:
    """``(a, ciphers, extensions[_sigalgs], has_extensions)``, lists as comma-joined hex, unhashed.

    The sorted form leaves SNI and ALPN out of the extension list because part ``a`` already says
    whether they are present; the original-order form (``_o``) keeps them, as FoxIO's output does.
    ``has_extensions`` is about the list without SNI and ALPN in both forms: when it is empty the
    reference prints the all-zero hash even for ``_o`` (a hello with only an SNI extension).
    """
    if transport not in JA4_TRANSPORTS:
        raise ValueError(f"JA4 transport must be one of t, q, d, not {transport!r}")
    ciphers = _hex4(hello.cipher_suites)
    extensions = _hex4(hello.extension_types)
    prefix = (
        f"{transport}{_JA4_VERSIONS.get(hello.max_version, '00')}"
        f"{'d' if SERVER_NAME in hello.extension_types else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{_alpn_code(hello)}"
    )
    fingerprinted = [ext for ext in extensions if ext not in _JA4_UNSORTED_ONLY]
    if original_order:
        listed = extensions
    else:
        ciphers.sort()
        listed = sorted(fingerprinted)
    extension_text = ",".join(listed)
    sigalgs = _hex4(hello.signature_algorithms)
    if sigalgs and extension_text:
        extension_text += "_" + ",".join(sigalgs)
    return prefix, ",".join(ciphers), extension_text, bool(fingerprinted)


def _ja4(hello: ClientHello, transport: str, original_order: bool, raw: bool) -> str:
    prefix, ciphers, extensions, has_extensions = _ja4_parts(hello, transport, original_order)
    if raw:
        return f"{prefix}_{ciphers}_{extensions}"
    return f"{prefix}_{_sha256_12(ciphers)}_{_sha256_12(extensions) if has_extensions else _JA4_EMPTY}"


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """JA4: sorted lists, hashed. ``transport`` is t (TLS over TCP), q (QUIC) or d (DTLS)."""
    return _ja4(hello, transport, original_order=False, raw=False)


def ja4_r(hello: ClientHello, transport: str = "t") -> str:
    """JA4_r: the sorted lists in clear, for looking at what a JA4 hash stands for."""
    return _ja4(hello, transport, original_order=False, raw=True)


def ja4_o(hello: ClientHello, transport: str = "t") -> str:
    """JA4_o: lists in wire order, hashed; tells apart clients that only reorder extensions."""
    return _ja4(hello, transport, original_order=True, raw=False)


def ja4_ro(hello: ClientHello, transport: str = "t") -> str:
    return _ja4(hello, transport, original_order=True, raw=True)
