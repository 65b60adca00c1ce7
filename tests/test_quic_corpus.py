"""QUIC in the public corpus: every v1/v2 ClientHello tshark finds, helloscope finds with the same SNI,
cipher suites and extension types; JA4 equals FoxIO's; drafts, gQUIC and other UDP give no QUIC report.

tshark also decrypts draft versions (0xff0000xx, Facebook's mvfst); helloscope reads only v1 and v2,
whose Initial salts are final, so the comparison is limited to those two versions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helloscope.parsers.keylog import KeyLog
from helloscope.sniffer.capture.files import open_capture
from helloscope.sniffer.report.events import Observer
from helloscope.sniffer.run.pipeline import analyze_files

from tests.helpers import CORPUS, analyze, tshark_fields

PCAP = CORPUS / "nDPI" / "tests" / "cfgs" / "default" / "pcap"
MERCURY = CORPUS / "mercury" / "unit_tests" / "pcaps"
JA4_PCAP = CORPUS / "ja4" / "pcap"
WITH_QUIC_HELLOS = [
    CORPUS / "illustrated-quic" / "captures" / "capture.pcap",
    *(JA4_PCAP / name for name in ("chrome-cloudflare-quic-with-secrets.pcapng", "quic-tls-handshake.pcapng")),
    *(JA4_PCAP / name for name in ("quic-with-several-tls-frames.pcapng", "ssh2.pcapng", "tls-handshake.pcapng")),
    *(JA4_PCAP / name for name in ("tls-sni.pcapng", "tls3.pcapng")),
    *(MERCURY / name for name in ("emix.pcap", "geneve.pcap", "quic_fragmented.pcap", "quic_init.capture2.pcap")),
    *(MERCURY / name for name in ("quic_reordered_frames.pcap", "quic_v2.pcap", "surfshark.pcap")),
    *(PCAP / name for name in ("google_meet.pcapng", "quic-33.pcapng", "quic-v2.pcapng", "quic_0RTT.pcap")),
    *(PCAP / name for name in ("quic_crypto_aes_auth_size.pcap", "quic_frags_ch_in_multiple_packets.pcapng")),
    *(PCAP / name for name in ("quic_frags_different_dcid.pcapng", "sites.pcapng", "snapchat_call_v1.pcapng")),
]
# gQUIC, QUIC drafts, DNS and other UDP: nothing helloscope can open, nothing it may report as QUIC.
WITHOUT_QUIC_HELLOS = [
    *(PCAP / name for name in ("quic046.pcap", "quic_q50.pcap", "youtube_quic.pcap", "quic-29.pcap")),
    *(PCAP / name for name in ("quic-mvfst-22_decryption_error.pcap", "quic_cc_ack.pcapng", "telegram.pcap")),
    PCAP / "snapchat_call.pcapng",
    MERCURY / "quic-crypto-packets.pcap",
]
VERSIONS = {"0x00000001", "0x6b3343cf"}
# FoxIO's Rust JA4 snapshots (ja4/rust/ja4/src/snapshots) for the QUIC hellos of its own captures.
FOXIO_QUIC_JA4 = "q13d0310h3_55b375c5d22e_cd85d2d88918"

Hello = tuple[str, str, str]  # SNI, cipher suites, extension types (tshark's formatting)


def _tshark_hellos(capture: Path) -> Counter[Hello]:
    rows = tshark_fields(
        capture,
        "quic && tls.handshake.type == 1",
        [
            "quic.version",
            "tls.handshake.extensions_server_name",
            "tls.handshake.ciphersuite",
            "tls.handshake.extension.type",
        ],
    )
    return Counter(
        (sni, ciphers, extensions) for versions, sni, ciphers, extensions in rows if set(versions.split(",")) & VERSIONS
    )


def _helloscope_hellos(events: list[dict]) -> Counter[Hello]:
    found: Counter[Hello] = Counter()
    for event in events:
        # The event names one SNI; a second hello (after a HelloRetryRequest) repeats the first's.
        sni = event["tls"]["client"]["server_name"] or ""
        for name in ("client_hello", "second_client_hello"):
            hello = event["helloscope"][name]
            if hello is not None:
                ciphers = ",".join(f"0x{suite:04x}" for suite in hello["cipher_suites"])
                found[(sni, ciphers, ",".join(str(kind) for kind in hello["extensions"]))] += 1
    return found


def _quic_events(capture: Path) -> list[dict]:
    if not capture.exists():
        pytest.skip(f"{capture} is not in the corpus")
    return [event for event in analyze(capture) if event["network"]["protocol"] == "quic"]


@pytest.mark.parametrize("capture", WITH_QUIC_HELLOS, ids=lambda path: path.name)
def test_every_quic_client_hello_tshark_finds_is_found(capture: Path) -> None:
    events = _quic_events(capture)
    expected = _tshark_hellos(capture)
    assert expected, "the capture should hold v1/v2 ClientHellos"
    assert _helloscope_hellos(events) == expected
    for event in events:
        assert event["network"]["transport"] == "udp"
        assert event["helloscope"]["quic"]["version"] in VERSIONS
        assert event["tls"]["client"]["ja4"].startswith("q13")
        # Without keys nothing shows the certificate exchange, except that a resumed (PSK) handshake
        # cannot carry a CertificateRequest; captures with embedded secrets are decrypted.
        if event["helloscope"]["decryption"]["status"] != "decrypted":
            outcomes = {"unknown", "incomplete", "failed"} | ({"not_requested"} if event["tls"]["resumed"] else set())
            assert event["helloscope"]["outcome"] in outcomes


KEYED = [
    (
        CORPUS / "illustrated-quic" / "captures" / "capture.pcap",
        CORPUS / "illustrated-quic" / "captures" / "keylog.txt",
    ),
    (JA4_PCAP / "chrome-cloudflare-quic-with-secrets.pcapng", None),  # secrets embedded in the pcapng
    (PCAP / "quic-33.pcapng", None),
    (PCAP / "quic-v2.pcapng", None),  # QUIC v2 Handshake and 1-RTT keys use the "quicv2" labels
]


@pytest.mark.parametrize(("capture", "keylog"), KEYED, ids=lambda path: path.name if path else "embedded")
def test_handshake_packets_open_with_keys_as_tshark_does(capture: Path, keylog: Path | None) -> None:
    extra = ("-o", f"tls.keylog_file:{keylog}") if keylog else ()
    shown = {
        int(kind)
        for (kinds,) in tshark_fields(capture, "quic", ["tls.handshake.type"], *extra)
        for kind in kinds.split(",")
        if kind
    }
    assert {1, 2, 15, 20} <= shown  # tshark opened the Handshake packets too
    keys = KeyLog()
    if keylog:
        keys.feed(keylog.read_text())
        keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("test"), keys=keys)
    (event,) = [event for event in events if event["network"]["protocol"] == "quic"]
    scope = event["helloscope"]
    assert scope["decryption"]["status"] == "decrypted"
    assert scope["decryption"]["client_finished"] and scope["decryption"]["server_finished"]
    assert scope["certificate_request"] == {"seen": 13 in shown, "evidence": "decrypted"}
    assert (scope["outcome"], scope["outcome_evidence"]) == ("not_requested", "decrypted")
    assert event["tls"]["established"] is True


@pytest.mark.parametrize("name", ["chrome-cloudflare-quic-with-secrets.pcapng", "quic-tls-handshake.pcapng"])
def test_ja4_equals_foxio_for_quic(name: str) -> None:
    (event,) = _quic_events(JA4_PCAP / name)
    assert event["tls"]["client"]["ja4"] == FOXIO_QUIC_JA4


def test_hello_over_several_packets_and_reordered_frames() -> None:
    for capture in (MERCURY / "quic_fragmented.pcap", MERCURY / "quic_reordered_frames.pcap"):
        events = _quic_events(capture)
        assert events and all(event["helloscope"]["client_hello"] for event in events)
        assert all(not event["helloscope"]["anomalies"] for event in events)


def test_v2_capture_reports_version_2() -> None:
    (event,) = _quic_events(MERCURY / "quic_v2.pcap")
    assert event["helloscope"]["quic"]["version_name"] == "v2"
    assert event["tls"]["client"]["server_name"] == "localhost"


def test_version_negotiation_then_retry_uses_the_new_dcid() -> None:
    """A GREASE version, Version Negotiation, a v1 Initial, a Retry, the Initial again under the new DCID.

    tshark 4.0 shows no ClientHello here; the hello (no SNI) and the ServerHello are both there.
    """
    (event,) = _quic_events(PCAP / "quic-forcing-vn-with-data.pcapng")
    quic = event["helloscope"]["quic"]
    assert quic["retry"] and quic["original_dcid"] == "565ef4f16c5e1e1b1ae6605c200dea23"
    assert quic["undecryptable_initial_packets"] == 0
    assert event["helloscope"]["client_hello"] is not None and event["helloscope"]["server_hello"] is not None
    assert event["helloscope"]["end_reason"] == "handshake_settled"


@pytest.mark.parametrize("capture", WITHOUT_QUIC_HELLOS, ids=lambda path: path.name)
def test_other_udp_gives_no_quic_report(capture: Path) -> None:
    assert _quic_events(capture) == []
