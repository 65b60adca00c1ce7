"""RFC 5424 syslog: one event per message, over UDP (one datagram each) or TCP/TLS (RFC 6587 octet counting).

MSG is the event's JSON without a UTF-8 BOM. RFC 5424 allows MSG-ANY, JSON is UTF-8 by definition
(RFC 8259), and a BOM in front of it breaks the JSON parsers SIEMs apply to MSG (rsyslog's mmjsonparse,
Logstash's json codec). PRI is facility local0, severity informational.

What "delivered" means here: for TCP and TLS, the kernel accepted the bytes (``sendall`` returned). A
connection the receiver closed is noticed before the next send and reopened, but bytes the kernel took just
before the receiver died can still be lost; syslog has no application acknowledgement (RELP would).
UDP has no delivery signal at all: a datagram sent counts as delivered. A message too large for any
datagram (over 65,507 bytes on IPv4) is refused for good and counted in ``events_rejected``. Receivers have
their own ceiling too (rsyslog's ``maxMessageSize``, 8 KiB by default), beyond which they truncate.

A receiver may accept a connection and drop it at once: rsyslog does so after a TLS handshake when it
does not like the client's certificate (or its absence), and a TLS 1.3 server's verdict on the client
certificate only arrives after the client's handshake is over. Messages sent on such a connection would be
lost, again on every reconnection, so a new connection is given a moment to be dropped before it is used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from helloscope.sniffer.outputs.delivery import DeliveryError, Sent

_PRI = 16 * 8 + 6  # local0.info
_CONNECT_SECONDS = 5.0
_SEND_SECONDS = 30.0
_SETTLE_SECONDS = 0.25  # how long a new connection may take to be refused after the handshake


def _header_text(value: str, limit: int) -> str:
    """A header field as RFC 5424 PRINTUSASCII (no spaces), or the nil value."""
    cleaned = "".join(char for char in value if "!" <= char <= "~")[:limit]
    return cleaned or "-"


_HOSTNAME = _header_text(socket.gethostname(), 255)  # not getfqdn(): that can wait on DNS at import


def syslog_message(event: Mapping[str, Any], json_text: str) -> bytes:
    """One RFC 5424 message: header stamped now, no structured data, the event's JSON as MSG."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    dataset = event.get("event", {}).get("dataset") if isinstance(event.get("event"), Mapping) else None
    msgid = _header_text(dataset.rpartition(".")[2], 32) if isinstance(dataset, str) else "-"
    return f"<{_PRI}>1 {stamp} {_HOSTNAME} helloscope {os.getpid()} {msgid} - {json_text}".encode()


class SyslogTransport:
    """One connection (or UDP socket) to a syslog receiver, reopened after any failure."""

    linger = 0.0

    def __init__(self, name: str, host: str, port: int, protocol: str, tls: ssl.SSLContext | None) -> None:
        self.name = name
        self._address = (host, port)
        self._protocol = protocol  # "udp", "tcp" or "tls"
        self._tls = tls
        self._socket: socket.socket | None = None

    def send(self, records: Sequence[bytes]) -> Sent:
        if self._protocol == "udp":
            return self._send_datagrams(records)
        connection = self._connected()
        try:
            connection.sendall(b"".join(b"%d %s" % (len(record), record) for record in records))
        except OSError as error:
            self.close()
            raise DeliveryError(f"send failed: {error.strerror or error}") from error
        return Sent()

    def abort(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError, ValueError):
                if isinstance(self._socket, ssl.SSLSocket):
                    self._socket.setblocking(False)  # send close_notify; do not wait for the receiver's
                    self._socket.unwrap()
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    def _send_datagrams(self, records: Sequence[bytes]) -> Sent:
        if self._socket is None:
            try:
                family = socket.getaddrinfo(*self._address, type=socket.SOCK_DGRAM)[0]
                self._socket = socket.socket(family[0], socket.SOCK_DGRAM)
                self._socket.connect(family[4])
            except OSError as error:
                self.close()
                raise DeliveryError(f"cannot reach {self.name}: {error.strerror or error}") from error
        rejected = 0
        for index, record in enumerate(records):
            try:
                self._socket.send(record)
            except OSError as error:
                if error.errno == errno.EMSGSIZE:  # larger than any datagram can be: it will never fit
                    rejected += 1
                    continue
                # A refusal reported now is about an earlier datagram; this one was not sent.
                if index == 0:
                    raise DeliveryError(f"send failed: {error.strerror or error}") from error
                return Sent(retry=tuple(range(index, len(records))), rejected=rejected)
        return Sent(rejected=rejected)

    def _connected(self) -> socket.socket:
        if self._socket is not None and not _peer_closed(self._socket):
            return self._socket
        self.close()
        try:
            plain = socket.create_connection(self._address, _CONNECT_SECONDS)
            plain.settimeout(_SEND_SECONDS)
            self._socket = (
                self._tls.wrap_socket(plain, server_hostname=self._address[0]) if self._tls is not None else plain
            )
        except (OSError, ssl.SSLError) as error:
            self.close()
            reason = getattr(error, "strerror", None) or error
            raise DeliveryError(f"cannot connect to {self.name}: {reason}") from error
        select.select([self._socket], [], [], _SETTLE_SECONDS)
        if _peer_closed(self._socket):
            self.close()
            hint = " (does it want a client certificate it trusts?)" if self._tls is not None else ""
            raise DeliveryError(f"{self.name} closed the connection as soon as it was made{hint}")
        return self._socket


def _peer_closed(connection: socket.socket) -> bool:
    """Whether the receiver closed (or reset) the connection. It sends no data, so anything readable is
    a close, a reset, or TLS housekeeping (a TLS 1.3 session ticket), which reading consumes."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    connection.setblocking(False)
    try:
        return not connection.recv(4096)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        connection.settimeout(_SEND_SECONDS)
