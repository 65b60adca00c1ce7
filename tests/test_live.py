"""``helloscope live`` on a veth link between two namespaces, with real OpenSSL and scapy peers.

The servers (``openssl s_server``) run in the server namespace, the clients in the client namespace and
the sensor on the server's veth end, writing to files. The peers and scenarios are the fixture
recorder's (pcaps/make_fixtures.py), pointed at the namespace address instead of loopback. One
namespace pair serves the whole module; every peer and sensor runs under a deadline.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import open_capture

from tests.helpers import PCAPS, REPO, assert_schema_valid
from tests.netns import SERVER_ADDRESS, Link, namespaces_unavailable, veth_link
from tests.receivers import RESET, RSYSLOGD, BulkReceiver, running_rsyslog, serving, wait_until

sys.path.insert(0, str(PCAPS))
import make_fixtures as fixtures  # noqa: E402 - pcaps/ is a script directory, not a package
from peers import Peer  # noqa: E402

CLONE_NEWNET = 0x40000000
SENSOR_DEADLINE = 30.0  # seconds a sensor may take to start or to stop
TLS12_BULK = 300_000  # bytes the TLS 1.2 client sends after its handshake: bulk the pcap must not keep
SCAPY_CLIENT = (
    "import json, sys; sys.path[:0] = [sys.argv[1]]; import make_fixtures as f; "
    "f.HOST = sys.argv[2]; f.scapy_client(json.loads(sys.argv[3]))"
)
# Four outcomes: TLS 1.3 client certificate accepted, TLS 1.3 certificate required but missing,
# TLS 1.2, and a flagged TLS 1.3 client (tls_flags codepoint 62, flag 80; scapy).
SCENARIOS = {
    sc.name: sc
    for sc in fixtures.SCENARIOS
    if sc.name in ("tls13-required-presented", "tls13-required-missing", "tls12-noauth", "tls13-flag62-honored")
}


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        with pytest.MonkeyPatch.context() as patch, veth_link() as made:
            patch.setattr(fixtures, "HOST", SERVER_ADDRESS)  # the fixtures' peers, on the veth link
            yield made
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot make network namespaces here: {error.stderr.strip()}")


def converse(link: Link, work: Path, names: tuple[str, ...]) -> None:
    """Run these scenarios' servers and clients at once; each TLS 1.3 OpenSSL client and the scapy
    client's server log their secrets to ``work/NAME.keylog`` while the sensor runs."""
    log: list[str] = []
    servers: list[Peer] = []
    clients: list[Peer] = []
    try:
        for name in names:
            sc = SCENARIOS[name]
            own_keys = sc.client == "scapy"  # scapy cannot log keys: its server does
            server_keys = work / (f"{name}.keylog" if own_keys else f"{name}.server-keylog")
            server = Peer(link.server.argv(*fixtures.server_argv(sc, server_keys)), log, name, stdin=subprocess.PIPE)
            servers.append(server)
            server.wait_for("ACCEPT")
        for name in names:
            sc = SCENARIOS[name]
            command = fixtures.client_argv(sc, 0, work / f"{name}.session")
            if sc.client == "scapy":
                command = [sys.executable, "-c", SCAPY_CLIENT, str(PCAPS), SERVER_ADDRESS, command[-1]]
                clients.append(Peer(link.client.argv(*command), log, name, cwd=REPO))
                continue
            if sc.tls == "1.3":
                command += ["-keylogfile", str(work / f"{name}.keylog")]
            client = Peer(link.client.argv(*command), log, name, stdin=subprocess.PIPE)
            client.write(b"hi\n" + (b"x" * TLS12_BULK if sc.tls == "1.2" else b""))
            clients.append(client)
        time.sleep(fixtures.CLIENT_LINGER)
        for client in clients:
            client.close_stdin()  # s_client sends close_notify and quits on EOF
            client.wait(fixtures.PEER_TIMEOUT)
        for server in servers:
            server.wait(5.0)
    finally:
        for peer in clients + servers:
            peer.kill()
            peer.close_stdin()


@contextmanager
def sensor(link: Link, *options: str, prefix: tuple[str, ...] = ()) -> Iterator[Peer]:
    argv = [*prefix, sys.executable, "-m", "helloscope.sniffer", "live", "-i", link.server.interface, *options]
    peer = Peer(link.server.argv(*argv), [], "sensor", cwd=REPO)
    try:
        peer.wait_for("listening on", timeout=SENSOR_DEADLINE)
        yield peer
    finally:
        peer.kill()


def stop(peer: Peer, number: int = signal.SIGTERM) -> int:
    peer.proc.send_signal(number)
    return peer.wait(SENSOR_DEADLINE)


def events_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_events(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SENSOR_DEADLINE
    while len(events := events_in(path)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return events


def by_scenario(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ports = {sc.port: name for name, sc in SCENARIOS.items()}
    return {ports[event["destination"]["port"]]: event for event in events if event["event"]["kind"] == "event"}


def assert_truth(event: dict[str, Any], name: str) -> None:
    sc = SCENARIOS[name]
    helloscope = event["helloscope"]
    assert event["tls"]["version"] == sc.tls
    assert helloscope["outcome"] == sc.truth.outcome
    assert helloscope["certificate_request"]["seen"] == sc.truth.certificate_request
    assert helloscope["client_certificate"]["state"] == sc.truth.client_certificate
    assert helloscope["request_mtls"] is (sc.flag_codepoint is not None)
    flagged = "honored" if sc.flag_codepoint is not None else "unsolicited" if sc.truth.certificate_request else "none"
    assert helloscope["flag_outcome"] == flagged


def test_live_sensor_reports_real_handshakes_follows_key_logs_and_keeps_handshake_packets(link: Link):
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path, pcap = work / "events.jsonl", work / "handshakes.pcapng"
        keylogs = [work / f"{name}.keylog" for name in SCENARIOS if name != "tls12-noauth"]
        for path in keylogs:
            path.touch()  # the peers create nothing yet: the sensor follows the empty files as they grow
        options = [f"--keylog={path}" for path in keylogs]
        with sensor(
            link, "-o", f"file:{events_path}", "--write-pcap", str(pcap), "--stats-interval", "1", *options
        ) as peer:
            converse(link, work, tuple(SCENARIOS))
            assert stop(peer) == 0
            assert any(line.startswith("helloscope: stats ") for line in peer.lines)
        events = events_in(events_path)
        assert_schema_valid(events, "live")  # the connections and the closing stats event
        reported = by_scenario(events)
        assert sorted(reported) == sorted(SCENARIOS) and len(events) == len(SCENARIOS) + 1
        for name, event in reported.items():
            assert_truth(event, name)
            keyed = name != "tls12-noauth"
            assert (event["helloscope"]["decryption"]["status"] == "decrypted") is keyed, name
        assert reported["tls13-flag62-honored"]["helloscope"]["tls_flags"]["codepoint"] == 62
        stats = events[-1]
        assert stats["event"]["dataset"] == "helloscope.stats"
        counters = stats["helloscope"]["stats"]
        assert counters["tls_connections"] == len(SCENARIOS) and counters["events_written"] == len(SCENARIOS)
        assert counters["kernel_received"] >= counters["packets"] > 0 and counters["kernel_dropped"] == 0

        # The pcapng holds every connection's ClientHello and not the TLS 1.2 client's bulk data.
        payload: dict[int, int] = {}
        hello_ports = set()
        with open_capture(str(pcap)) as reader:
            for _, linktype, frame in reader:
                segment = decode(linktype, frame)
                assert segment is not None
                payload[segment.dport] = payload.get(segment.dport, 0) + len(segment.payload)
                if segment.payload[:1] == b"\x16" and segment.payload[5:6] == b"\x01":
                    hello_ports.add(segment.dport)
        assert hello_ports == {sc.port for sc in SCENARIOS.values()}
        assert counters["bytes"] > TLS12_BULK  # the bulk was captured ...
        assert 0 < payload[SCENARIOS["tls12-noauth"].port] < TLS12_BULK // 4  # ... and not kept


def test_workers_share_the_capture_and_report_the_same_events(link: Link):
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path, pcap = work / "events.jsonl", work / "handshakes.pcapng"
        keylog = work / "tls13-required-presented.keylog"
        keylog.touch()
        options = (
            "--workers",
            "2",
            "--buffer-mb",
            "8",
            "-o",
            str(events_path),
            "--write-pcap",
            str(pcap),
            "--keylog",
            str(keylog),
        )
        per_worker = [work / "handshakes.w1.pcapng", work / "handshakes.w2.pcapng"]
        with sensor(link, *options) as peer:
            converse(link, work, tuple(SCENARIOS))
            rotated = [path.rename(path.with_suffix(".old")) for path in per_worker]
            peer.proc.send_signal(signal.SIGHUP)  # passed on to the workers, who reopen their pcap files
            deadline = time.monotonic() + SENSOR_DEADLINE
            while not all(path.exists() for path in per_worker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert all(path.exists() for path in per_worker)
            assert stop(peer) == 0
        assert sum("started" in line for line in peer.lines) == 2
        events = events_in(events_path)
        reported = by_scenario(events)
        assert sorted(reported) == sorted(SCENARIOS) and len(events) == len(SCENARIOS) + 1
        for name, event in reported.items():
            assert_truth(event, name)
        assert reported["tls13-required-presented"]["helloscope"]["decryption"]["status"] == "decrypted"
        counters = events[-1]["helloscope"]["stats"]
        assert counters["tls_connections"] == counters["events_written"] == len(SCENARIOS)
        assert counters["kernel_received"] >= counters["packets"] > 0
        # Each worker keeps its own handshake file; together they hold every connection's hello.
        hello_ports = set()
        for path in rotated:
            with open_capture(str(path)) as reader:
                for _, linktype, frame in reader:
                    segment = decode(linktype, frame)
                    if segment is not None and segment.payload[:1] == b"\x16" and segment.payload[5:6] == b"\x01":
                        hello_ports.add(segment.dport)
        assert hello_ports == {sc.port for sc in SCENARIOS.values()}


@contextmanager
def receiving_in(namespace: str, receiver: BulkReceiver, port: int) -> Iterator[None]:
    """Serve ``receiver`` on the namespace's own loopback: the listening socket is made by a thread that
    joined the namespace (network namespaces are per thread), so the sensor inside reaches it."""
    stack = ExitStack()
    failure: list[BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{namespace}", "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            stack.enter_context(serving(receiver, port))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            failure.append(error)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(SENSOR_DEADLINE)
    if failure:
        raise failure[0]
    with stack:
        yield


def test_flaky_http_receiver_gets_every_event_once_in_order_across_a_sigterm_while_it_was_down(link: Link):
    port = 47480
    spec = f"http://127.0.0.1:{port}/_bulk"
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path = work / "events.jsonl"
        options = ("-o", spec, "-o", str(events_path), "--spool-dir", str(work / "spool"))
        # The receiver is down for the whole first run: its events wait in the spool at SIGTERM.
        with sensor(link, *options) as peer:
            converse(link, work, ("tls13-required-missing", "tls12-noauth"))
            assert stop(peer) == 0
        first_run = events_in(events_path)
        assert len(first_run) == 3 and first_run[-1]["event"]["kind"] == "metric"
        # Up, but failing its first requests: the next run sends the spooled events first, then its own.
        receiver = BulkReceiver("bulk", faults=[503, RESET, 500])
        with receiving_in(link.server.namespace, receiver, port), sensor(link, *options) as peer:
            converse(link, work, ("tls13-flag62-honored",))
            assert stop(peer) == 0
        everything = events_in(events_path)
        assert len(everything) == 5
        assert receiver.documents == everything  # each exactly once, in order
        assert receiver.requests >= 4  # the three faults were met and retried
        assert everything[-1]["helloscope"]["stats"]["outputs_retried"] >= 3


def test_rsyslog_in_the_namespace_receives_the_sensors_events_intact(link: Link):
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed (Debian package rsyslog; .ci/run installs it)")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path = work / "events.jsonl"
        with running_rsyslog(work / "rsyslog", prefix=tuple(link.server.argv())) as daemon:
            outputs = ("-o", str(events_path), "-o", f"syslog+tcp://127.0.0.1:{daemon.tcp}")
            with sensor(link, *outputs, "-o", f"syslog+udp://127.0.0.1:{daemon.udp}") as peer:
                converse(link, work, ("tls13-required-missing", "tls13-flag62-honored"))
                assert stop(peer) == 0
            events = events_in(events_path)
            assert len(events) == 3  # two connections and the stats event
            assert wait_until(lambda: len(daemon.messages()) == 2 * len(events))
            messages = daemon.messages()
        for transport in ("imptcp", "imudp"):
            arrived = [json.loads(m["msg"]) for m in messages if m["input"] == transport]
            assert sorted(map(json.dumps, arrived)) == sorted(map(json.dumps, events)), transport
        assert [m["msgid"] for m in messages if m["input"] == "imptcp"] == ["tls", "tls", "stats"]
        for name, event in by_scenario(events).items():
            assert_truth(event, name)


def test_sighup_reopens_the_outputs_and_the_pcap_after_logrotate_renamed_them(link: Link):
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path, pcap = work / "events.jsonl", work / "handshakes.pcapng"
        with sensor(link, "-o", str(events_path), "--write-pcap", str(pcap)) as peer:
            converse(link, work, ("tls13-required-missing",))
            assert len(wait_for_events(events_path, 1)) == 1
            events_path.rename(work / "events.jsonl.1")
            pcap.rename(work / "handshakes.pcapng.1")
            peer.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + SENSOR_DEADLINE
            while not pcap.exists() and time.monotonic() < deadline:  # the signal was handled
                time.sleep(0.05)
            converse(link, work, ("tls12-noauth",))
            assert stop(peer) == 0
        assert list(by_scenario(events_in(work / "events.jsonl.1"))) == ["tls13-required-missing"]
        assert list(by_scenario(events_in(events_path))) == ["tls12-noauth"]
        for path, port in ((work / "handshakes.pcapng.1", 47413), (pcap, 47401)):
            with open_capture(str(path)) as reader:
                ports = {segment.dport for segment in (decode(lt, frame) for _, lt, frame in reader) if segment}
            assert port in ports and ports <= {port, *range(32768, 61000)}


def test_sigint_reports_pending_connections_and_exits_130(link: Link):
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        events_path = work / "events.jsonl"
        # An idle timeout longer than the test: only the stop itself can report the connection.
        with sensor(link, "-o", str(events_path), "--idle-timeout", "3600", "--port", "47413") as peer:
            server = Peer(link.server.argv("openssl", "s_server", "-accept", f"{SERVER_ADDRESS}:47413", "-cert",
                                           str(fixtures.PKI / "server.pem"), "-key", str(fixtures.PKI / "server.key"),
                                           "-naccept", "1"), [], "server", stdin=subprocess.PIPE)  # fmt: skip
            client = None
            try:
                server.wait_for("ACCEPT")
                client = Peer(link.client.argv(*fixtures.client_argv(SCENARIOS["tls13-required-missing"], 0, work)),
                              [], "client", stdin=subprocess.PIPE)  # fmt: skip
                client.wait_for("Verify return code")  # handshake done; the connection stays open
                assert events_in(events_path) == []
                assert stop(peer, signal.SIGINT) == 130
            finally:
                for other in (client, server):
                    if other is not None:
                        other.kill()
                        other.close_stdin()
        (event,) = by_scenario(events_in(events_path)).values()
        assert event["helloscope"]["end_reason"] == "capture_end"
        assert events_in(events_path)[-1]["event"]["kind"] == "metric"


def test_user_option_drops_root_before_opening_the_outputs(link: Link):
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        work.chmod(0o1777)  # nobody writes the events here
        events_path = work / "events.jsonl"
        with sensor(link, "--user", "nobody", "-o", str(events_path)) as peer:
            status = Path(f"/proc/{peer.proc.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
            converse(link, work, ("tls12-noauth",))
            assert stop(peer) == 0
        assert events_path.stat().st_uid == nobody.pw_uid
        assert list(by_scenario(events_in(events_path))) == ["tls12-noauth"]


def test_runs_unprivileged_with_only_the_capture_capabilities_as_the_systemd_unit_does(link: Link):
    # contrib/helloscope.service: a non-root user with ambient CAP_NET_RAW and CAP_NET_ADMIN.
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    caps = "+net_raw,+net_admin"
    prefix = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", f"--inh-caps={caps}",
              f"--ambient-caps={caps}")  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        work.chmod(0o1777)
        events_path = work / "events.jsonl"
        with sensor(link, "-o", str(events_path), prefix=prefix) as peer:
            converse(link, work, ("tls13-required-missing",))
            assert stop(peer) == 0
        assert events_path.stat().st_uid == pwd.getpwnam("nobody").pw_uid
        assert list(by_scenario(events_in(events_path))) == ["tls13-required-missing"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("-i", "no-such-if0"), "no such network interface: no-such-if0"),
        (("--bpf", "tcp port"), "bad filter expression"),
        (("-o", "gopher://example.invalid/"), "gopher://example.invalid/"),
        (("--keylog", "/nonexistent/keys.log"), "/nonexistent/keys.log"),
        (("--user", "no-such-user-hs"), "no-such-user-hs"),
        (("--write-pcap", "/nonexistent/handshakes.pcapng"), "cannot write /nonexistent/handshakes.pcapng"),
        (("-o", "/nonexistent/events.jsonl"), "/nonexistent/events.jsonl"),
    ],
)
def test_unusable_options_give_one_line_and_exit_2(link: Link, options: tuple[str, ...], message: str):
    argv = [sys.executable, "-m", "helloscope.sniffer", "live", "-i", link.server.interface, *options]
    result = link.server.run(*argv, timeout=SENSOR_DEADLINE, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("helloscope: error: ") and message in result.stderr


def test_capture_without_cap_net_raw_names_the_capability(link: Link):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    prefix = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
    argv = [*prefix, sys.executable, "-m", "helloscope.sniffer", "live", "-i", link.server.interface, "-o", os.devnull]
    result = link.server.run(*argv, timeout=SENSOR_DEADLINE, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "CAP_NET_RAW" in result.stderr, result.stderr
