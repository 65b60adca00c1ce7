"""SSLKEYLOGFILE parsing (RFC 9850): an incremental store of (label, client_random) -> secret.

A live sensor tails a key log that the endpoint is still writing, so the store is fed text in arbitrary
pieces; a line is only parsed once its terminator (or :meth:`KeyLog.finish`) has been seen. Bad lines
never raise: they come back as :class:`KeyLogProblem` values so the caller can report them and go on.

Secrets are sensitive: nothing in this module puts a secret, or any other field of a rejected line (a
mangled line may hold a secret in any position), into a problem, a repr or an exception.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
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
_SOURCES: Final = (SOURCE_KEYLOG, SOURCE_PCAPNG)
# Different secrets kept per (client_random, label) besides the newest: a wrong secret from one source
# must not hide the right one from another (callers try each, see candidates()).
MAX_ALTERNATIVES: Final = 4

CLIENT_RANDOM_LENGTH: Final = 32

# A valid line is under 300 characters except ECH_CONFIG, whose ECHConfig may carry a large (for
# example post-quantum) public key. The cap only bounds what a never-terminated line can make us buffer.
MAX_LINE_CHARS: Final = 1 << 16

# Texts are split into lines piece by piece, each piece ending at a line feed: a whole key log fed at once
# then never exists as one list of a million line strings.
_PIECE_CHARS: Final = 1 << 20

# Patterns for the lines the fast path in _complete_line leaves to _parse_line, compiled (and cached by
# re) when such a line first comes: most runs never see one. Explicit ASCII classes: str.isalnum() and
# str.isdigit() accept non-ASCII digits, which are not hex.
_HEX: Final = r"(?:[0-9A-Fa-f]{2})+"
_LABEL: Final = r"[A-Za-z0-9_]+"
# The RFC says a single space; tolerating runs of blanks costs nothing and rescues hand-edited files.
_BLANKS: Final = r"[ \t]+"
_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class KeyLogProblem:
    """A line that was not stored, or stored with a caveat. ``line`` is 1-based over the whole feed."""

    line: int
    reason: str  # never includes the secret or any other field of the line


# A connection's secrets under the known labels are one bytes value: a 2-byte mask of the labels present,
# then per secret a header (label id, source id, line it came from, secret length) and the secret. A million-line key
# log is mostly TLS 1.3 connections with five secrets each; one object per connection instead of a dict,
# five entry objects and five line numbers keeps the store at a few hundred bytes per connection, and the
# mask answers "is this label new?" (nearly always) without walking the entries.
_HEADER: Final = struct.Struct(">BBII")
_MASK_BYTES: Final = 2
_LABEL_NAMES: Final[tuple[str, ...]] = tuple(sorted(KEYLOG_LABELS))
_LABEL_IDS: Final[dict[str, int]] = {label: index for index, label in enumerate(_LABEL_NAMES)}


def _entries(packed: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(label id, source id, line, secret start, secret end) of each secret in a packed value."""
    pos = _MASK_BYTES
    while pos < len(packed):
        label_id, source_id, line, length = _HEADER.unpack_from(packed, pos)
        start = pos + _HEADER.size
        yield label_id, source_id, line, start, start + length
        pos = start + length


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
        "_known",
        "_line",
        "_max_line",
        "_other",
        "_pending",
        "_sealed",
        "_source",
        "_started",
    )

    def __init__(self, *, max_line_chars: int = MAX_LINE_CHARS) -> None:
        # Indexed by client_random first so a finished connection's secrets can be dropped in one step.
        self._known: dict[bytes, bytes] = {}  # client_random -> packed secrets under KEYLOG_LABELS
        # Labels outside KEYLOG_LABELS (newer producers): rare, kept simply. label -> (secret, line, source)
        self._other: dict[bytes, dict[str, tuple[bytes, int, str]]] = {}
        # Older different secrets for the same (client_random, label), newest first, each with its source:
        # rare (a reused random, or two sources that disagree), so a plain dict.
        self._alternatives: dict[tuple[bytes, str], list[tuple[bytes, str]]] = {}
        self._source = SOURCE_KEYLOG  # of the lines being fed now
        self._count = 0
        self._pending = ""  # text of a line whose terminator has not arrived yet
        self._line = 0  # number of lines completed so far
        self._discarding = False  # inside an over-long line that was already reported
        self._started = False  # whether any text has been seen (a BOM only counts at the very start)
        self._max_line = max_line_chars
        self._sealed = False

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
        if not text:
            return []
        self._source = source
        if not self._started:
            self._started = True
            # RFC 9850 forbids a BOM, but editors add one; dropping it beats losing the first line.
            if text.startswith(_BOM):
                text = text[1:]
        data = self._pending + text
        problems: list[KeyLogProblem] = []
        # A CR at the very end may be the first half of a CRLF split across two feeds: wait.
        held_cr = data.endswith("\r")
        if held_cr:
            data = data[:-1]
        pos, size = 0, len(data)
        pending = ""
        while pos < size:
            end = data.find("\n", pos + _PIECE_CHARS) + 1 if size - pos > _PIECE_CHARS else 0
            end = end or size
            piece = data[pos:end]
            pos = end
            if "\r" in piece:
                # RFC 9850 terminators are CRLF, CR or LF; made all LF, each still ends exactly one line.
                piece = piece.replace("\r\n", "\n").replace("\r", "\n")
            # Not str.splitlines(): it also splits on \v, \f, \x1c-\x1e, \x85 and U+2028/9, which are
            # not terminators in this format (RFC 9850 §2).
            lines = piece.split("\n")
            pending = lines.pop()  # "" when the piece ended with a terminator
            for line in lines:
                self._complete_line(line, problems)
        self._pending = pending + "\r" if held_cr else pending
        body = pending
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
        newest = self._newest(label, bytes(client_random))
        return None if newest is None else newest[0]

    def candidates(self, label: str, client_random: bytes) -> tuple[tuple[bytes, str], ...]:
        """Every different secret logged for ``label`` in this connection, newest first, with its source."""
        key = bytes(client_random)
        newest = self._newest(label, key)
        if newest is None:
            return ()
        return ((newest[0], newest[2]), *self._alternatives.get((key, label), ()))

    def _newest(self, label: str, key: bytes) -> tuple[bytes, int, str] | None:
        """(secret, line, source) stored for ``label`` under ``key``."""
        label_id = _LABEL_IDS.get(label)
        if label_id is None:
            return self._other.get(key, {}).get(label)
        packed = self._known.get(key)
        if packed is not None:
            for found, source_id, line, start, end in _entries(packed):
                if found == label_id:
                    return packed[start:end], line, _SOURCES[source_id]
        return None

    def labels(self, client_random: bytes) -> frozenset[str]:
        """Which labels are logged for a connection (lets a caller tell TLS 1.2 from 1.3 logs)."""
        key = bytes(client_random)
        mask = int.from_bytes(self._known.get(key, b"")[:_MASK_BYTES])
        known = [name for label_id, name in enumerate(_LABEL_NAMES) if mask >> label_id & 1]
        return frozenset(known).union(self._other.get(key, ()))

    def entries(self) -> Iterator[tuple[bytes, str, bytes]]:
        """Every stored (client_random, label, secret)."""
        for client_random, packed in self._known.items():
            for label_id, _, _, start, end in _entries(packed):
                yield client_random, _LABEL_NAMES[label_id], packed[start:end]
        for client_random, by_label in self._other.items():
            for label, (secret, _, _) in by_label.items():
                yield client_random, label, secret

    def discard(self, client_random: bytes) -> int:
        """Forget a connection's secrets (e.g. once its report is final); return how many were dropped."""
        key = bytes(client_random)
        labels = [_LABEL_NAMES[entry[0]] for entry in _entries(self._known.pop(key, b""))]
        labels += self._other.pop(key, {})
        for label in labels:
            self._alternatives.pop((key, label), None)
        dropped = len(labels)
        self._count -= dropped
        return dropped

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"KeyLog(secrets={self._count}, connections={len(self._known.keys() | self._other.keys())})"

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
        # Fast path for the lines producers write: three fields, one space apart, a known label. Anything
        # else, or a doubt, goes to _parse_line, which names the problem.
        fields = line.split(" ")
        if len(fields) == 3:
            label, random_hex, secret_hex = fields
            allowed = _SECRET_LENGTHS.get(label, ())
            if allowed != () and len(random_hex) == 2 * CLIENT_RANDOM_LENGTH:
                try:
                    client_random, secret = bytes.fromhex(random_hex), bytes.fromhex(secret_hex)
                except ValueError:
                    pass
                else:
                    # fromhex skips ASCII whitespace: equal lengths prove every character was a hex digit.
                    if (
                        len(client_random) == CLIENT_RANDOM_LENGTH
                        and 2 * len(secret) == len(secret_hex)
                        and secret
                        and (allowed is None or len(secret) in allowed)
                    ):
                        reason = self._store(label, client_random, secret)
                        if reason is not None:
                            problems.append(KeyLogProblem(self._line, reason))
                        return
        reason = self._parse_line(line)
        if reason is not None:
            problems.append(KeyLogProblem(self._line, reason))

    def _parse_line(self, line: str) -> str | None:
        """Store the line's secret; return why the line is a problem, or None."""
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            return None
        fields = re.split(_BLANKS, stripped)
        if len(fields) != 3:
            return f"expected 3 fields (label client_random secret), found {len(fields)}"
        label, random_hex, secret_hex = fields
        if not re.fullmatch(_LABEL, label):
            return "label is not a word of ASCII letters, digits and underscores"
        if not re.fullmatch(_HEX, random_hex):
            return "client_random is not an even number of hex digits"
        if not re.fullmatch(_HEX, secret_hex):
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
        previous = self._newest(label, client_random)
        if previous is not None and previous[0] == secret:
            return None  # a repeated line (logs concatenated twice) is harmless
        slot = (client_random, label)
        older = self._alternatives.get(slot, [])
        # A secret seen before under this slot becomes the newest again, with the source it had.
        known = next((item for item in older if item[0] == secret), None)
        source = known[1] if known is not None else self._source
        self._put(label, client_random, secret, source)
        if previous is None:
            self._count += 1
            return None
        # The replaced secret stays a candidate: the newest is not always the right one (a wrong secret in a
        # capture's Decryption Secrets Block read after a correct key log).
        rest = [item for item in older if item is not known]
        self._alternatives[slot] = [(previous[0], previous[2]), *rest][:MAX_ALTERNATIVES]
        if known is not None:
            return None
        # Keep the newest: in a live log the latest connection with a reused random (test tools with
        # fixed randoms) is the one being captured now. An unknown label is not named: a mangled line
        # can put a hex secret in the label position.
        name = label if label in KEYLOG_LABELS else "an unknown label"
        return f"{name} for this client_random replaces a different secret from line {previous[1]}"

    def _put(self, label: str, client_random: bytes, secret: bytes, source: str) -> None:
        """Make ``secret`` the newest for ``label``, in place of any other."""
        label_id = _LABEL_IDS.get(label)
        if label_id is None:
            self._other.setdefault(client_random, {})[label] = (secret, self._line, source)
            return
        entry = _HEADER.pack(label_id, _SOURCES.index(source), self._line, len(secret)) + secret
        packed = self._known.get(client_random)
        mask = 0 if packed is None else int.from_bytes(packed[:_MASK_BYTES])
        bit = 1 << label_id
        if not mask & bit:
            body = b"" if packed is None else packed[_MASK_BYTES:]
            self._known[client_random] = (mask | bit).to_bytes(_MASK_BYTES) + body + entry
            return
        assert packed is not None
        for found, _, _, start, end in _entries(packed):
            if found == label_id:
                self._known[client_random] = packed[: start - _HEADER.size] + entry + packed[end:]
                return


def parse_keylog_text(text: str) -> tuple[KeyLog, list[KeyLogProblem]]:
    """Parse a whole key log. A result with ``len(log) == 0 and problems`` is not a key log at all."""
    log = KeyLog()
    problems = log.feed(text)
    problems += log.finish()
    return log, problems
