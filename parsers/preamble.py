"""Find where TLS starts in a TCP byte stream, and name the plaintext protocol that came before it.

TLS is recognised by content, not by port: a ClientHello record has eleven bytes of fixed structure
(record type, version, lengths, handshake type, legacy_version) that plaintext protocols practically
never reproduce, so a bounded scan finds TLS after STARTTLS, SSLRequest and similar preambles. The
handshake part of that structure may be spread over several tiny records (any non-zero record length
is legal), so it is read across record boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

HANDSHAKE_RECORD: Final = 0x16
ALERT_RECORD: Final = 0x15
_CLIENT_HELLO: Final = 1
_SERVER_HELLO: Final = 2
_MAX_FRAGMENT: Final = 16384 + 2048
# The smallest ClientHello body: version, random, empty session id, one suite, one compression method.
_MIN_HELLO_BODY: Final = 2 + 32 + 1 + 4 + 2


# The hello signature is the handshake header and legacy_version: 6 handshake bytes. RFC 8446 5.1 lets a
# sender put them in as many records as it likes (evasion tools use 1-byte records), so they may span
# six record headers.
_SIGNATURE_BYTES: Final = 6
# Longest stretch of stream the hello signature can occupy: six 1-byte records. A caller that rescans a
# growing buffer must go back this far to find a signature that was cut when it last looked.
SIGNATURE_SPAN: Final = _SIGNATURE_BYTES * (5 + 1)


def _handshake_prefix(data: bytes, pos: int) -> bytes | None:
    """The first handshake bytes carried by the handshake records starting at ``pos``, or None.

    Up to :data:`_SIGNATURE_BYTES` bytes are gathered across records of any non-zero length; every record
    must look like a handshake record, else None.
    """
    prefix = b""
    while len(prefix) < _SIGNATURE_BYTES and len(data) - pos >= 5:
        if data[pos] != HANDSHAKE_RECORD or data[pos + 1] != 3 or data[pos + 2] > 4:
            return None
        length = data[pos + 3] << 8 | data[pos + 4]
        if not 1 <= length <= _MAX_FRAGMENT:
            return None
        prefix += data[pos + 5 : pos + 5 + min(length, _SIGNATURE_BYTES - len(prefix))]
        if len(data) < pos + 5 + length:
            break  # a record cut by the end of what has arrived: what it holds so far still counts
        pos += 5 + length
    return prefix


def _is_hello_record_at(data: bytes, pos: int, hello_type: int) -> bool:
    prefix = _handshake_prefix(data, pos)
    if prefix is None or len(prefix) < _SIGNATURE_BYTES or prefix[0] != hello_type:
        return False
    body_length = int.from_bytes(prefix[1:4], "big")
    min_body = _MIN_HELLO_BODY if hello_type == _CLIENT_HELLO else 38
    return body_length >= min_body and prefix[4] == 3 and prefix[5] <= 4


def _is_alert_record_at(data: bytes, pos: int) -> bool:
    return (
        len(data) - pos >= 7
        and data[pos] == ALERT_RECORD
        and data[pos + 1] == 3
        and data[pos + 2] <= 4
        and data[pos + 3] == 0
        and data[pos + 4] == 2
        and data[pos + 5] in (1, 2)
    )


def is_sslv2_client_hello(data: bytes) -> bool:
    """An SSLv2-compatible CLIENT-HELLO (2-byte header, msg type 1, version 3.x or 2.0)."""
    return (
        len(data) >= 5
        and data[0] & 0x80 != 0
        and data[2] == _CLIENT_HELLO
        and ((data[3] == 3 and data[4] <= 4) or (data[3] == 0 and data[4] == 2))
    )


def sslv2_client_hello_undecided(data: bytes) -> bool:
    """Too few bytes to tell, but they begin like an SSLv2-compatible CLIENT-HELLO: decide when more arrive.

    A stream's first TCP segment may hold a single byte. Judging :func:`is_sslv2_client_hello` on it, and
    then never again, would make recognition depend on the sender's segmentation.
    """
    if not data or len(data) >= 5 or not data[0] & 0x80:
        return False
    if len(data) >= 3 and data[2] != _CLIENT_HELLO:
        return False
    return len(data) < 4 or data[3] in (0, 3)


def _scan(data: bytes, start: int, first_byte: int, matches: Callable[[bytes, int], bool]) -> int | None:
    marker = bytes([first_byte, 3])
    pos = data.find(marker, start)
    while pos != -1:
        if matches(data, pos):
            return pos
        pos = data.find(marker, pos + 1)
    return None


def find_client_hello(data: bytes, start: int = 0) -> int | None:
    """Offset of the first ClientHello record header in ``data`` at or after ``start``, or None."""
    return _scan(data, start, HANDSHAKE_RECORD, lambda d, p: _is_hello_record_at(d, p, _CLIENT_HELLO))


def find_server_response(data: bytes, start: int = 0) -> int | None:
    """Offset of the server's first TLS record: a ServerHello, or an alert answering the ClientHello."""
    hello = _scan(data, start, HANDSHAKE_RECORD, lambda d, p: _is_hello_record_at(d, p, _SERVER_HELLO))
    alert = _scan(data, start, ALERT_RECORD, _is_alert_record_at)
    found = [offset for offset in (hello, alert) if offset is not None]
    return min(found) if found else None


# LDAP's StartTLS extended operation carries this OID in the request.
_LDAP_STARTTLS_OID: Final = b"1.3.6.1.4.1.1466.20037"
_POSTGRES_SSL_REQUEST: Final = bytes.fromhex("0000000804d2162f")
_MYSQL_CLIENT_SSL: Final = 0x0800


def _is_mysql_ssl_request(client: bytes, server: bytes) -> bool:
    # Server greeting: 3-byte length, sequence 0, protocol version 10. The client's SSLRequest is a
    # 32-byte packet with sequence 1 and the CLIENT_SSL capability bit.
    if len(server) < 5 or server[3] != 0 or server[4] != 10 or len(client) < 8:
        return False
    length = int.from_bytes(client[0:3], "little")
    capabilities = int.from_bytes(client[4:6], "little")
    return length == 32 and client[3] == 1 and capabilities & _MYSQL_CLIENT_SSL != 0


def classify_preamble(client: bytes, server: bytes) -> str:
    """Name the plaintext protocol that upgraded to TLS, from the bytes each side sent before TLS."""
    if not client and not server:
        return "none"
    if client.startswith(_POSTGRES_SSL_REQUEST):
        return "postgresql"
    if _is_mysql_ssl_request(client, server):
        return "mysql"
    if _LDAP_STARTTLS_OID in client:
        return "ldap"
    upper = client.upper()
    if b"<STARTTLS" in upper:
        return "xmpp"
    if b"AUTH TLS" in upper or b"AUTH SSL" in upper:
        return "ftp"
    if b"STLS" in upper and b"STARTTLS" not in upper:
        return "pop3"
    if b"STARTTLS" in upper:
        if server.startswith(b"220"):
            return "smtp"
        if server.startswith(b"* "):
            return "imap"
        if server.startswith((b"200", b"201")):
            return "nntp"
        return "starttls"
    return "unknown"
