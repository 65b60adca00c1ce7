"""Worker processes (helloscope.sniffer.run.parallel): the same events and counters as one process, and clean failures.

Every comparison runs the real pipeline on real captures once in-process (``analyze_files``) and once
with workers, and compares the events as sets (workers report in their own order) and the counters.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helloscope.sniffer.capture.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW, decode
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer, to_json_line
from helloscope.sniffer.report.summary import Summary
from helloscope.sniffer.run.parallel import Worker, WorkerError, analyze_parallel, flow_owner, run_workers, worker_count
from helloscope.sniffer.run.pipeline import analyze_files

from tests.helpers import PCAPS, REPO

FIXTURES = sorted(PCAPS.glob("*.pcap")) + sorted(PCAPS.glob("hostile/*.pcap"))
OBSERVER = Observer("test")
# Public captures with many flows, several link types, IPv6, QUIC and tunnels (../shared/corpus).
CORPUS_SAMPLE = (
    "mercury/unit_tests/pcaps/surfshark.pcap",
    "mercury/unit_tests/pcaps/emix.pcap",
    "nDPI/tests/cfgs/default/pcap/1kxun.pcap",
    "ja4/pcap/http2-with-cookies.pcapng",
)


def _canonical(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(event, sort_keys=True) for event in events)


def _compare(paths: list[Path], workers: int) -> None:
    """Workers give one process's events (as a set) and its counters."""
    expected, expected_stats = analyze_files([open_capture(str(path)) for path in paths], OBSERVER)
    events: list[dict[str, Any]] = []
    outcome = analyze_parallel([str(path) for path in paths], workers, OBSERVER, events.append)
    assert _canonical(events) == _canonical(expected)
    assert outcome.stats.as_dict() == expected_stats.as_dict()
    assert outcome.stopped_by is None and outcome.summary is None
    # as analyze's JSON output runs: the workers make the lines and count the events themselves
    lines: list[str] = []
    counted = analyze_parallel([str(path) for path in paths], workers, OBSERVER, lines.append, lines=to_json_line)
    assert _canonical([json.loads(line) for line in lines]) == _canonical(expected)
    summary = Summary()
    for event in expected:
        summary.add(event)
    assert counted.summary == summary and counted.stats.as_dict() == expected_stats.as_dict()


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.name)
def test_one_file_split_by_flow_gives_the_same_events_and_counters(capture: Path, workers: int):
    _compare([capture], workers)


@pytest.mark.parametrize("workers", [2, 3])
def test_many_files_in_parallel_give_the_same_events_and_counters(workers: int):
    _compare(FIXTURES, workers)


def test_fewer_files_than_workers_are_split_by_flow():
    _compare([PCAPS / "tls13-hello-retry.pcap", PCAPS / "quic-split-hello.pcap"], 3)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("relative", CORPUS_SAMPLE)
def test_corpus_sample_gives_the_same_events(corpus: Path, relative: str, workers: int):
    capture = corpus / relative
    expected, expected_stats = analyze_files([open_capture(str(capture))], OBSERVER)
    events: list[dict[str, Any]] = []
    outcome = analyze_parallel([str(capture)], workers, OBSERVER, events.append)
    assert expected and _canonical(events) == _canonical(expected)
    got = outcome.stats.as_dict()
    # A worker cannot sweep idle flows at exactly the packets one process does (see analyze_parallel),
    # so a flow already reported may be dropped as idle by one and at the end of the capture by the other.
    got.pop("idle_evictions")
    want = expected_stats.as_dict()
    want.pop("idle_evictions")
    assert got == want


def test_secrets_embedded_in_pcapng_reach_every_worker(tmp_path: Path):
    if shutil.which("editcap") is None:
        pytest.skip("editcap (wireshark-common) is not installed")
    embedded = tmp_path / "embedded.pcapng"
    # Two connections in one file, so that with three workers at least one worker owns none of them
    # and every owner needs the secrets that came before its packets.
    names = ["tls13-untrusted", "tls12-required-presented"]
    merged = tmp_path / "merged.pcap"
    subprocess.run(
        ["mergecap", "-F", "pcap", "-w", str(merged), *(str(PCAPS / f"{name}.pcap") for name in names)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    keylog = tmp_path / "both.keylog"
    keylog.write_text("".join((PCAPS / f"{name}.keylog").read_text() for name in names))
    subprocess.run(
        ["editcap", "--inject-secrets", f"tls,{keylog}", str(merged), str(embedded)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for workers in (2, 3):
        events: list[dict[str, Any]] = []
        outcome = analyze_parallel([str(embedded)], workers, OBSERVER, events.append)
        assert sorted(event["helloscope"]["decryption"]["status"] for event in events) == ["decrypted"] * 2
        assert outcome.stats.keylog_secrets == len(
            [line for line in keylog.read_text().splitlines() if line and not line.startswith("#")]
        )
    _compare([embedded], 3)


def test_named_pipes_are_not_split_between_workers(tmp_path: Path):
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    capture = str(PCAPS / "tls13-noauth.pcap")
    assert worker_count([str(fifo)], 3) == (1, "a pipe cannot be split between workers: 1 worker(s), one per file")
    assert worker_count([str(fifo), capture], 3)[0] == 2
    assert worker_count([str(fifo), capture], 2) == (2, None)  # whole files: each pipe has one reader
    assert worker_count([capture], 3) == (3, None)


def test_standard_input_is_read_by_one_worker_with_a_note():
    workers, note = worker_count(["a.pcap", "-"], 4)
    assert workers == 1 and note == "standard input cannot be split between workers: reading it with one"
    assert worker_count(["a.pcap", "b.pcap"], 4) == (4, None)
    assert worker_count(["-"], 1) == (1, None)


def test_a_damaged_file_gives_one_note(tmp_path: Path):
    damaged = tmp_path / "cut.pcap"
    data = (PCAPS / "tls13-noauth.pcap").read_bytes()
    damaged.write_bytes(data[: len(data) - 7])
    notes: list[str] = []
    outcome = analyze_parallel([str(damaged)], 3, OBSERVER, lambda event: None, on_note=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"{damaged}: capture damaged at byte offset")
    assert outcome.stats.truncated_files == 1 and outcome.stats.files == 1


def test_progress_adds_up_to_the_file():
    capture = PCAPS / "large-clienthello.pcap"
    progress = [0, 0]

    def add(size: int, packets: int) -> None:
        progress[0] += size
        progress[1] += packets

    outcome = analyze_parallel([str(capture)], 2, OBSERVER, lambda event: None, on_progress=add)
    assert progress == [capture.stat().st_size, outcome.stats.packets]


# ----- which worker owns a frame -----------------------------------------------------------------


def _frames(capture: Path) -> list[tuple[int, bytes]]:
    return [(linktype, frame) for _, linktype, frame in open_capture(str(capture))]


def test_both_directions_of_a_flow_have_one_owner_and_flows_spread():
    owners: dict[frozenset[tuple[bytes, int]], set[int]] = {}
    for capture in FIXTURES:
        for linktype, frame in _frames(capture):
            segment = decode(linktype, frame)
            if segment is not None:
                flow = frozenset({(segment.src, segment.sport), (segment.dst, segment.dport)})
                owners.setdefault(flow, set()).add(flow_owner(linktype, frame, 3))
    assert all(len(found) == 1 for found in owners.values())
    assert {owner for found in owners.values() for owner in found} == {0, 1, 2}


def test_the_shortcut_on_ethernet_frames_agrees_with_decoding():
    """An Ethernet frame read directly gives the owner its decoded IP packet gives."""
    checked = 0
    for capture in FIXTURES:
        for linktype, frame in _frames(capture):
            if linktype == LINKTYPE_ETHERNET and decode(linktype, frame) is not None:
                for workers in (2, 3, 7):
                    assert flow_owner(linktype, frame, workers) == flow_owner(LINKTYPE_RAW, frame[14:], workers)
                checked += 1
    assert checked > 100


def test_a_frame_with_no_flow_belongs_to_worker_0():
    arp = bytes(12) + b"\x08\x06" + bytes(46)
    assert flow_owner(LINKTYPE_ETHERNET, arp, 5) == 0
    assert flow_owner(LINKTYPE_ETHERNET, b"\x00", 5) == 0


# ----- the generic runner: failures and stops ----------------------------------------------------


def _pids_gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _wait_for_stop(worker: Worker) -> None:
    """A long-running job: says it started, then runs until stopped, and says it flushed."""
    try:
        worker.emit({"worker": worker.index, "pid": os.getpid(), "phase": "started"})
        while True:
            time.sleep(0.02)
    finally:
        worker.emit({"worker": worker.index, "pid": os.getpid(), "phase": "flushed"})


def _raise(worker: Worker) -> None:
    time.sleep(0.2)  # let the sibling start
    raise ValueError("bad\nthing")


def test_a_worker_that_raises_stops_the_others_and_says_why_in_one_line():
    events: list[dict[str, Any]] = []
    with pytest.raises(WorkerError) as caught:
        run_workers([_wait_for_stop, _raise], events.append)
    message = str(caught.value)
    assert message.startswith("worker 2 of 2 failed: ValueError: bad thing (at test_parallel.py:")
    assert "\n" not in message
    assert [event["phase"] for event in events] == ["started", "flushed"]  # the sibling flushed first
    assert _pids_gone([event["pid"] for event in events])


def test_on_start_comes_once_the_workers_exist_and_before_their_events():
    calls: list[str] = []
    analyze_parallel(
        [str(PCAPS / "tls13-noauth.pcap")],
        2,
        OBSERVER,
        lambda event: calls.append("event"),
        on_start=lambda: calls.append("start"),
    )
    assert calls == ["start", "event"]


def test_a_worker_that_dies_is_reported():
    def die(worker: Worker) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(WorkerError, match=r"^worker 1 of 1 died \(killed by SIGKILL\)$"):
        run_workers([die], lambda event: None)


def test_a_worker_that_will_not_stop_is_killed_after_the_grace_period():
    def stubborn(worker: Worker) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker.emit({"pid": os.getpid()})
        while True:
            time.sleep(0.02)

    events: list[dict[str, Any]] = []
    with pytest.raises(WorkerError, match=r"^worker 2 of 2 failed: ValueError"):  # the cause, not the fallout
        run_workers([stubborn, _raise], events.append, grace=0.5)
    assert _pids_gone([event["pid"] for event in events])


def test_a_failing_callback_leaves_no_worker_behind():
    pids: list[int] = []

    def fail(event: dict[str, Any]) -> None:
        pids.append(event["pid"])
        if len(pids) == 2:
            raise RuntimeError("sink broke")

    with pytest.raises(RuntimeError, match="sink broke"):
        run_workers([_wait_for_stop, _wait_for_stop], fail)
    assert len(pids) == 2 and _pids_gone(pids)


def test_an_analysis_worker_that_raises_gives_one_line(monkeypatch: pytest.MonkeyPatch):
    def broken(*args: object) -> dict[str, Any]:
        raise KeyError("no such field")

    monkeypatch.setattr("helloscope.sniffer.run.pipeline.build_event", broken)  # the forked workers inherit it
    with pytest.raises(WorkerError, match=r"^worker [12] of 2 failed: KeyError: 'no such field' \(at "):
        analyze_parallel([str(PCAPS / "tls13-noauth.pcap")], 2, OBSERVER, lambda event: None)


# A parent process like `helloscope live --workers 2`: two long-running workers, events printed as
# JSON lines; how it ends is printed last.
_PARENT = textwrap.dedent(
    """
    import json, sys
    from tests.test_parallel import _wait_for_stop
    from helloscope.sniffer.run.parallel import run_workers

    def show(event):
        print(json.dumps(event), flush=True)

    outcome = run_workers([_wait_for_stop, _wait_for_stop], show)
    print(json.dumps({"stopped_by": outcome.stopped_by}), flush=True)
    """
)


_ANALYZE = textwrap.dedent(
    """
    import json, sys
    from helloscope.sniffer.report.events import Observer
    from helloscope.sniffer.run.parallel import analyze_parallel

    def show(event):
        print(json.dumps(event), flush=True)

    outcome = analyze_parallel(sys.argv[1:], 2, Observer("test"), show)
    print(json.dumps({"stopped_by": outcome.stopped_by}), flush=True)
    """
)


def test_a_stopped_analysis_reports_the_connections_its_workers_had_open(tmp_path: Path):
    """Two captures still being written (named pipes): SIGTERM ends the run with what was read so far."""
    head = (PCAPS / "tls13-noauth.pcap").read_bytes()[:624]  # file header, handshake, ClientHello
    fifos = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for fifo in fifos:
        os.mkfifo(fifo)
    parent = subprocess.Popen(
        [sys.executable, "-c", _ANALYZE, *map(str, fifos)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    writers: list[int] = []
    try:
        deadline = time.monotonic() + 20
        for fifo in fifos:
            writers.append(_open_when_read(fifo, deadline))
            os.write(writers[-1], head)
        while any(_unread(writer) for writer in writers) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the bytes are read; let the workers handle them before they are stopped
        parent.send_signal(signal.SIGTERM)
        out, err = parent.communicate(timeout=30)
    finally:
        for writer in writers:
            os.close(writer)
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    *events, last = [json.loads(line) for line in out.splitlines()]
    assert last["stopped_by"] == signal.SIGTERM
    assert [event["helloscope"]["end_reason"] for event in events] == ["capture_end"] * 2
    assert all(event["tls"]["client"]["server_name"] for event in events)
    assert parent.returncode == 0 and err == ""


def _open_when_read(fifo: Path, deadline: float) -> int:
    """The write end of a named pipe, once a worker has opened it for reading."""
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _unread(pipe: int) -> int:
    """Bytes written to a pipe that its reader has not taken yet."""
    return struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("how", ["SIGTERM to the parent", "Ctrl-C to the process group"])
def test_a_stopped_parent_gets_every_workers_last_events_and_leaves_no_orphan(how: str):
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        assert parent.stdout is not None
        started = [json.loads(parent.stdout.readline()) for _ in range(2)]
        assert {event["phase"] for event in started} == {"started"}
        if how == "SIGTERM to the parent":
            parent.send_signal(signal.SIGTERM)
        else:
            os.killpg(parent.pid, signal.SIGINT)
        out, err = parent.communicate(timeout=30)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    expected = signal.SIGTERM if how == "SIGTERM to the parent" else signal.SIGINT
    assert lines[-1] == {"stopped_by": expected}
    assert sorted(event["worker"] for event in lines[:-1] if event["phase"] == "flushed") == [0, 1]
    assert parent.returncode == 0 and err == ""
    assert _pids_gone([event["pid"] for event in started])
