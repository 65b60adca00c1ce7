"""JA3 and JA3S (Salesforce, BSD 3-Clause), matching tshark 4.0's ``tls.handshake.ja3*`` fields.

JA3 is ``legacy_version,ciphers,extensions,groups,point_formats`` and JA3S ``version,cipher,extensions``,
decimal values joined by '-', GREASE values left out, then MD5. The version is the legacy one: a TLS
1.3 hello still says 771. Like tshark, the padding extension counts as an extension.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from parsers.hello import ClientHello, ServerHello
from parsers.registry import is_grease


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
