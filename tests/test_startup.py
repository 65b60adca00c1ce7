"""Issue 13 item 3: ``analyze`` imports only what the run uses; the rest waits until a run needs it.

Start-up time itself is the benchmark's to measure (bench/); what is checked here is the design that
keeps it low: which modules a run has loaded when it ends.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

# Loaded by none of the runs below unless they need them.
LIVE_AND_WORKERS = (
    "helloscope.sniffer.run.live",
    "helloscope.sniffer.run.parallel",
    "helloscope.sniffer.capture.filter",
    "helloscope.sniffer.capture.rings",
    "ctypes",
)
NETWORK_OUTPUTS = (
    "helloscope.sniffer.outputs.http",
    "helloscope.sniffer.outputs.syslog",
    "helloscope.sniffer.outputs.delivery",
    "helloscope.sniffer.outputs.spool",
    "ssl",
)
TERMINAL = ("rich",)
UDP = (
    "helloscope.sniffer.transport.quic",
    "helloscope.sniffer.transport.dtls",
    "helloscope.parsers.quic",
    "helloscope.parsers.dtls",
)
CIPHERS = ("cryptography.hazmat.primitives.ciphers",)
DECRYPTION = ("helloscope.parsers.decrypt", "helloscope.parsers.tickets")
COMPRESSION = ("gzip", "bz2", "lzma", "zstandard")
X509 = ("cryptography.x509", "helloscope.parsers.x509")

# Runs the CLI in-process, then prints the modules it loaded (SystemExit is how click ends a command).
_PROBE = """
import json, sys
from helloscope.sniffer.run.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="helloscope")
except SystemExit as stop:
    assert not stop.code, stop.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(*arguments: str) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *arguments], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return set(json.loads(run.stderr.strip().splitlines()[-1]))


def _absent(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in loaded]


def test_keyless_tls13_analysis_to_a_file_loads_no_sensor_network_terminal_udp_or_cryptography_code(tmp_path) -> None:
    loaded = _loaded("analyze", "-q", "-o", str(tmp_path / "events.jsonl"), "pcaps/tls13-flag62-required-missing.pcap")
    assert "helloscope.sniffer.transport.tcp" in loaded  # the probe sees what the run used
    assert _absent(loaded, LIVE_AND_WORKERS + NETWORK_OUTPUTS + TERMINAL + UDP + DECRYPTION + COMPRESSION) == []
    assert not [name for name in loaded if name.startswith("cryptography")]  # no key, no certificate in sight
    assert (tmp_path / "events.jsonl").read_text().count("\n") == 1


def test_what_a_run_uses_is_loaded_when_it_is_used(tmp_path) -> None:
    """The same probe on runs that need the deferred parts: they are there (the lazy imports work)."""
    quic = _loaded("analyze", "-q", "-o", str(tmp_path / "q.jsonl"), "pcaps/quic-split-hello.pcap")
    assert set(UDP + CIPHERS) <= quic
    summary = _loaded("analyze", "-o", str(tmp_path / "s.jsonl"), "pcaps/tls13-flag62-required-missing.pcap")
    assert "rich" in summary  # the summary on stderr is drawn by rich
    keyed = _loaded(
        "analyze",
        "-q",
        "-o",
        str(tmp_path / "k.jsonl"),
        "--keylog",
        "pcaps/tls13-flag62-required-missing.keylog",
        "pcaps/tls13-flag62-required-missing.pcap",
    )
    assert set(CIPHERS + DECRYPTION) <= keyed
    certificate = _loaded("analyze", "-q", "-o", str(tmp_path / "c.jsonl"), "pcaps/tls12-noauth.pcap")
    assert set(X509) <= certificate  # the server's certificate, in the clear, is summarised
    compressed = tmp_path / "capture.pcap.gz"
    compressed.write_bytes(gzip.compress((REPO / "pcaps/tls13-flag62-required-missing.pcap").read_bytes()))
    assert "gzip" in _loaded("analyze", "-q", "-o", str(tmp_path / "z.jsonl"), str(compressed))


@pytest.mark.parametrize("command", ["live", "summary"])
def test_help_loads_no_sensor_network_udp_or_cipher_code(command: str) -> None:
    assert _absent(_loaded(command, "--help"), LIVE_AND_WORKERS + NETWORK_OUTPUTS + UDP + CIPHERS) == []


# After load_deferred_modules(), a run that meets every kind of traffic, key and output imports nothing.
_NOTHING_LEFT = """
import io, json, sys
from pathlib import Path
from helloscope.sniffer.run.live import load_deferred_modules
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.outputs import DeliveryOptions, open_outputs
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.report.summary import Summary
from helloscope.sniffer.run.pipeline import analyze_files
load_deferred_modules()
before = set(sys.modules)
summary = Summary()
for capture in sorted(Path("pcaps").rglob("*.pcap")):
    keys = KeyLog()
    if capture.with_suffix(".keylog").exists():
        keys.feed(capture.with_suffix(".keylog").read_text())
        keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    for event in events:
        summary.add(event)
from helloscope.sniffer.report.render import connection_line, connections_table, print_summary
from rich.console import Console
console = Console(file=io.StringIO(), width=100)
console.print(connection_line(events[0], ">"))
connections_table(events).print(console)
print_summary(console, summary, {})
outputs = open_outputs(["syslog+udp://127.0.0.1:9", "http://127.0.0.1:9/_bulk"], DeliveryOptions())
outputs.write(events[0])
outputs.close(0.1)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_a_sensor_that_drops_root_has_loaded_everything_it_may_import_later() -> None:
    run = subprocess.run([sys.executable, "-c", _NOTHING_LEFT], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
