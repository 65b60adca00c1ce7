"""outputs without a network: spec parsing, files and logrotate, the spool's order, torn records, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from helloscope.sniffer.outputs import ACCEPTED_FORMS, DeliveryOptions, OutputError, open_outputs
from helloscope.sniffer.outputs.delivery import BatchLimits, QueuedDestination, Sent
from helloscope.sniffer.outputs.spool import Spool

from tests.receivers import BulkReceiver, free_port, sample_events, serving, wait_until

QUICK = DeliveryOptions(batch_events=10, batch_seconds=0.02, retry_max_seconds=0.1)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ftp://127.0.0.1/x", "unknown scheme 'ftp'"),
        ("syslog+udp://", "names no host"),
        ("http://127.0.0.1:99999/_bulk", "not a valid URL"),
        ("hec://127.0.0.1:8088", "needs ?token= or HELLOSCOPE_HEC_TOKEN"),
        ("file:", "names no file"),
        ("/nonexistent-dir/events.jsonl", "cannot open output file /nonexistent-dir/events.jsonl"),
        ("syslog+tls://127.0.0.1:6514?ca=/nonexistent.pem", "cannot load its TLS certificates"),
        ("syslog+tls://127.0.0.1:6514?key=/k.pem", "key= without cert="),
    ],
)
def test_unusable_specs_fail_with_one_helpful_line(spec: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELLOSCOPE_HEC_TOKEN", raising=False)
    with pytest.raises(OutputError) as raised:
        open_outputs([spec], DeliveryOptions())
    message = str(raised.value)
    assert says in message and "\n" not in message
    if "scheme" in says or "host" in says:
        assert ACCEPTED_FORMS in message


def test_a_directory_is_not_an_output_file(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        open_outputs([str(tmp_path)], DeliveryOptions())


def test_hec_token_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HELLOSCOPE_HEC_TOKEN", "from-env")
    receiver = BulkReceiver("hec")
    with serving(receiver) as port:
        outputs = open_outputs([f"hec://127.0.0.1:{port}"], QUICK)
        outputs.write(sample_events(1)[0])
        outputs.close()
    assert receiver.headers[0]["Authorization"] == "Splunk from-env"
    assert "wait in memory only" in capsys.readouterr().err  # no spool_dir: said once, at open


def test_file_appends_json_lines_and_reopens_after_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"kept":true}\n')
    events = sample_events(3)
    outputs = open_outputs([f"file:{path}", str(tmp_path / "bare.jsonl")], DeliveryOptions())
    outputs.write(events[0])
    path.rename(tmp_path / "events.jsonl.1")  # what logrotate does before sending SIGHUP
    outputs.write(events[1])  # still the old file: nothing reopened yet
    outputs.reopen()
    outputs.write(events[2])
    outputs.close()

    rotated = [json.loads(line) for line in (tmp_path / "events.jsonl.1").read_text().splitlines()]
    assert rotated == [{"kept": True}, events[0], events[1]]
    assert path.read_text().endswith("\n") and [json.loads(line) for line in path.read_text().splitlines()] == [
        events[2]
    ]
    assert [json.loads(line) for line in (tmp_path / "bare.jsonl").read_text().splitlines()] == events
    assert outputs.counters()["events_written"] == 6


def test_stdout_gets_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    events = sample_events(2)
    outputs = open_outputs(["-"], DeliveryOptions())
    for event in events:
        outputs.write(event)
    outputs.close()
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == events


def _records(count: int, start: int = 0) -> list[bytes]:
    return [f"record {number}".encode() * (1 + number % 3) for number in range(start, start + count)]


def _drain(spool: Spool) -> list[bytes]:
    drained: list[bytes] = []
    while spool.size:
        records, end = spool.peek(4, 1 << 20)
        drained += records
        spool.acknowledge(end)
    return drained


def test_spool_keeps_order_across_segments_acknowledgements_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, limit=64 << 10, segment_bytes=100)  # segments of ~4 KiB: several of them
    records = _records(600)
    assert all(spool.append(record) for record in records)
    assert len(list(tmp_path.glob("*.seg"))) > 2
    first, end = spool.peek(7, 1 << 20)
    assert first == records[:7]
    spool.acknowledge(end)
    spool.close()

    again = Spool(tmp_path, limit=64 << 10)
    assert again.append(b"after restart")
    assert _drain(again) == records[7:] + [b"after restart"]
    assert not list(tmp_path.glob("*.seg")) and not (tmp_path / "ack").exists()


def test_spool_puts_older_records_ahead_of_a_partly_acknowledged_head(tmp_path: Path) -> None:
    spool = Spool(tmp_path, limit=1 << 20)
    for record in _records(5, start=10):
        spool.append(record)
    _, end = spool.peek(2, 1 << 20)
    spool.acknowledge(end)
    assert spool.append_before(_records(3))
    spool.append(b"newest")
    spool.close()
    assert _drain(Spool(tmp_path, limit=1 << 20)) == _records(3) + _records(3, start=12) + [b"newest"]


@pytest.mark.parametrize("damage", ["truncated", "bit flipped"])
def test_a_torn_last_record_is_skipped_and_counted(tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path, limit=1 << 20)
    for record in _records(5):
        spool.append(record)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    if damage == "truncated":
        del data[-3:]  # a crash in the middle of the last append
    else:
        data[-1] ^= 0x01
    segment.write_bytes(bytes(data))

    again = Spool(tmp_path, limit=1 << 20)
    again.append(b"next run")
    assert _drain(again) == _records(4) + [b"next run"]
    assert again.torn == 1


def test_spool_refuses_records_beyond_its_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, limit=120)
    accepted = [spool.append(b"x" * 30) for _ in range(4)]
    assert accepted == [True, True, True, False]  # 4 x (8-byte header + 30) = 152 > 120 for the fourth
    assert spool.size == 114


def test_full_spool_drops_counts_and_warns_once_then_delivers_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    options = replace(QUICK, spool_dir=str(tmp_path), spool_limit=4096, queue_events=5)
    events = sample_events(20)  # each well over 1 KiB: the spool holds about three
    outputs = open_outputs([f"http://127.0.0.1:{port}/_bulk"], options)
    for event in events:
        outputs.write(event)
    dropped = outputs.counters()["events_dropped"]
    assert dropped > 0 and outputs.counters()["events_spooled"] + dropped == 15
    receiver = BulkReceiver("bulk")
    with serving(receiver, port):
        outputs.close(timeout=20)
    kept = receiver.sequences()
    assert kept == sorted(kept) and len(kept) == 20 - dropped
    assert kept[:5] == list(range(5))  # the memory queue filled first
    assert capsys.readouterr().err.count("spool full") == 1


def test_the_next_run_replays_the_spool_first_and_counts_a_torn_record(tmp_path: Path) -> None:
    port = free_port()
    spec = f"http://127.0.0.1:{port}/_bulk"
    options = replace(QUICK, spool_dir=str(tmp_path), queue_events=2)
    down = open_outputs([spec], options)
    for event in sample_events(6):
        down.write(event)
    down.close(timeout=0.1)
    (segment,) = tmp_path.glob("*/*.seg")
    segment.write_bytes(segment.read_bytes()[:-10])  # the last of the six, torn

    receiver = BulkReceiver("bulk")
    with serving(receiver, port):
        up = open_outputs([spec], options)
        up.write(sample_events(7)[6])
        up.close(timeout=20)
    assert receiver.sequences() == [0, 1, 2, 3, 4, 6]
    assert up.counters()["spool_torn"] == 1


def test_one_spool_directory_serves_one_sensor(tmp_path: Path) -> None:
    spec = f"syslog+tcp://127.0.0.1:{free_port()}"
    first = open_outputs([spec], DeliveryOptions(spool_dir=str(tmp_path)))
    try:
        with pytest.raises(OutputError, match="in use by another helloscope"):
            open_outputs([spec], DeliveryOptions(spool_dir=str(tmp_path)))
    finally:
        first.close(timeout=0.1)


def test_without_a_spool_undelivered_events_are_counted_lost_at_close(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = open_outputs([f"syslog+tcp://127.0.0.1:{free_port()}"], QUICK)
    for event in sample_events(3):
        outputs.write(event)
    assert wait_until(lambda: outputs.counters()["outputs_retried"] >= 1)
    outputs.close(timeout=0.1)
    assert outputs.counters()["events_dropped"] == 3
    warned = capsys.readouterr().err
    assert "3 undelivered events are lost (no spool directory)" in warned
    assert "queue full" not in warned  # three events fill no queue: the run ended, that is all
    outputs.write(sample_events(1)[0])  # a late event (a sensor's last stats after close) is counted, not raised
    assert outputs.counters()["events_dropped"] == 4


def test_the_same_destination_twice_is_refused() -> None:
    with pytest.raises(OutputError, match="named twice: syslog\\+udp://127.0.0.1:514"):
        open_outputs(["syslog+udp://127.0.0.1", "syslog+udp://127.0.0.1:514"], DeliveryOptions())


class _SurprisingTransport:
    """Fails its first send with an exception no transport is meant to raise (a library bug, say)."""

    name = "surprising"
    linger = 0.0

    def __init__(self) -> None:
        self.delivered: list[bytes] = []
        self.failed = False

    def send(self, records: Sequence[bytes]) -> Sent:
        if not self.failed:
            self.failed = True
            raise ValueError("library bug")
        self.delivered += records
        return Sent()

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_an_unexpected_exception_in_the_sender_is_retried_not_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    transport = _SurprisingTransport()
    destination = QueuedDestination(transport, BatchLimits(10, 1 << 20, 100, 0.05), None)
    destination.write(b"first")
    destination.write(b"second")
    destination.begin_close(time.monotonic() + 10)
    destination.finish_close()
    assert transport.delivered == [b"first", b"second"]
    assert destination.counters()["outputs_retried"] == 1
    assert "surprising: unexpected ValueError: library bug; retrying" in capsys.readouterr().err


def test_an_unusable_spool_directory_fails_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(
        OutputError, match=r"^cannot use spool directory .*not-a-directory/[0-9a-f]{16}: Not a directory$"
    ):
        open_outputs(["syslog+udp://127.0.0.1"], DeliveryOptions(spool_dir=str(blocker)))
