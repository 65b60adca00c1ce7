"""When a connection is settled: every rule that decides "nothing later can change this report".

A settled connection is reported at once and its later packets cost one dictionary look-up (the fast
path), so these rules trade report completeness against cost. They live here together, like h11 keeps
everything that moves its state machine in one module, so that TCP, QUIC and what comes next settle
by the same rules:

- a fatal alert, or both directions unreadable, ends the story for every version;
- TLS 1.3 without keys is followed for ``MAX_TRACED_RECORDS`` records (the sizes inference needs);
- TLS <= 1.2 is followed past both Finished until the server answers (data or an alert; after a
  renegotiation, which may request a certificate, its end or an alert), or the client has sent a
  request's worth of records to a silent server, within ``MAX_TRACED_RECORDS`` records: the record
  headers show that much without keys. DTLS settles at both Finished. When a logged
  key can read what follows, the connection is then followed for ``MAX_PROTECTED_BYTES``;
- with keys, TLS 1.3 (QUIC) settles once the client has finished and the server has answered it;
- with keys, a TLS 1.3 connection the client gave up with a fatal alert is followed past that alert
  for the server's answer (see :func:`keys_can_follow`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from helloscope.parsers.keylog import (
    CLIENT_RANDOM,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
)
from helloscope.parsers.registry import FINISHED
from helloscope.sniffer.handshake.decryption import DecryptedMessage, Decryption
from helloscope.sniffer.report.model import AlertFinding
from helloscope.sniffer.vocabulary import Phase, Sender

# Enough records after the ServerHello to see both flights, the client's answer and the server's verdict.
MAX_TRACED_RECORDS: Final = 64
# Enough for both handshake flights with a long certificate chain and the first records after them.
MAX_PROTECTED_BYTES: Final = 128 * 1024
# The secrets that open what a TLS 1.3 server sends: before its Finished, and after it.
_SERVER_SECRETS: Final = frozenset((SERVER_HANDSHAKE_TRAFFIC_SECRET, SERVER_TRAFFIC_SECRET_0))


class TlsProgress(Protocol):
    """What the rules read of a connection tracker."""

    @property
    def fatal_alert_seen(self) -> bool: ...
    @property
    def both_directions_broken(self) -> bool: ...
    @property
    def tls13(self) -> bool: ...
    @property
    def traced_records(self) -> int: ...
    @property
    def protected_bytes(self) -> int: ...
    @property
    def established(self) -> bool | None: ...
    @property
    def follow_after_handshake(self) -> bool: ...
    @property
    def client_aborted(self) -> bool: ...

    @property
    def renegotiation_window_over(self) -> bool: ...

    dtls: bool
    server_answered: bool


def tls_settled(progress: TlsProgress) -> bool:
    """Nothing later on this TLS connection can change its report."""
    if progress.tls13:  # checked first: most records are TLS 1.3's, asked about at every one
        if progress.traced_records >= MAX_TRACED_RECORDS or progress.both_directions_broken:
            return True
        if not progress.fatal_alert_seen:
            return False
        if progress.follow_after_handshake:
            # Waiting for the server's answer to the client's fatal alert (keys_can_follow). Not just
            # its next record: that may be a ticket written before it read the alert. A server must
            # close after the alert (RFC 8446 6.2), so teardown ends the wait; until then at most the
            # traced records, and no more than the kept bytes, since nothing past them is decrypted.
            return not progress.client_aborted or progress.protected_bytes >= MAX_PROTECTED_BYTES
        return True
    if progress.fatal_alert_seen or progress.both_directions_broken:
        return True
    if progress.follow_after_handshake:
        return progress.protected_bytes >= MAX_PROTECTED_BYTES
    if not progress.established:
        return False
    return (
        progress.dtls
        or progress.server_answered
        or progress.renegotiation_window_over
        or progress.traced_records >= MAX_TRACED_RECORDS
    )


def keys_can_follow(progress: TlsProgress, client_random: bytes | None, keys: KeyLog | None) -> bool:
    """Whether a settled connection is worth following further because the key log can read what follows.

    A finished TLS <= 1.2 connection, past its Finished, when its master secret is logged. A TLS 1.3
    connection the client gave up with a fatal alert, when the server's secrets are logged: the server
    answers under its keys (an OpenSSL client refusing a certificate alerts in plaintext, a GnuTLS or
    Go server answers bad_record_mac, encrypted, sometimes after tickets it had queued), which only a
    key can read, so settling at the client's alert would report less than the key log shows. Without
    the key nothing after the alert is readable: such connections settle at it as before.
    """
    if progress.follow_after_handshake or client_random is None or keys is None:
        return False
    labels = keys.labels(client_random)
    if progress.tls13:
        return not progress.dtls and progress.client_aborted and not labels.isdisjoint(_SERVER_SECRETS)
    return CLIENT_RANDOM in labels and not progress.fatal_alert_seen


def server_went_on(decryption: Decryption, after: float) -> bool:
    """With keys: the server sent data, a post-handshake message or a graceful alert after ``after``."""
    return (
        any(sender == Sender.SERVER and timestamp >= after for sender, timestamp in decryption.application_records)
        or any(
            message.sender == Sender.SERVER and message.phase == Phase.APPLICATION for message in decryption.messages
        )
        or any(alert.sender == Sender.SERVER and alert.timestamp >= after for alert in decryption.alerts)
    )


def quic_verdict_seen(
    messages: Iterable[DecryptedMessage],
    alerts: Iterable[AlertFinding],
    application: Iterable[tuple[Sender, float]],
) -> bool:
    """With keys, QUIC: both sides have finished and the server has answered the client (an alert, or going on).

    The server's Finished is waited for too: a datagram carrying it may arrive after the verdict.
    """
    finished = None
    server_finished = False
    for message in messages:
        if message.msg_type == FINISHED:
            if message.sender == Sender.CLIENT:
                finished = message.timestamp if finished is None else finished
            else:
                server_finished = True
    if finished is None or not server_finished:
        return False
    return any(alert.sender == Sender.SERVER for alert in alerts) or any(
        sender == Sender.SERVER and timestamp >= finished for sender, timestamp in application
    )


def quic_settled(
    closed: bool,
    progress: TlsProgress,
    server_hello_seen: bool,
    client_left_initial: bool,
    opened: int | None,
    verdict: bool,
) -> bool:
    """A QUIC connection's report is final.

    Without keys (``opened`` None) the Initial phase is all there is to read: it is over once the client
    has moved on to Handshake packets after the ServerHello. With keys, once the server's verdict is read
    or as many packets as TLS would trace were opened or refused.
    """
    if closed or progress.fatal_alert_seen:
        return True
    if opened is not None:
        return verdict or opened >= MAX_TRACED_RECORDS
    return server_hello_seen and client_left_initial
