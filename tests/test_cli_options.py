"""Issue 16 items 8 and 12-14: help, version, sizes, --fields paths, lost events, warnings, directories,
compressed captures and --bpf on files."""

from __future__ import annotations

import bz2
import json
import lzma
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from helloscope.sniffer.run import cli as cli_module
from helloscope.sniffer.run import pipeline as pipeline_module
from helloscope.sniffer.run.cli import cli
from helloscope.sniffer.run.live import stats_line

from tests.helpers import PCAPS, REPO, analyze, without_capture
from tests.receivers import free_port

FIXTURE = PCAPS / "tls13-flag62-honored.pcap"
OTHER = PCAPS / "tls12-noauth.pcap"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


@pytest.mark.parametrize("command", ["analyze", "live", "summary"])
def test_every_help_ends_with_examples_and_exit_codes(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= 80
    examples, codes = text.index("Examples:"), text.index("Exit status:")
    assert text.index("Options:") < examples < codes
    assert f"helloscope {command}" in text[examples:codes] or command == "live" and "helloscope live" in text
    for code in ("0", "1", "2", "130", "143"):
        assert re.search(rf"\n\s+{code}\s", text[codes:]) or f"; {code} " in text[codes:], code


def test_version_has_a_short_option() -> None:
    for option in ("-V", "--version"):
        result = CliRunner().invoke(cli, [option])
        assert result.exit_code == 0 and result.output.startswith("helloscope, version ")


def test_port_help_says_it_covers_quic_too() -> None:
    result = CliRunner().invoke(cli, ["analyze", "--help"], terminal_width=200)
    line = next(line for line in result.output.splitlines() if "--port" in line)
    assert "QUIC" in line


def test_sizes_take_units() -> None:
    assert cli_module.ByteSize(1).convert("1G", None, None) == 1 << 30
    assert cli_module.ByteSize(1).convert("512MiB", None, None) == 512 << 20
    assert cli_module.ByteSize(1).convert("64k", None, None) == 64 << 10
    assert cli_module.ByteSize(1).convert("4096", None, None) == 4096
    good = CliRunner().invoke(cli, ["analyze", "-q", "--spool-limit", "1G", "--max-stream-bytes", "256k", str(FIXTURE)])
    assert good.exit_code == 0, good.output
    bad = _run("analyze", "-q", "--spool-limit", "1X", str(FIXTURE))
    assert bad.returncode == 2 and "is not a size" in bad.stderr and "Traceback" not in bad.stderr


def test_live_stats_lines_carry_no_file_counters() -> None:
    line = stats_line({"files": 0, "truncated_files": 0, "packets": 12, "kernel_dropped": 0})
    assert line == "stats packets=12 kernel_dropped=0"


def test_strict_fails_when_an_output_lost_events_and_the_summary_says_how_many(tmp_path: Path) -> None:
    # Nothing listens there and there is no spool: every event is lost when the run closes its outputs.
    target = f"http://127.0.0.1:{free_port()}/_bulk"
    done = _run("analyze", "--strict", "-o", target, str(FIXTURE), str(OTHER))
    assert done.returncode == 1, done.stderr
    assert "2 events were lost by an output" in done.stderr
    row = next(line for line in done.stderr.splitlines() if "events lost" in line)
    assert row.split()[-1] == "2"
    relaxed = _run("analyze", "-q", "-o", target, str(FIXTURE))
    assert relaxed.returncode == 0


@pytest.mark.parametrize(
    "spec", ["http://127.0.0.1:9200/", "http://127.0.0.1:9200", "https://user:pw@es.test/x", "HTTPS://es.test:9200/"]
)
def test_an_elasticsearch_output_without_bulk_is_an_error(spec: str) -> None:
    done = _run("analyze", "-q", "-o", spec, str(FIXTURE))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "_bulk" in line and "pw" not in line


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("x" * 300, "cannot open output file"),  # a name longer than the file system allows
        ("http://[x/_bulk", "is not a valid URL"),
    ],
)
def test_an_output_that_cannot_be_opened_is_one_error_line(tmp_path: Path, spec: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "-o", spec, str(FIXTURE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert says in line and "Traceback" not in done.stderr


def test_library_warnings_never_reach_stderr_under_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.utils import CryptographyDeprecationWarning

    real = pipeline_module.build_event

    def warning_build_event(*args, **kwargs):
        warnings.warn("Parsed a negative serial number", CryptographyDeprecationWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "build_event", warning_build_event)
    with warnings.catch_warnings():
        quiet = CliRunner().invoke(cli, ["analyze", "-q", str(FIXTURE)])
    assert quiet.exit_code == 0 and "negative serial" not in quiet.stderr and quiet.stderr == ""
    with warnings.catch_warnings():
        loud = CliRunner().invoke(cli, ["analyze", "--format", "json", str(FIXTURE)])
    lines = [line for line in loud.stderr.splitlines() if "negative serial" in line]
    assert lines == ["helloscope: warning: CryptographyDeprecationWarning: Parsed a negative serial number"]


def test_directories_are_read_recursively_capture_files_only_sorted(tmp_path: Path) -> None:
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    shutil.copy(FIXTURE, tmp_path / "b" / "deeper" / "z.pcap")
    shutil.copy(OTHER, tmp_path / "a.cap")  # any name: the content says it is a capture
    (tmp_path / "b" / "keys.log").write_text("CLIENT_RANDOM 00 00\n")
    (tmp_path / "notes.txt").write_text("not a capture\n")
    (tmp_path / "b" / "c.pcap.xz").write_bytes(lzma.compress((PCAPS / "tls13-noauth.pcap").read_bytes()))
    done = _run("analyze", "-q", str(tmp_path))
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    want = analyze(OTHER) + analyze(PCAPS / "tls13-noauth.pcap") + analyze(FIXTURE)
    assert [e["source"]["port"] for e in got] == [e["source"]["port"] for e in want]
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = _run("analyze", "-q", str(empty))
    assert refused.returncode == 2 and "no pcap or pcapng file" in refused.stderr


@pytest.mark.parametrize("kind", ["xz", "bz2", "zst"])
def test_xz_bzip2_and_zstd_captures_are_read_like_gzip(kind: str, tmp_path: Path) -> None:
    raw = FIXTURE.read_bytes()
    if kind == "xz":
        packed = lzma.compress(raw)
    elif kind == "bz2":
        packed = bz2.compress(raw)
    else:
        zstandard = pytest.importorskip("zstandard")
        packed = zstandard.ZstdCompressor().compress(raw)
    path = tmp_path / f"capture.{kind}"
    path.write_bytes(packed)
    from_file = _run("analyze", "-q", str(path))
    from_stdin = subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "-"], input=packed, capture_output=True
    )
    plain = _run("analyze", "-q", str(FIXTURE))
    assert from_file.returncode == 0 and from_stdin.returncode == 0 and plain.stdout != ""

    def events(text: str) -> list[dict]:
        return [without_capture(json.loads(line)) for line in text.splitlines()]

    assert events(from_file.stdout) == events(from_stdin.stdout.decode()) == events(plain.stdout)


@pytest.fixture
def libpcap() -> None:
    import ctypes.util

    if ctypes.util.find_library("pcap") is None:
        pytest.skip("libpcap is not installed (.ci/run installs it)")


@pytest.mark.usefixtures("libpcap")
def test_bpf_applies_to_file_input() -> None:
    (honored,) = analyze(FIXTURE)
    port = honored["destination"]["port"]
    kept = _run("analyze", "-q", "--bpf", f"tcp port {port}", str(FIXTURE), str(OTHER))
    assert kept.returncode == 0, kept.stderr
    assert [json.loads(line)["destination"]["port"] for line in kept.stdout.splitlines()] == [port]
    none = _run("analyze", "-q", "--bpf", "udp", str(FIXTURE))
    assert none.returncode == 0 and none.stdout == ""


@pytest.mark.usefixtures("libpcap")
@pytest.mark.parametrize("workers", ["2", "3"])
def test_bpf_with_workers_keeps_the_same_frames(workers: str) -> None:
    (honored,) = analyze(FIXTURE)
    expression = f"tcp port {honored['destination']['port']} or udp"
    one = _run("analyze", "-q", "--bpf", expression, *map(str, sorted(PCAPS.glob("*.pcap"))))
    many = _run("analyze", "-q", "--workers", workers, "--bpf", expression, *map(str, sorted(PCAPS.glob("*.pcap"))))
    assert one.returncode == many.returncode == 0, many.stderr
    assert sorted(one.stdout.splitlines()) == sorted(many.stdout.splitlines())
    protocols = {json.loads(line)["network"]["transport"] for line in one.stdout.splitlines()}
    assert protocols == {"tcp", "udp"} and len(one.stdout.splitlines()) > 2


@pytest.mark.usefixtures("libpcap")
@pytest.mark.parametrize("args", [("--bpf", "tcp port nonsense"), ("--bpf", "tcp port", "--workers", "2")])
def test_bad_bpf_use_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = _run("analyze", "-q", *args, str(FIXTURE), str(OTHER))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_line_format_with_outputs_prints_lines_and_writes_selected_json(tmp_path: Path) -> None:
    stored = tmp_path / "events.jsonl"
    selected = ("-o", str(stored), "--fields", "source.port")
    done = _run("analyze", "-q", "--format", "line", *selected, str(FIXTURE), str(OTHER))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(" → " in line and "outcome" in line for line in lines)
    ports = [json.loads(line) for line in stored.read_text().splitlines()]
    assert ports == [{"source": {"port": event["source"]["port"]}} for event in analyze(FIXTURE) + analyze(OTHER)]
    refused = _run("analyze", "-q", "--format", "line", "--fields", "source.port", str(FIXTURE))
    assert refused.returncode == 2 and "no effect with --format line" in refused.stderr
