"""SSLKEYLOGFILE parsing (RFC 9850): an incremental store of (label, client_random) -> secret.

A live sensor tails a key log that the endpoint is still writing, so the store is fed text in arbitrary
pieces; a line is only parsed once its terminator (or :meth:`KeyLog.finish`) has been seen. Bad lines
never raise: they come back as :class:`KeyLogProblem` values so the caller can report them and go on.

Secrets are sensitive: nothing in this module puts a secret, or any other field of a rejected line (a
mangled line may hold a secret in any position), into a problem, a repr or an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

CLIENT_RANDOM: Final = "CLIENT_RANDOM"
CLIENT_EARLY_TRAFFIC_SECRET: Final = "CLIENT_EARLY_TRAFFIC_SECRET"
CLIENT_HANDSHAKE_TRAFFIC_SECRET: Final = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE_TRAFFIC_SECRET: Final = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC_SECRET_0: Final = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC_SECRET_0: Final = "SERVER_TRAFFIC_SECRET_0"
EARLY_EXPORTER_SECRET: Final = "EARLY_EXPORTER_SECRET"
EXPORTER_SECRET: Final = "EXPORTER_SECRET"
ECH_SECRET: Final = "ECH_SECRET"
ECH_CONFIG: Final = "ECH_CONFIG"

# Every TLS 1.3 cipher suite hashes with SHA-256 or SHA-384, and its key-schedule secrets are that long.
_TLS13_SECRET_LENGTHS: Final = frozenset({32, 48})

# Allowed secret lengths in bytes per label; None means "any non-empty length" (the ECH shared secret
# depends on the KEM, and ECH_CONFIG is a whole ECHConfig structure).
_SECRET_LENGTHS: Final[dict[str, frozenset[int] | None]] = {
    CLIENT_RANDOM: frozenset({48}),  # the TLS 1.2 master secret is always 48 bytes (RFC 5246 §8.1)
    CLIENT_EARLY_TRAFFIC_SECRET: _TLS13_SECRET_LENGTHS,
    CLIENT_HANDSHAKE_TRAFFIC_SECRET: _TLS13_SECRET_LENGTHS,
    SERVER_HANDSHAKE_TRAFFIC_SECRET: _TLS13_SECRET_LENGTHS,
    CLIENT_TRAFFIC_SECRET_0: _TLS13_SECRET_LENGTHS,
    SERVER_TRAFFIC_SECRET_0: _TLS13_SECRET_LENGTHS,
    EARLY_EXPORTER_SECRET: _TLS13_SECRET_LENGTHS,
    EXPORTER_SECRET: _TLS13_SECRET_LENGTHS,
    ECH_SECRET: None,
    ECH_CONFIG: None,
}

KEYLOG_LABELS: Final[frozenset[str]] = frozenset(_SECRET_LENGTHS)

# Where a secret came from: a key log file (--keylog, the default) or a pcapng Decryption Secrets Block.
SOURCE_KEYLOG: Final = "keylog"
SOURCE_PCAPNG: Final = "pcapng"
# Different secrets kept per (client_random, label) besides the newest: a wrong secret from one source
# must not hide the right one from another (callers try each, see candidates()).
MAX_ALTERNATIVES: Final = 4

CLIENT_RANDOM_LENGTH: Final = 32

# A valid line is under 300 characters except ECH_CONFIG, whose ECHConfig may carry a large (for
# example post-quantum) public key. The cap only bounds what a never-terminated line can make us buffer.
MAX_LINE_CHARS: Final = 1 << 16

# RFC 9850 §2: CRLF, CR or LF. str.splitlines() would also split on \v, \f, \x1c-\x1e, \x85 and
# U+2028/9, which are not terminators in this format.
_TERMINATOR: Final = re.compile(r"\r\n|\r|\n")
# Explicit ASCII classes: str.isalnum()/isdigit() accept non-ASCII digits, which are not hex.
_HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_LABEL: Final = re.compile(r"[A-Za-z0-9_]+")
# The RFC says a single space; tolerating runs of blanks costs nothing and rescues hand-edited files.
_BLANKS: Final = re.compile(r"[ \t]+")
_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class KeyLogProblem:
    """A line that was not stored, or stored with a caveat. ``line`` is 1-based over the whole feed."""

    line: int
    reason: str  # never includes the secret or any other field of the line


@dataclass(frozen=True, slots=True)
class _Entry:
    secret: bytes = field(repr=False)  # never printed, even when debugging the store itself
    line: int
    source: str = SOURCE_KEYLOG


class KeyLog:
    """Incremental store (a live sensor appends as the file grows): (label, client_random) → secret.

    Feed text with :meth:`feed` as it arrives (pieces may split lines, even a CRLF pair) and call
    :meth:`finish` at end of file to parse a last line that has no terminator. Labels outside
    :data:`KEYLOG_LABELS` are kept when both values are hex, so secrets from newer producers stay
    available to callers that know their label.
    """

    __slots__ = (
        "_alternatives",
        "_count",
        "_discarding",
        "_entries",
        "_line",
        "_max_line",
        "_pending",
        "_sealed",
        "_source",
        "_started",
    )

    def __init__(self, *, max_line_chars: int = MAX_LINE_CHARS) -> None:
        # Indexed by client_random first so a finished connection's secrets can be dropped in one step.
        self._entries: dict[bytes, dict[str, _Entry]] = {}
        self._count = 0
        self._pending = ""  # text of a line whose terminator has not arrived yet
        self._line = 0  # number of lines completed so far
        self._discarding = False  # inside an over-long line that was already reported
        self._started = False  # whether any text has been seen (a BOM only counts at the very start)
        self._max_line = max_line_chars
        self._sealed = False
        self._source = SOURCE_KEYLOG  # of the lines being fed now
        # Older different secrets for the same (client_random, label), newest first, each with its source.
        self._alternatives: dict[tuple[bytes, str], list[_Entry]] = {}

    @property
    def sealed(self) -> bool:
        """No secret will be added any more (see :meth:`seal`)."""
        return self._sealed

    def seal(self) -> None:
        """Promise that nothing more will be fed: every key file is read and no capture still to be read can
        carry secrets (no pcapng Decryption Secrets Block), and no key log is being followed.

        Consumers rely on it: a flow table keeps encrypted records for later decryption only while a key
        can still arrive, so an unsealed store (the default) keeps them. Feeding a sealed store is an error.
        Call :meth:`finish` first: a last line without terminator is not parsed by sealing.
        """
        self._sealed = True

    def feed(self, text: str, source: str = SOURCE_KEYLOG) -> list[KeyLogProblem]:
        """Parse every line completed by ``text``; return the problems found in those lines.

        ``source`` names where the text comes from (:data:`SOURCE_KEYLOG`, :data:`SOURCE_PCAPNG`); it is
        kept with each secret, and a line completed later by :meth:`finish` counts as from this source.
        """
        if self._sealed:
            raise ValueError("the key log was sealed: no more secrets may be fed")
        self._source = source
        if not text:
            return []
        if not self._started:
            self._started = True
            # RFC 9850 forbids a BOM, but editors add one; dropping it beats losing the first line.
            if text.startswith(_BOM):
                text = text[1:]
        data = self._pending + text
        problems: list[KeyLogProblem] = []
        start = 0
        for match in _TERMINATOR.finditer(data):
            # A CR at the very end may be the first half of a CRLF split across two feeds: wait.
            if match.group() == "\r" and match.end() == len(data):
                break
            self._complete_line(data[start : match.start()], problems)
            start = match.end()
        self._pending = data[start:]
        body = self._pending.removesuffix("\r")
        if len(body) > self._max_line:
            if not self._discarding:
                problems.append(KeyLogProblem(self._line + 1, self._too_long()))
                self._discarding = True
            self._pending = self._pending[len(body) :]  # keep only a trailing CR, if any
        return problems

    def finish(self) -> list[KeyLogProblem]:
        """End of input: parse a last line that has no terminator. Later feeds start a new line."""
        problems: list[KeyLogProblem] = []
        pending = self._pending
        self._pending = ""
        if pending.endswith("\r"):
            self._complete_line(pending[:-1], problems)
        elif pending or self._discarding:
            self._complete_line(pending, problems)
        return problems

    def secret(self, label: str, client_random: bytes) -> bytes | None:
        """The logged secret for ``label`` in the connection whose ClientHello.random is given."""
        by_label = self._entries.get(bytes(client_random))
        if by_label is None:
            return None
        entry = by_label.get(label)
        return None if entry is None else entry.secret

    def candidates(self, label: str, client_random: bytes) -> tuple[tuple[bytes, str], ...]:
        """Every different secret logged for ``label`` in this connection, newest first, with its source."""
        by_label = self._entries.get(bytes(client_random))
        entry = None if by_label is None else by_label.get(label)
        if entry is None:
            return ()
        older = self._alternatives.get((bytes(client_random), label), ())
        return tuple((item.secret, item.source) for item in (entry, *older))

    def labels(self, client_random: bytes) -> frozenset[str]:
        """Which labels are logged for a connection (lets a caller tell TLS 1.2 from 1.3 logs)."""
        return frozenset(self._entries.get(bytes(client_random), ()))

    def discard(self, client_random: bytes) -> int:
        """Forget a connection's secrets (e.g. once its report is final); return how many were dropped."""
        by_label = self._entries.pop(bytes(client_random), {})
        for label in by_label:
            self._alternatives.pop((bytes(client_random), label), None)
        dropped = len(by_label)
        self._count -= dropped
        return dropped

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"KeyLog(secrets={self._count}, connections={len(self._entries)})"

    def _too_long(self) -> str:
        return f"line longer than {self._max_line} characters"

    def _complete_line(self, line: str, problems: list[KeyLogProblem]) -> None:
        self._line += 1
        if self._discarding:
            # The tail of an over-long line that feed() already reported.
            self._discarding = False
            return
        if len(line) > self._max_line:
            problems.append(KeyLogProblem(self._line, self._too_long()))
            return
        reason = self._parse_line(line)
        if reason is not None:
            problems.append(KeyLogProblem(self._line, reason))

    def _parse_line(self, line: str) -> str | None:
        """Store the line's secret; return why the line is a problem, or None."""
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            return None
        fields = _BLANKS.split(stripped)
        if len(fields) != 3:
            return f"expected 3 fields (label client_random secret), found {len(fields)}"
        label, random_hex, secret_hex = fields
        if not _LABEL.fullmatch(label):
            return "label is not a word of ASCII letters, digits and underscores"
        if not _HEX.fullmatch(random_hex):
            return "client_random is not an even number of hex digits"
        if not _HEX.fullmatch(secret_hex):
            return "secret is not an even number of hex digits"
        client_random = bytes.fromhex(random_hex)
        secret = bytes.fromhex(secret_hex)
        if label in _SECRET_LENGTHS:
            if len(client_random) != CLIENT_RANDOM_LENGTH:
                return f"client_random must be {CLIENT_RANDOM_LENGTH} bytes, found {len(client_random)}"
            allowed = _SECRET_LENGTHS[label]
            if allowed is not None and len(secret) not in allowed:
                expected = " or ".join(str(n) for n in sorted(allowed))
                return f"{label} secret must be {expected} bytes, found {len(secret)}"
        return self._store(label, client_random, secret)

    def _store(self, label: str, client_random: bytes, secret: bytes) -> str | None:
        by_label = self._entries.setdefault(client_random, {})
        previous = by_label.get(label)
        if previous is not None and previous.secret == secret:
            return None  # a repeated line (logs concatenated twice) is harmless
        older = self._alternatives.get((client_random, label), [])
        known = next((item for item in older if item.secret == secret), None)
        by_label[label] = known if known is not None else _Entry(secret, self._line, self._source)
        if previous is None:
            self._count += 1
            return None
        # The replaced secret stays a candidate: the newest is not always the right one (a wrong secret in a
        # capture's Decryption Secrets Block read after a correct key log).
        older = [previous, *(item for item in older if item is not known)][:MAX_ALTERNATIVES]
        self._alternatives[(client_random, label)] = older
        if known is not None:
            return None
        # Keep the newest: in a live log the latest connection with a reused random (test tools with
        # fixed randoms) is the one being captured now. An unknown label is not named: a mangled line
        # can put a hex secret in the label position.
        name = label if label in KEYLOG_LABELS else "an unknown label"
        return f"{name} for this client_random replaces a different secret from line {previous.line}"


def parse_keylog_text(text: str) -> tuple[KeyLog, list[KeyLogProblem]]:
    """Parse a whole key log. A result with ``len(log) == 0 and problems`` is not a key log at all."""
    log = KeyLog()
    problems = log.feed(text)
    problems += log.finish()
    return log, problems
