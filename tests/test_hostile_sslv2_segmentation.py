"""An SSLv2-compatible CLIENT-HELLO is recognised whatever TCP segmentation carries it.

The hello is a real one (FlowTest's ssl-v2.pcap in the public corpus); only its TCP segment is cut in two,
the first piece 1-5 bytes long, and the frames rebuilt with scapy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CORPUS, analyze, need_corpus

SSLV2 = CORPUS / "FlowTest" / "pcap" / "ssl-v2.pcap"


def resegment(src: Path, dst: Path, first: int) -> None:
    """Copy of ``src`` whose SSLv2 CLIENT-HELLO segment is sent as ``first`` bytes, then the rest."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw
    from scapy.utils import rdpcap, wrpcap

    out = []
    done = False
    for packet in rdpcap(str(src)):
        payload = bytes(packet[TCP].payload) if TCP in packet else b""
        if not done and payload[:1] and payload[0] & 0x80 and payload[2:3] == b"\x01":
            done = True
            for offset, piece in ((0, payload[:first]), (first, payload[first:])):
                copy = packet.copy()
                copy[TCP].remove_payload()
                copy[TCP].seq = (packet[TCP].seq + offset) & 0xFFFFFFFF
                copy[TCP].add_payload(Raw(piece))
                del copy[IP].len, copy[IP].chksum, copy[TCP].chksum
                copy.time = packet.time
                out.append(copy.__class__(bytes(copy)))
                out[-1].time = packet.time
            continue
        out.append(packet)
    assert done, "no SSLv2 CLIENT-HELLO in the capture"
    wrpcap(str(dst), out)


def _hello(capture: Path) -> dict:
    (event,) = analyze(capture)
    return event["helloscope"]["client_hello"]


def test_the_unsegmented_hello_is_an_sslv2_hello():
    hello = _hello(need_corpus(SSLV2))
    assert hello["sslv2"] and hello["cipher_suites"] is not None


@pytest.mark.parametrize(
    "first",
    [1, 2, 3, 4, 5, 6],
)
def test_an_sslv2_hello_cut_after_its_first_bytes_is_still_recognised(tmp_path, first):
    original = _hello(need_corpus(SSLV2))
    capture = tmp_path / f"sslv2-{first}.pcap"
    resegment(SSLV2, capture, first)
    assert _hello(capture) == original
