"""HTTP outputs against a real HTTP server on loopback that is down, then fails, then recovers.

Every event must arrive exactly once and in order; a sensor killed with SIGTERM while its destination is
down must leave everything in its spool for the next run, which sends it first.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from helloscope.sniffer.outputs import DeliveryOptions, open_outputs

from tests.helpers import REPO
from tests.receivers import (
    LOOPBACK_CA,
    RESET,
    BulkReceiver,
    free_port,
    loopback_certificate,
    sample_events,
    serving,
    wait_until,
)

FAST = DeliveryOptions(queue_events=40, batch_events=25, batch_seconds=0.05, retry_max_seconds=0.2)


def _options(tmp_path: Path) -> DeliveryOptions:
    return replace(FAST, spool_dir=str(tmp_path / "spool"))


@pytest.mark.parametrize("kind", ["bulk", "hec"])
def test_down_then_failing_receiver_gets_every_event_once_in_order(tmp_path: Path, kind: str) -> None:
    port = free_port()
    spec = f"http://127.0.0.1:{port}/_bulk?index=tls-events" if kind == "bulk" else f"hec://127.0.0.1:{port}?token=t0k"
    events = sample_events(150)
    outputs = open_outputs([spec], _options(tmp_path))
    for event in events:
        outputs.write(event)
    # Nobody listens yet: the sender retries while the queue overflows into the spool.
    assert wait_until(lambda: outputs.counters()["outputs_retried"] >= 2)
    receiver = BulkReceiver(kind, faults=[503, RESET, 500])
    with serving(receiver, port):
        outputs.close(timeout=20)
    counters = outputs.counters()

    assert receiver.sequences() == list(range(150))
    assert receiver.documents == events
    assert counters["events_written"] == 150
    assert counters["events_spooled"] > 0  # the queue holds 40: most of them waited on disk
    assert counters["outputs_retried"] >= 5  # two refused connections, then 503, reset, 500
    assert counters["events_dropped"] == counters["events_rejected"] == 0
    assert not list((tmp_path / "spool").glob("*/*.seg"))  # all acknowledged, nothing left to replay
    if kind == "bulk":
        # Each document under its own event.id: the same _id however often it was sent.
        assert receiver.envelopes == [
            {"create": {"_index": "tls-events", "_id": event["event"]["id"]}} for event in events
        ]
        assert all(headers["Content-Type"] == "application/x-ndjson" for headers in receiver.headers)
    else:
        assert all(headers["Authorization"] == "Splunk t0k" for headers in receiver.headers)
        assert all(envelope["sourcetype"] == "helloscope" for envelope in receiver.envelopes)
        stamps = [datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp() for event in events]
        assert [envelope["time"] for envelope in receiver.envelopes] == pytest.approx(stamps, abs=1e-6)


def test_bulk_item_errors_retry_the_throttled_items_and_count_the_refused(tmp_path: Path) -> None:
    def first_answer(records: list) -> list[int]:
        return [429 if index == 1 else 400 if index == 2 else 201 for index in range(len(records))]

    receiver = BulkReceiver("bulk", faults=[first_answer])
    events = sample_events(5)
    with serving(receiver) as port:
        outputs = open_outputs([f"http://127.0.0.1:{port}/_bulk"], _options(tmp_path))
        for event in events:
            outputs.write(event)
        outputs.close(timeout=20)
    counters = outputs.counters()

    # Items 0, 3 and 4 land at once, the throttled item 1 on the retry, the refused item 2 never.
    assert receiver.sequences() == [0, 3, 4, 1]
    assert (counters["events_written"], counters["events_rejected"], counters["outputs_retried"]) == (4, 1, 1)
    assert receiver.envelopes[0] == {"create": {"_index": "helloscope", "_id": events[0]["event"]["id"]}}


def test_bulk_whole_request_refused_is_counted_and_later_events_still_flow(tmp_path: Path) -> None:
    receiver = BulkReceiver("bulk", faults=[400])
    with serving(receiver) as port:
        outputs = open_outputs([f"http://127.0.0.1:{port}/_bulk"], _options(tmp_path))
        outputs.write(sample_events(1)[0])
        assert wait_until(lambda: outputs.counters()["events_rejected"] == 1)
        for event in sample_events(3)[1:]:
            outputs.write(event)
        outputs.close(timeout=20)
    assert receiver.sequences() == [1, 2]
    assert outputs.counters()["events_written"] == 2


@pytest.mark.parametrize("kind", ["bulk", "hec"])
def test_https_and_hecs_verify_the_receiver(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = BulkReceiver(kind)
    events = sample_events(3)
    with serving(receiver, tls=loopback_certificate(tmp_path)) as port:
        url = f"https://127.0.0.1:{port}/_bulk?" if kind == "bulk" else f"hecs://127.0.0.1:{port}?token=t&"
        trusting = open_outputs([f"{url}ca={LOOPBACK_CA}"], FAST)
        for event in events:
            trusting.write(event)
        trusting.close(timeout=20)
        # The system store does not know the test CA: nothing may be sent to that server.
        doubting = open_outputs([url.rstrip("?&")], replace(FAST, spool_dir=str(tmp_path / "spool")))
        doubting.write(events[0])
        assert wait_until(lambda: doubting.counters()["outputs_retried"] >= 1)
        doubting.close(timeout=0.1)
    assert receiver.documents == events and trusting.counters()["events_written"] == 3
    assert doubting.counters()["events_written"] == 0 and doubting.counters()["events_spooled"] == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err


_SENSOR = textwrap.dedent(
    """
    import json, signal, sys, threading
    from helloscope.sniffer.outputs import DeliveryOptions, open_outputs
    from tests.receivers import sample_events

    spec, spool, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    outputs = open_outputs([spec], DeliveryOptions(spool_dir=spool, queue_events=40, batch_events=25,
                                                   batch_seconds=0.05, retry_max_seconds=0.2))
    done = threading.Event()

    def stop(signum, frame):
        outputs.close(timeout=float(sys.argv[5]))
        print(json.dumps(outputs.counters()), flush=True)
        done.set()

    signal.signal(signal.SIGTERM, stop)
    for event in sample_events(first + count)[first:]:
        outputs.write(event)
    print("written", flush=True)
    done.wait(60)
    """
)


def _start_sensor(spec: str, spool: Path, first: int, count: int, close_timeout: float) -> subprocess.Popen[str]:
    sensor = subprocess.Popen(
        [sys.executable, "-c", _SENSOR, spec, str(spool), str(first), str(count), str(close_timeout)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert sensor.stdout is not None
    assert sensor.stdout.readline() == "written\n"
    return sensor


def _terminate(sensor: subprocess.Popen[str]) -> tuple[dict[str, int], str]:
    sensor.send_signal(signal.SIGTERM)
    out, err = sensor.communicate(timeout=30)
    assert sensor.returncode == 0, err
    return json.loads(out), err


def test_sigterm_while_the_receiver_is_down_loses_nothing_and_the_next_run_replays_first(tmp_path: Path) -> None:
    port = free_port()
    spec = f"http://127.0.0.1:{port}/_bulk"
    spool = tmp_path / "spool"

    first_run = _start_sensor(spec, spool, 0, 100, close_timeout=0.3)
    first_counters, first_err = _terminate(first_run)
    assert first_counters["events_written"] == 0 and first_counters["events_dropped"] == 0
    assert "retrying" in first_err and "Traceback" not in first_err
    assert list(spool.glob("*/*.seg"))  # the 100 events, queued in memory and spooled, are on disk

    receiver = BulkReceiver("bulk", faults=[500])
    with serving(receiver, port):
        second_run = _start_sensor(spec, spool, 100, 30, close_timeout=20)
        assert wait_until(lambda: len(receiver.documents) == 130)
        second_counters, _ = _terminate(second_run)
    assert receiver.sequences() == list(range(130))
    assert second_counters["events_written"] == 130 and second_counters["events_dropped"] == 0


_CRASHING_SENSOR = textwrap.dedent(
    """
    import itertools, sys
    from helloscope.sniffer.outputs import DeliveryOptions, open_outputs
    from tests.receivers import sample_events

    # No memory queue: every event goes through the spool, which is what a kill -9 tests.
    outputs = open_outputs([sys.argv[1]], DeliveryOptions(spool_dir=sys.argv[2], queue_events=0))
    events = sample_events(6)
    for sequence in itertools.count():
        event = events[sequence % 6]
        event["event"]["sequence"] = sequence
        outputs.write(event)
        if sequence % 50 == 49:
            print(sequence + 1, flush=True)
    """
)


def test_kill_9_mid_write_leaves_a_spool_the_next_run_replays_in_order(tmp_path: Path) -> None:
    port = free_port()
    spec = f"http://127.0.0.1:{port}/_bulk"
    spool = tmp_path / "spool"
    crashing = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_SENSOR, spec, str(spool)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert crashing.stdout is not None
    while int(crashing.stdout.readline() or "-1") < 300:
        assert crashing.poll() is None
    crashing.kill()  # SIGKILL: no handler, no close, possibly in the middle of an append
    crashing.wait(10)

    receiver = BulkReceiver("bulk")
    with serving(receiver, port):
        replaying = _start_sensor(spec, spool, 0, 0, close_timeout=20)
        counters, _ = _terminate(replaying)
    delivered = receiver.sequences()
    assert len(delivered) >= 300 and delivered == list(range(len(delivered)))
    assert counters["events_written"] == len(delivered) and counters["spool_torn"] <= 1
