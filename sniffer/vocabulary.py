"""The words a report is made of, as enums: a typo is a type error, not a new value in a SIEM.

Every enum is a :class:`enum.StrEnum`, so a member is the string it stands for wherever text is
written (JSON, syslog, tables) and the events stay what consumers already parse.
"""

from __future__ import annotations

from enum import StrEnum


class Sender(StrEnum):
    """Which endpoint sent a record, message or alert."""

    CLIENT = "client"
    SERVER = "server"

    @property
    def peer(self) -> Sender:
        return Sender.SERVER if self is Sender.CLIENT else Sender.CLIENT


class Evidence(StrEnum):
    """How a finding was learned, from the strongest claim to the weakest. An inference is never labelled as seen."""

    PLAINTEXT = "plaintext"
    DECRYPTED = "decrypted"
    INFERRED = "inferred"
    DECRYPT_FAILED = "decrypt_failed"  # secrets were logged but did not open what would have told
    UNKNOWN = "unknown"


class Confidence(StrEnum):
    """How sure an inferred finding is, from the strongest to the weakest."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Outcome(StrEnum):
    """The connection's one answer (DESIGN.md)."""

    INCOMPLETE = "incomplete"
    REJECTED = "rejected"
    AUTHENTICATED = "authenticated"
    DECLINED = "declined"
    NOT_REQUESTED = "not_requested"
    FAILED = "failed"
    UNKNOWN = "unknown"


class FlagOutcome(StrEnum):
    """What the server did with the request-mTLS flag; unknown when the CertificateRequest is not observable."""

    HONORED = "honored"
    IGNORED = "ignored"
    UNSOLICITED = "unsolicited"
    NONE = "none"
    UNKNOWN = "unknown"


class CertificateState(StrEnum):
    """The client's Certificate message: none sent, sent empty, or with a chain."""

    ABSENT = "absent"
    EMPTY = "empty"
    PRESENTED = "presented"


class DecryptionStatus(StrEnum):
    NOT_NEEDED = "not_needed"  # nothing protected was seen
    NO_KEYS = "no_keys"  # the key log has nothing for this connection
    DECRYPTED = "decrypted"
    DECRYPT_FAILED = "decrypt_failed"  # secrets were logged but do not open the records
    UNSUPPORTED = "unsupported"  # a suite or compression this sensor cannot open


class Phase(StrEnum):
    """The key phase a decrypted message was read in: tells the handshake from post-handshake messages."""

    EARLY = "early"
    HANDSHAKE = "handshake"
    APPLICATION = "application"


class Verdict(StrEnum):
    """What the server did after the client's flight, as record sizes show it."""

    ACCEPTED = "accepted"
    ALERT_AND_CLOSE = "alert_and_close"


class EndReason(StrEnum):
    """Why a connection was reported when it was."""

    HANDSHAKE_SETTLED = "handshake_settled"
    CLOSED = "closed"
    RESET = "reset"
    IDLE = "idle_timeout"
    EVICTED = "flow_cap"
    MEMORY = "memory_cap"
    CAPTURE_END = "capture_end"
    PORT_REUSE = "port_reused"


class Transport(StrEnum):
    """network.transport: the IANA protocol name, with its number for the Community ID."""

    TCP = "tcp"
    UDP = "udp"

    @property
    def number(self) -> int:
        return 6 if self is Transport.TCP else 17
