"""EncryptedExtensions and NewSessionTicket parsing: real decrypted bytes and malformed input."""

from __future__ import annotations

import contextlib

from helloscope.parsers.errors import ParseError
from helloscope.parsers.flags import encode_tls_flags
from helloscope.parsers.tickets import parse_encrypted_extensions, parse_new_session_ticket
from hypothesis import given
from hypothesis import strategies as st

from tests.parsers.test_decrypt import RFC8448_ENCRYPTED_EXTENSIONS


def test_rfc8448_encrypted_extensions():
    # RFC 8448 §3: the server's EncryptedExtensions (supported_groups, record_size_limit, server_name).
    parsed = parse_encrypted_extensions(RFC8448_ENCRYPTED_EXTENSIONS[4:])
    assert [extension.type for extension in parsed.extensions] == [10, 28, 0]
    assert parsed.alpn is None and parsed.tls_flags is None


def _ticket(extensions: bytes) -> bytes:
    return (
        (300).to_bytes(4, "big")
        + bytes(4)
        + b"\x01\x00"
        + (3).to_bytes(2, "big")
        + b"abc"
        + len(extensions).to_bytes(2, "big")
        + extensions
    )


def test_ticket_flags_are_read():
    flags = encode_tls_flags({8})
    extension = (62).to_bytes(2, "big") + len(flags).to_bytes(2, "big") + flags
    ticket = parse_new_session_ticket(_ticket(extension))
    assert ticket.lifetime == 300 and ticket.ticket_length == 3
    assert ticket.tls_flags is not None and ticket.tls_flags.names == ("resumption_across_names",)


@given(st.binary(max_size=200))
def test_only_parse_errors_escape(data: bytes):
    for parse in (parse_encrypted_extensions, parse_new_session_ticket):
        with contextlib.suppress(ParseError):
            parse(data)
