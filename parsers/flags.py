"""The tls_flags extension (draft-ietf-tls-tlsflags): registry, decoder and encoder.

The sensor classifies malformed encodings instead of rejecting them, because a passive observer must
still report what the client meant to say and how it said it wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Codepoint 62 is the draft's (BoringSSL, Zeek); 0xFE01 is the experimental one on the wire from
# Cloudflare's Go fork and its request-mTLS demo.
TLS_FLAGS_CODEPOINTS: Final = frozenset({62, 0xFE01})

REQUEST_MTLS: Final = 80

# One line per known flag.
FLAG_NAMES: Final[dict[int, str]] = {
    8: "resumption_across_names",
    REQUEST_MTLS: "request_mtls",
}

MAX_FLAG: Final = 2039

# Malformation classes, from the most to the least severe.
EMPTY: Final = "empty"
LENGTH_MISMATCH: Final = "length_mismatch"
TRAILING_DATA: Final = "trailing_data"
NONMINIMAL: Final = "nonminimal"


@dataclass(frozen=True, slots=True)
class TlsFlags:
    """A decoded tls_flags extension: which flags are set and how the encoding deviates, if at all."""

    codepoint: int
    flags: tuple[int, ...]
    malformations: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(FLAG_NAMES.get(flag, f"unknown_{flag}") for flag in self.flags)

    @property
    def request_mtls(self) -> bool:
        return REQUEST_MTLS in self.flags


def decode_tls_flags(codepoint: int, data: bytes) -> TlsFlags:
    """Decode extension_data (``uint8 length`` + ``flags<1..255>``); never raises.

    Flags are read from whatever bytes the length covers (clamped to what is present), so a sloppy
    encoder's intent is still visible next to the malformation that names its mistake.
    """
    malformations: list[str] = []
    if not data or data[0] == 0:
        malformations.append(EMPTY)
        if len(data) > 1:
            malformations.append(TRAILING_DATA)
        return TlsFlags(codepoint, (), tuple(malformations))
    declared = data[0]
    vector = data[1 : 1 + declared]
    if len(vector) < declared:
        malformations.append(LENGTH_MISMATCH)
    elif len(data) > 1 + declared:
        malformations.append(TRAILING_DATA)
    if vector and vector[-1] == 0:
        malformations.append(NONMINIMAL)
    flags = tuple(
        byte_index * 8 + bit for byte_index, byte in enumerate(vector) if byte for bit in range(8) if byte >> bit & 1
    )
    return TlsFlags(codepoint, flags, tuple(malformations))


def encode_tls_flags(flags: set[int] | frozenset[int] | tuple[int, ...]) -> bytes:
    """Minimal extension_data for a set of flags (used to build test clients)."""
    if not flags:
        raise ValueError("tls_flags with no flag set must be omitted, not encoded")
    if min(flags) < 0 or max(flags) > MAX_FLAG:
        raise ValueError(f"flags must be within 0..{MAX_FLAG}")
    vector = bytearray(max(flags) // 8 + 1)
    for flag in flags:
        vector[flag // 8] |= 1 << (flag % 8)
    return bytes([len(vector)]) + bytes(vector)
