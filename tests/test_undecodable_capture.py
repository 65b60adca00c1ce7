"""A capture none of whose frames decodes gets a warning naming its link type, not a silent empty result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dpkt

from tests.helpers import PCAPS

USER0 = 147  # a link type reserved for private use: nothing helloscope could decode
ARP = bytes.fromhex("ffffffffffff02000000000108060001080006040001020000000001c0000201000000000000c0000202")


def _analyze(capture: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helloscope.sniffer", "analyze", "-o", "-", str(capture)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _write(path: Path, linktype: int, frames: list[bytes]) -> Path:
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=linktype)
        for index, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + index)
    return path


def test_an_unsupported_link_type_is_named(tmp_path: Path) -> None:
    frames = [bytes.fromhex("4500003c") + bytes(56)] * 3
    run = _analyze(_write(tmp_path / "user0.pcap", USER0, frames))
    assert run.returncode == 0 and run.stdout == ""
    assert "none of its 3 frames could be decoded" in run.stderr
    assert "link type 147 (not supported)" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_supported_link_type_without_ip_says_so(tmp_path: Path) -> None:
    run = _analyze(_write(tmp_path / "arp.pcap", dpkt.pcap.DLT_EN10MB, [ARP, ARP]))
    assert "none of its 2 frames could be decoded" in run.stderr
    assert "link type 1 (supported)" in run.stderr


def test_a_decodable_capture_gets_no_such_warning() -> None:
    run = _analyze(PCAPS / "tls13-noauth.pcap")
    assert run.returncode == 0 and run.stdout
    assert "could be decoded" not in run.stderr
