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


def closing_scapy_client() -> type:
    """scapy's TLS client automaton, made to close as a well-behaved client does.

    Unread data (a NewSessionTicket) in the socket at close() makes Linux send a RST instead of the
    client's close_notify, so the client reads everything before its close_notify and until the server's
    close_notify and FIN after it. scapy is imported here, in the client children that need it only.
    """
    from scapy.layers.tls.automaton_cli import TLSClientAutomaton
    from scapy.layers.tls.record import TLSAlert

    class ClosingClient(TLSClientAutomaton):
        def add_msg(self, pkt):  # type: ignore[no-untyped-def]
            if isinstance(pkt, TLSAlert) and pkt.descr == 0:
                self._closing = True
                self._drain(quiet=0.2)
            super().add_msg(pkt)

        def flush_records(self):  # type: ignore[no-untyped-def]
            super().flush_records()
            if getattr(self, "_closing", False):
                self._drain(quiet=1.0)  # until the server's close_notify and FIN (or a second)

        def _drain(self, quiet: float) -> None:
            self.socket.settimeout(quiet)
            try:
                while self.socket.recv(65536):
                    pass
            except OSError:
                pass

    return ClosingClient


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait for a LISTEN socket on ``port`` without connecting to it (a probe would be captured)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")
