"""PPPoE session frames, bare and inside 802.1Q / QinQ tags, decode to the segments they carry.

The captures are a real fixture's frames re-encapsulated by scapy (Ethernet / [tags] / PPPoE / PPP / the
original IP packet); tshark, the oracle, must read the same TLS handshake from them as from the original.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helloscope.sniffer.capture.decode import LINKTYPE_ETHERNET, decode
from helloscope.sniffer.capture.files import open_capture

from tests.helpers import PCAPS, REPO

FIXTURE = PCAPS / "tls13-ccm-untrusted.pcap"
SHAPES = ["pppoe", "vlan-pppoe", "qinq-pppoe", "pppoe-compressed-protocol"]


def _encapsulate(src: Path, dst: Path, shape: str) -> None:
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
    from scapy.layers.ppp import PPP, PPPoE
    from scapy.packet import Raw
    from scapy.utils import rdpcap, wrpcap

    out = []
    for packet in rdpcap(str(src)):
        ip = bytes(packet[Ether].payload)
        head = Ether(src=packet[Ether].src, dst=packet[Ether].dst)
        if shape == "vlan-pppoe":
            head = head / Dot1Q(vlan=100)
        elif shape == "qinq-pppoe":
            head = head / Dot1AD(vlan=200) / Dot1Q(vlan=100)
        protocol = 0x0021 if ip[0] >> 4 == 4 else 0x0057
        compressed = shape == "pppoe-compressed-protocol"  # RFC 1661 6.5: the protocol number in one byte
        ppp = Raw(bytes([protocol]) + ip) if compressed else PPP(proto=protocol) / Raw(ip)
        frame = head / PPPoE(sessionid=0x1234) / ppp
        frame.time = packet.time
        out.append(frame)
    wrpcap(str(dst), out)


def _frames(path: Path) -> list[bytes]:
    with open_capture(str(path)) as reader:
        return [frame for _, linktype, frame in reader if linktype == LINKTYPE_ETHERNET]


@pytest.fixture(params=SHAPES)
def capture(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.pcap"
    _encapsulate(FIXTURE, path, request.param)
    return path


def test_every_frame_decodes_to_the_original_segment(capture):
    original, wrapped = _frames(FIXTURE), _frames(capture)
    assert len(original) == len(wrapped)
    assert all(decode(LINKTYPE_ETHERNET, frame) is not None for frame in wrapped)
    assert [decode(LINKTYPE_ETHERNET, frame) for frame in wrapped] == [
        decode(LINKTYPE_ETHERNET, frame) for frame in original
    ]


def _tshark_hellos(path: Path) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2"]
        + ["-T", "fields", "-e", "frame.protocols", "-e", "tcp.srcport", "-e", "tls.handshake.ciphersuite"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_same_handshake_through_pppoe(capture):
    original, wrapped = _tshark_hellos(FIXTURE), _tshark_hellos(capture)
    assert original and [row[1:] for row in wrapped] == [row[1:] for row in original]
    assert all(":pppoes:ppp:ip" in row[0] for row in wrapped)  # tshark saw PPPoE, not a guess


_ANALYZE = """
import json, sys
from tests.helpers import analyze
from pathlib import Path
events = analyze(Path(sys.argv[1]))
print(json.dumps([{k: e[k] for k in ("tls", "helloscope", "source", "destination")} for e in events]))
"""


def _reports(path: Path, pure: bool) -> list[dict]:
    env = dict(os.environ, HELLOSCOPE_PURE="1" if pure else "0")
    out = subprocess.run(
        [sys.executable, "-c", _ANALYZE, str(path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_pure_pipeline_reports_the_connection_through_pppoe(capture):
    expected = _reports(FIXTURE, pure=True)
    assert expected and _reports(capture, pure=True) == expected


def test_the_accelerated_pipeline_reports_the_connection_through_pppoe(tmp_path):
    from helloscope.sniffer.capture import fast

    if fast.core is None:
        pytest.skip("the C core is not built")
    # The C core hands frames of EtherTypes it does not read (PPPoE among them) back to decode.py.
    path = tmp_path / "pppoe.pcap"
    _encapsulate(FIXTURE, path, "qinq-pppoe")
    expected = _reports(FIXTURE, pure=False)
    assert expected and _reports(path, pure=False) == expected
