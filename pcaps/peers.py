"""Child processes for the loopback recorders (pcaps/make_fixtures.py, bench/inference_corpus.py).

Every peer, tcpdump included, runs under a deadline: its merged output is collected by a thread so the
recorder can wait for a readiness line, and a peer still running at its deadline is killed by its own
handle, never by name.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

READY_TIMEOUT = 10.0  # seconds for a peer to print that it is ready


class Peer:
    """A child process whose merged output is collected by a thread."""

    def __init__(
        self,
        argv: list[str],
        log: list[str],
        name: str,
        stdin: int | None = subprocess.DEVNULL,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        log.append(f"$ {' '.join(argv)}")
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.name} never printed {text!r}:\n" + "\n".join(self.lines[-30:]))

    def write(self, data: bytes) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.stdin.close()

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.log.append(f"[{self.name}] still running after {timeout:.0f}s: killed")
            self.kill()
            code = self.proc.wait()
        self._reader.join(timeout=2)
        self.log.extend(f"[{self.name}] {line}" for line in self.lines)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # this process only (by its own handle), never by name
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
