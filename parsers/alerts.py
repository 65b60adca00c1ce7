"""Alert records (RFC 8446 6, RFC 5246 7.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from helloscope.parsers.errors import ParseError
from helloscope.parsers.registry import ALERT_NAMES

WARNING: Final = 1
FATAL: Final = 2


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of an alert record: its level (warning, fatal) and description code."""

    level: int
    description: int

    @property
    def name(self) -> str:
        return ALERT_NAMES.get(self.description, f"unknown_{self.description}")

    @property
    def fatal(self) -> bool:
        return self.level == FATAL


def parse_alerts(fragment: bytes) -> tuple[Alert, ...]:
    """Every 2-byte alert in a plaintext alert record; TLS 1.2 stacks may pack several into one."""
    if not fragment or len(fragment) % 2:
        raise ParseError(f"alert record of {len(fragment)} bytes is not a sequence of 2-byte alerts", 0)
    return tuple(Alert(fragment[i], fragment[i + 1]) for i in range(0, len(fragment), 2))
