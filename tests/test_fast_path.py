"""The event builder computes the four JA4 forms in one pass (``ja4_variants``); these tests hold it to
a plain per-form reference, the computation as it was before that shortcut, on every fixture hello.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from parsers.fingerprints import ja4_variants
from parsers.hello import ClientHello
from parsers.registry import ALPN, SERVER_NAME, is_grease
from sniffer.capture import open_capture
from sniffer.decode import decode
from sniffer.flows import FlowTable
from sniffer.report import ConnectionReport
from sniffer.stats import RunStats
from tests.helpers import PCAPS, analyze

FIXTURES = sorted(PCAPS.glob("*.pcap"))
_EMPTY = "0" * 12


def _reference_ja4(hello: ClientHello, transport: str, original_order: bool, raw: bool) -> str:
    """One JA4 form, computed on its own from FoxIO's JA4.md (no shared work between forms)."""
    ciphers = [f"{v:04x}" for v in hello.cipher_suites if not is_grease(v)]
    extensions = [f"{v:04x}" for v in hello.extension_types if not is_grease(v)]
    alpn = hello.alpn[0] if hello.alpn else b""
    if not alpn:
        code = "00"
    elif alpn[0] > 0x7F:
        code = "99"
    elif alpn[:1].isalnum() and alpn[-1:].isalnum() and alpn[-1:].isascii():
        code = (alpn[:1] + alpn[-1:]).decode()
    else:
        code = f"{alpn[0]:02x}"[0] + f"{alpn[-1]:02x}"[1]
    versions = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
    prefix = (
        f"{transport}{versions.get(hello.max_version, '00')}{'d' if SERVER_NAME in hello.extension_types else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{code}"
    )
    fingerprinted = [e for e in extensions if e not in (f"{SERVER_NAME:04x}", f"{ALPN:04x}")]
    listed = extensions if original_order else sorted(fingerprinted)
    cipher_text = ",".join(ciphers if original_order else sorted(ciphers))
    extension_text = ",".join(listed)
    sigalgs = [f"{v:04x}" for v in hello.signature_algorithms if not is_grease(v)]
    if sigalgs and extension_text:
        extension_text += "_" + ",".join(sigalgs)
    if raw:
        return f"{prefix}_{cipher_text}_{extension_text}"

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else _EMPTY

    return f"{prefix}_{digest(cipher_text)}_{digest(extension_text) if fingerprinted else _EMPTY}"


def _hellos(capture: Path) -> list[tuple[ClientHello, str]]:
    reports: list[ConnectionReport] = []
    table = FlowTable(reports.append, RunStats())
    for timestamp, linktype, frame in open_capture(str(capture)):
        segment = decode(linktype, frame)
        if segment is not None and segment.proto == 6:
            table.packet(timestamp, segment)
        elif segment is not None and segment.proto == 17:
            table.quic.datagram(timestamp, segment)
    table.flush()
    return [
        (hello, "q" if report.quic is not None else "t")
        for report in reports
        for hello in report.handshake.client_hellos
    ]


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_one_pass_ja4_equals_per_form_reference(capture: Path) -> None:
    hellos = _hellos(capture)
    assert hellos, "every fixture holds at least one ClientHello"
    for hello, transport in hellos:
        forms = ja4_variants(hello, transport)
        assert forms.ja4 == _reference_ja4(hello, transport, original_order=False, raw=False)
        assert forms.ja4_r == _reference_ja4(hello, transport, original_order=False, raw=True)
        assert forms.ja4_o == _reference_ja4(hello, transport, original_order=True, raw=False)
        assert forms.ja4_ro == _reference_ja4(hello, transport, original_order=True, raw=True)


@pytest.mark.parametrize("capture", FIXTURES, ids=lambda path: path.stem)
def test_event_shows_the_first_hellos_ja4_in_both_places(capture: Path) -> None:
    for event in analyze(capture):
        hello = event["helloscope"]["client_hello"]
        if hello is not None:
            assert event["tls"]["client"]["ja4"] == hello["ja4"]
