"""Stand-in for sniffer.outputs (helper A's) until it lands: stdout and appended files only, same calls."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from sniffer.events import to_json_line


class OutputError(Exception):
    """A destination the user named cannot be used."""


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    spool_dir: str | None = None
    spool_limit: int = 1 << 30


class Outputs:
    def __init__(self, specs: Sequence[str]) -> None:
        self._paths = [spec.removeprefix("file:") for spec in specs]
        self._handles: list[IO[str]] = []
        self._written = 0
        self._open()

    def _open(self) -> None:
        handles = []
        for path in self._paths:
            if path == "-":
                handles.append(sys.stdout)
                continue
            if "://" in path:
                raise OutputError(f"{path}: network outputs are not available yet")
            try:
                handles.append(open(path, "a", encoding="utf-8"))  # noqa: SIM115
            except OSError as error:
                raise OutputError(f"cannot write {path}: {error.strerror}") from None
        self.close()
        self._handles = handles

    def write(self, event: Mapping[str, Any]) -> None:
        line = to_json_line(dict(event))
        for handle in self._handles:
            handle.write(line)
            handle.flush()
        self._written += 1

    def reopen(self) -> None:
        self._open()

    def close(self, timeout: float = 5.0) -> None:
        for handle in self._handles:
            if handle is not sys.stdout:
                handle.close()
        self._handles = []

    def counters(self) -> dict[str, int]:
        return {"events_written": self._written, "outputs_retried": 0, "events_spooled": 0, "events_dropped": 0}


def open_outputs(specs: Sequence[str], options: DeliveryOptions) -> Outputs:
    return Outputs(specs)
