"""Follow an SSLKEYLOGFILE as a client appends to it, the way ``tail -F`` follows a log.

A live sensor reads the secrets a client logs while its connections are still being captured: flows keep
their protected records until they are reported, and decryption runs at report time, so a secret read
any time before the report is used. A file that shrinks (truncated) or is replaced (new inode) is read
again from its start; secrets already stored stay, so nothing is lost by reading a line twice.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass

from helloscope.parsers.keylog import KeyLog, KeyLogProblem

_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class _Identity:
    """Which file a path names (device, inode): a rotated key log is a new one."""

    device: int
    inode: int


class KeyLogFollower:
    """Reads what was appended to ``path`` into ``keys`` each time :meth:`poll` is called."""

    def __init__(self, path: str, keys: KeyLog) -> None:
        self.path = path
        self._keys = keys
        self._identity: _Identity | None = None
        self._offset = 0
        # Incremental: a multi-byte character split across two reads is decoded whole.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.problems = 0  # lines that were not stored
        self.first_problem: KeyLogProblem | None = None

    def poll(self) -> int:
        """Read whatever is new; return how many secrets were added. Raises OSError if unreadable."""
        status = os.stat(self.path)
        if _Identity(status.st_dev, status.st_ino) == self._identity and status.st_size == self._offset:
            return 0  # the usual case, checked between every batch of packets: one stat, no open
        before = len(self._keys)
        with open(self.path, "rb") as handle:
            status = os.fstat(handle.fileno())
            identity = _Identity(status.st_dev, status.st_ino)
            if identity != self._identity or status.st_size < self._offset:
                self._restart(identity)
            if status.st_size > self._offset:
                handle.seek(self._offset)
                while chunk := handle.read(_READ_CHUNK):
                    self._offset += len(chunk)
                    self._feed(chunk)
        return len(self._keys) - before

    def _restart(self, identity: _Identity) -> None:
        # A line cut short by the truncation or replacement must not join the new file's first line.
        self._note(self._keys.finish())
        self._identity = identity
        self._offset = 0
        self._decoder.reset()

    def _feed(self, chunk: bytes) -> None:
        self._note(self._keys.feed(self._decoder.decode(chunk)))

    def _note(self, problems: list[KeyLogProblem]) -> None:
        if problems and self.first_problem is None:
            self.first_problem = problems[0]
        self.problems += len(problems)
