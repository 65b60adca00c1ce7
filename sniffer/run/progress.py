"""A progress bar on stderr while captures are analysed: bytes read of the total, packets/s, connections
reported, time left.

Shown only when stderr is a terminal and the run is not ``--quiet`` (:func:`wanted`); otherwise
:func:`progress_bar` gives a :class:`NoProgress` that costs a method call. The bar never starts a
thread (it redraws from :meth:`ProgressBar.advance`, at most every ``_REDRAW`` seconds), so worker
processes may be forked while it is shown, and it disappears when the run ends so the summary that
follows starts on a clean line. Use::

    with progress_bar(paths, quiet=quiet) as bar:
        ... bar.advance(size=bytes_read, packets=count) ... bar.advance(reports=1) ...

With workers, :func:`helloscope.sniffer.run.parallel.analyze_parallel`'s ``on_progress`` feeds ``advance(size,
packets)`` and each event ``advance(reports=1)``; in one process, :func:`with_progress` wraps a reader.
While the bar is up, writes through ``sys.stdout``/``sys.stderr`` (warnings) appear above it; events
streamed to the same terminal through a stream object taken before it started would break the bar
apart, so pass ``quiet=True`` then.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Final, Self

from helloscope.sniffer.capture.compression import PEEK, compression
from helloscope.sniffer.capture.files import CaptureReader

if TYPE_CHECKING:
    from rich.console import Console

_REDRAW: Final = 0.1  # seconds between two redraws
_SETTLE: Final = 0.5  # seconds before rates and time left are shown
_EVERY: Final = 4096  # frames between two updates from with_progress


def wanted(stream: IO[str], quiet: bool) -> bool:
    """Whether to show progress on ``stream``: a terminal, and the user did not ask for quiet."""
    return not quiet and stream.isatty()


def total_size(paths: Sequence[str]) -> int | None:
    """Bytes the readers will consume over all ``paths``; None when unknown (stdin, pipes, compressed files)."""
    total = 0
    for path in paths:
        try:
            if path == "-" or not stat.S_ISREG(os.stat(path).st_mode):
                return None  # a pipe has no size, and a byte read from it here would be lost to the reader
            with open(path, "rb") as handle:
                if compression(handle.read(PEEK)) is not None:  # the reader counts uncompressed bytes
                    return None
            total += os.path.getsize(path)
        except OSError:
            return None
    return total


class ProgressBar:
    """A rich progress bar on ``console``; ``total`` bytes, or None for a bar without an end."""

    def __init__(self, total: int | None, console: Console) -> None:
        # rich is imported when a bar is drawn: a quiet or piped run does not pay for it at startup
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.bytes = 0
        self.packets = 0
        self.reports = 0
        self._progress = Progress(
            BarColumn(bar_width=16),  # the whole line fits in 80 columns
            DownloadColumn(),
            TextColumn("{task.fields[rate]} pkt/s"),
            TextColumn("connections: {task.fields[reports]}"),
            TextColumn("eta {task.fields[eta]}"),
            console=console,
            auto_refresh=False,  # no refresh thread: workers are forked while the bar is up
            transient=True,
        )
        self._total = total
        self._task = self._progress.add_task("reading", total=total, rate="-", reports=0, eta="-")
        self._started = time.monotonic()
        self._drawn = 0.0

    def __enter__(self) -> Self:
        self._progress.start()
        self._started = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def advance(self, size: int = 0, packets: int = 0, reports: int = 0) -> None:
        """Add bytes read, packets handled and connections reported; redraw if it is time."""
        self.bytes += size
        self.packets += packets
        self.reports += reports
        now = time.monotonic()
        if now - self._drawn >= _REDRAW:
            self.redraw(now)

    def redraw(self, now: float | None = None) -> None:
        """Draw the bar as of ``now`` (time.monotonic(); default: now)."""
        now = time.monotonic() if now is None else now
        self._drawn = now
        elapsed = now - self._started
        rate = eta = "-"
        if elapsed >= _SETTLE:  # rates over the first instants of a run say nothing
            rate = f"{self.packets / elapsed:,.0f}"
            if self._total is not None and self.bytes:
                left = max(self._total - self.bytes, 0) * elapsed / self.bytes
                eta = f"{int(left) // 3600}:{int(left) // 60 % 60:02d}:{int(left) % 60:02d}"
        self._progress.update(self._task, completed=self.bytes, rate=rate, reports=self.reports, eta=eta)
        self._progress.refresh()


class NoProgress:
    """What :func:`progress_bar` gives when progress is not wanted: the same calls, doing nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def advance(self, size: int = 0, packets: int = 0, reports: int = 0) -> None:
        return None


def progress_bar(paths: Sequence[str], *, quiet: bool, console: Console | None = None) -> ProgressBar | NoProgress:
    """A bar for reading ``paths`` on stderr (or ``console``), or :class:`NoProgress` when not wanted."""
    if console is None:
        if not wanted(sys.stderr, quiet):
            return NoProgress()
        from rich.console import Console

        console = Console(file=sys.stderr)
    elif quiet or not console.is_terminal:
        return NoProgress()
    return ProgressBar(total_size(paths), console)


def with_progress(reader: CaptureReader, bar: ProgressBar | NoProgress) -> Iterator[tuple[float, int, bytes]]:
    """The reader's frames, advancing ``bar`` with the bytes and packets read as they pass (the packets
    its sieve took included)."""
    size = packets = 0
    for count, item in enumerate(reader, 1):
        if not count % _EVERY:
            bar.advance(size=reader.bytes_read - size, packets=reader.packets - packets)
            size, packets = reader.bytes_read, reader.packets
        yield item
    bar.advance(size=reader.bytes_read - size, packets=reader.packets - packets)
