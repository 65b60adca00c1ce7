"""TLS 1.3 messages that only decryption shows: EncryptedExtensions and NewSessionTicket (RFC 8446 4.3.1, 4.6.1)."""

from __future__ import annotations

from dataclasses import dataclass

from helloscope.parsers.buffer import Reader
from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import TlsFlags
from helloscope.parsers.hello import TLS_FLAGS_DECODERS, Extension, decode_extensions, pull_extensions, selected_alpn


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    """A server's EncryptedExtensions: the extensions TLS 1.3 moved out of the ServerHello."""

    extensions: tuple[Extension, ...]
    alpn: bytes | None  # the protocol the server selected
    tls_flags: TlsFlags | None
    anomalies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    """A NewSessionTicket, without the ticket itself: its lifetime, size and extensions."""

    lifetime: int
    ticket_length: int
    extensions: tuple[Extension, ...]
    tls_flags: TlsFlags | None  # e.g. flag 8, resumption_across_names
    anomalies: tuple[str, ...]


def parse_encrypted_extensions(body: bytes) -> EncryptedExtensions:
    reader = Reader(body)
    extensions = pull_extensions(reader)
    _check_end(reader)
    values, anomalies = decode_extensions(extensions, TLS_FLAGS_DECODERS)
    return EncryptedExtensions(extensions, selected_alpn(extensions), values.get("tls_flags"), tuple(anomalies))


def parse_new_session_ticket(body: bytes) -> NewSessionTicket:
    reader = Reader(body)
    lifetime = reader.pull_uint32("ticket_lifetime")
    reader.pull_uint32("ticket_age_add")
    reader.pull_opaque(1, "ticket_nonce")
    ticket = reader.pull_opaque(2, "ticket")
    extensions = pull_extensions(reader)
    _check_end(reader)
    values, anomalies = decode_extensions(extensions, TLS_FLAGS_DECODERS)
    return NewSessionTicket(lifetime, len(ticket), extensions, values.get("tls_flags"), tuple(anomalies))


def _check_end(reader: Reader) -> None:
    if not reader.eof():
        raise ParseError(f"{reader.remaining} bytes after the message", reader.position)
