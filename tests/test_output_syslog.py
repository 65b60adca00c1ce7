"""Syslog outputs into a real rsyslogd on loopback (UDP via imudp, TCP via imptcp, TLS via imtcp + gtls).

The test starts rsyslogd in the foreground with its own config, pid file and work directory in tmp_path;
it writes each message's RFC 5424 fields and MSG to a file, which the test reads back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helloscope.sniffer.outputs import DeliveryOptions, open_outputs

from tests.helpers import PCAPS
from tests.receivers import (
    RSYSLOGD,
    Rsyslog,
    running_rsyslog,
    sample_events,
    start_rsyslogd,
    stop_rsyslogd,
    wait_until,
)

QUICK = DeliveryOptions(batch_events=10, batch_seconds=0.02, retry_max_seconds=0.1)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed (Debian package rsyslog; .ci/run installs it)")
    with running_rsyslog(tmp_path / "rsyslog") as daemon:
        yield daemon


def _tls_port(daemon: Rsyslog) -> int:
    if daemon.tls is None:
        pytest.skip("rsyslog's TLS driver is not installed (Debian package rsyslog-gnutls)")
    return daemon.tls


def _arrived(daemon: Rsyslog, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(daemon.messages()) >= count)
    return daemon.messages()


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_rsyslog_receives_every_event_intact_one_per_message(rsyslog: Rsyslog, protocol: str, tmp_path: Path) -> None:
    daemon = rsyslog
    port = {"udp": daemon.udp, "tcp": daemon.tcp}[protocol] if protocol != "tls" else _tls_port(daemon)
    spec = f"syslog+{protocol}://127.0.0.1:{port}"
    if protocol == "tls":
        spec += f"?ca={daemon.ca}&cert={PCAPS / 'pki/client.pem'}&key={PCAPS / 'pki/client.key'}"
    events = sample_events(24)  # every documented outcome, and the hostile server name, four times
    outputs = open_outputs([spec], QUICK)
    for event in events:
        outputs.write(event)
    outputs.close(timeout=10)

    messages = _arrived(daemon, len(events))
    assert [json.loads(message["msg"]) for message in messages] == events
    assert {message["input"] for message in messages} == {"udp": {"imudp"}, "tcp": {"imptcp"}, "tls": {"imtcp"}}[
        protocol
    ]
    assert {(m["pri"], m["app"], m["msgid"], m["sd"]) for m in messages} == {("134", "helloscope", "tls", "-")}
    assert outputs.counters()["events_written"] == len(events)


def test_udp_event_too_large_for_a_datagram_is_counted_and_the_next_still_arrives(
    rsyslog: Rsyslog,
) -> None:
    daemon = rsyslog
    huge, normal = sample_events(2)
    huge["tls"]["client"]["server_name"] = "x" * 70_000  # over the 65,507 bytes a UDP datagram can carry
    outputs = open_outputs([f"syslog+udp://127.0.0.1:{daemon.udp}"], QUICK)
    outputs.write(huge)
    outputs.write(normal)
    outputs.close(timeout=10)
    assert [json.loads(message["msg"]) for message in _arrived(daemon, 1)] == [normal]
    assert (outputs.counters()["events_rejected"], outputs.counters()["events_written"]) == (1, 1)


def test_tcp_reconnects_after_rsyslog_restarts_and_loses_nothing(rsyslog: Rsyslog, tmp_path: Path) -> None:
    daemon = rsyslog
    events = sample_events(20)
    outputs = open_outputs([f"syslog+tcp://127.0.0.1:{daemon.tcp}"], QUICK)
    for event in events[:10]:
        outputs.write(event)
    assert wait_until(lambda: len(daemon.messages()) == 10)

    # Restart: the daemon the fixture started goes away; a second one takes the same ports and file.
    stop_rsyslogd(daemon.process)
    for event in events[10:]:
        outputs.write(event)
    assert wait_until(lambda: outputs.counters()["outputs_retried"] >= 1)
    second = start_rsyslogd(daemon.config)
    try:
        outputs.close(timeout=15)
        assert [json.loads(message["msg"]) for message in _arrived(daemon, 20)] == events
    finally:
        stop_rsyslogd(second)
    assert outputs.counters()["events_written"] == 20


def test_tls_refuses_a_receiver_its_ca_did_not_sign_and_keeps_the_events(
    rsyslog: Rsyslog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = rsyslog
    wrong_ca = PCAPS / "pki" / "untrusted-ca.pem"
    options = DeliveryOptions(spool_dir=str(tmp_path / "spool"), batch_seconds=0.02, retry_max_seconds=0.1)
    outputs = open_outputs([f"syslog+tls://127.0.0.1:{_tls_port(daemon)}?ca={wrong_ca}"], options)
    outputs.write(sample_events(1)[0])
    assert wait_until(lambda: outputs.counters()["outputs_retried"] >= 2)
    outputs.close(timeout=0.2)
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert daemon.messages() == [] and outputs.counters()["events_written"] == 0
    assert list((tmp_path / "spool").glob("*/*.seg"))  # kept for a run with the right CA


def test_tls_without_the_client_certificate_rsyslog_demands_keeps_the_events(
    rsyslog: Rsyslog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = rsyslog
    options = DeliveryOptions(spool_dir=str(tmp_path / "spool"), batch_seconds=0.02, retry_max_seconds=0.1)
    outputs = open_outputs([f"syslog+tls://127.0.0.1:{_tls_port(daemon)}?ca={daemon.ca}"], options)
    for event in sample_events(3):
        outputs.write(event)
    assert wait_until(lambda: outputs.counters()["outputs_retried"] >= 2)
    outputs.close(timeout=0.2)
    # rsyslog completes the handshake, then drops the connection: noticed before anything is sent on it,
    # so nothing counts as written and all three wait on disk.
    assert daemon.messages() == [] and outputs.counters()["events_written"] == 0
    assert outputs.counters()["events_spooled"] == 3
    assert "closed the connection as soon as it was made (does it want a client certificate" in capsys.readouterr().err


def test_analyze_delivers_every_fixture_event_to_rsyslog_as_it_writes_them_to_a_file(
    rsyslog: Rsyslog, tmp_path: Path
) -> None:
    """The whole command: real captures in, the same events in rsyslog (TCP) as in the file output."""
    daemon = rsyslog
    captures = sorted(str(path) for path in PCAPS.glob("*.pcap")) + [str(PCAPS / "hostile" / "hostile-strings.pcap")]
    written = tmp_path / "events.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "-o", f"file:{written}"]
        + ["-o", f"syslog+tcp://127.0.0.1:{daemon.tcp}", "--spool-dir", str(tmp_path / "spool"), *captures],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()]
    assert len(events) > len(captures)  # some fixtures hold several connections
    messages = _arrived(daemon, len(events))
    assert [json.loads(message["msg"]) for message in messages] == events
    assert {(message["app"], message["msgid"]) for message in messages} == {("helloscope", "tls")}
