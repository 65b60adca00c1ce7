"""The progress bar (helloscope.sniffer.run.progress): shown only on a terminal without --quiet, and what it says."""

from __future__ import annotations

import gzip
import io
import os
import re
import time
from pathlib import Path

import pytest
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.parallel import analyze_parallel
from helloscope.sniffer.run.pipeline import analyze_files
from helloscope.sniffer.run.progress import NoProgress, ProgressBar, progress_bar, total_size, wanted, with_progress
from rich.console import Console

from tests.helpers import PCAPS

CAPTURE = PCAPS / "large-clienthello.pcap"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _terminal_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160), out


def test_progress_is_wanted_only_on_a_terminal_without_quiet():
    assert wanted(_Terminal(), quiet=False)
    assert not wanted(_Terminal(), quiet=True)
    assert not wanted(io.StringIO(), quiet=False)


def test_no_bar_when_the_console_is_not_a_terminal_or_quiet():
    assert isinstance(progress_bar([str(CAPTURE)], quiet=False, console=Console(file=io.StringIO())), NoProgress)
    console, _ = _terminal_console()
    assert isinstance(progress_bar([str(CAPTURE)], quiet=True, console=console), NoProgress)
    assert isinstance(progress_bar([str(CAPTURE)], quiet=False, console=console), ProgressBar)


def test_stderr_that_is_not_a_terminal_gets_no_bar(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_bar([str(CAPTURE)], quiet=False), NoProgress)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert isinstance(progress_bar([str(CAPTURE)], quiet=False), ProgressBar)


def test_the_total_is_the_files_sizes_and_unknown_for_stdin_pipes_or_gzip(tmp_path: Path):
    other = PCAPS / "tls13-noauth.pcap"
    assert total_size([str(CAPTURE), str(other)]) == CAPTURE.stat().st_size + other.stat().st_size
    assert total_size([str(CAPTURE), "-"]) is None
    compressed = tmp_path / "c.pcap.gz"
    compressed.write_bytes(gzip.compress(CAPTURE.read_bytes()))
    assert total_size([str(compressed)]) is None
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)
    # both ends open and bytes waiting, so that a reading total_size fails here instead of blocking
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"\xd4\xc3")
        assert total_size([str(fifo)]) is None
        assert os.read(reader, 2) == b"\xd4\xc3"  # left for the capture reader
    finally:
        os.close(writer)
        os.close(reader)


def test_the_bar_shows_bytes_of_total_packet_rate_connections_and_time_left():
    console, out = _terminal_console()
    with ProgressBar(2_000_000, console) as bar:
        bar.advance(size=1_000_000, packets=5000)
        bar.advance(reports=7)
        bar.redraw()
        assert "- pkt/s" in out.getvalue() and "eta -" in out.getvalue()  # no rate in the first instant
        bar.redraw(time.monotonic() + 100)  # as if 100 s had passed: 50 packets/s, as long again to go
        shown = out.getvalue()
    assert "1.0/2.0 MB" in shown and "connections: 7" in shown
    assert re.search(r" (49|50) pkt/s", shown)
    assert re.search(r"eta 0:01:(39|40)", shown)
    assert "\x1b[" in shown  # drawn for a terminal


def test_a_bar_without_a_total_still_counts():
    console, out = _terminal_console()
    with ProgressBar(None, console) as bar:
        bar.advance(size=4096, packets=3, reports=1)
        bar.redraw()
    assert "4.1/? kB" in out.getvalue() and "connections: 1" in out.getvalue()


def test_one_process_reading_through_with_progress_counts_the_whole_file():
    console, _ = _terminal_console()
    reader = open_capture(str(CAPTURE))
    with ProgressBar(CAPTURE.stat().st_size, console) as bar:
        frames = list(with_progress(reader, bar))
    assert bar.bytes == CAPTURE.stat().st_size and bar.packets == len(frames) > 0


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_add_up_to_the_whole_file(workers: int):
    _, stats = analyze_files([open_capture(str(CAPTURE))], Observer("test"))
    console, _ = _terminal_console()
    with ProgressBar(CAPTURE.stat().st_size, console) as bar:
        analyze_parallel(
            [str(CAPTURE)],
            workers,
            Observer("test"),
            lambda event: bar.advance(reports=1),
            on_progress=lambda size, packets: bar.advance(size=size, packets=packets),
        )
    assert (bar.bytes, bar.packets, bar.reports) == (CAPTURE.stat().st_size, stats.packets, stats.tls_connections)
