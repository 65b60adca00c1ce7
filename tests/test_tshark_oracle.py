"""tshark as an oracle: every ClientHello it finds over TCP, helloscope finds with the same fields.

Runs on the bundled fixtures and on the public captures in ../shared/corpus (skipped when absent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CORPUS, PCAPS, analyze, tshark_fields

FIELDS = [
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tls.handshake.extensions_server_name",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.ja3_full",
    "tls.handshake.cipherspec",
    "frame.protocols",
]
# Out-of-order reassembly is off by default in tshark 4.0; the split fixture needs it.
TSHARK_OPTIONS = ("-o", "tcp.reassemble_out_of_order:TRUE")
CAPTURE_SUFFIXES = {".pcap", ".pcapng", ".cap"}


# JA3 strings contain commas and dashes: repeated fields are joined with this instead.
JOIN = "|"


def _numbers(text: str) -> list[int]:
    return [int(item, 0) for item in text.split(JOIN) if item]


Connection = tuple[str, int, str, int]


def tshark_hellos(capture: Path) -> dict[Connection, dict]:
    """The first ClientHello tshark decodes per connection (client and server endpoints)."""
    hellos: dict[Connection, dict] = {}
    rows = tshark_fields(capture, "tls.handshake.type == 1 && tcp", FIELDS, *TSHARK_OPTIONS, aggregator=JOIN)
    for row in rows:
        row += [""] * (len(FIELDS) - len(row))
        ip4, ip6, port, dst4, dst6, dport, name, suites, extensions, ja3_full, sslv2_specs, layers = row
        if JOIN in ja3_full or JOIN in port or JOIN in name:
            continue  # several hellos in one frame: tshark's field lists can no longer be told apart
        # In a tunnel the innermost IP header is the one the TCP header belongs to.
        inner_v6 = layers.rsplit(":tcp", 1)[0].rsplit(":", 1)[-1] == "ipv6"
        src, dst = (ip6, dst6) if inner_v6 else (ip4, dst4)
        key = (src.split(JOIN)[-1], int(port), dst.split(JOIN)[-1], int(dport))
        if sslv2_specs and not suites:
            # SSLv2-compatible hello: 3-byte cipher specs; the TLS suites are those below 0x10000.
            suites = JOIN.join(str(spec) for spec in _numbers(sslv2_specs) if spec < 0x10000)
        hellos.setdefault(
            key,
            {
                "server_name": name or None,
                "suites": _numbers(suites),
                "extensions": _numbers(extensions),
                "ja3": ja3_full,
            },
        )
    return hellos


def _connection(event: dict) -> Connection:
    source, destination = event["source"], event["destination"]
    return (source["ip"], source["port"], destination["ip"], destination["port"])


def our_hellos(events: list[dict]) -> dict[Connection, dict | None]:
    hellos: dict[Connection, dict | None] = {}
    for event in events:
        hello = event["helloscope"]["client_hello"]
        if hello is None:
            # A hello helloscope could not parse is still reported, with the reason.
            assert any("client_hello" in anomaly for anomaly in event["helloscope"]["anomalies"]), event
            hellos.setdefault(_connection(event), None)
            continue
        hellos.setdefault(
            _connection(event),
            {
                "server_name": event["tls"]["client"]["server_name"],
                "suites": hello["cipher_suites"],
                "extensions": hello["extensions"],
                "ja3": hello["ja3_full"],
            },
        )
    return hellos


def _compare(capture: Path) -> None:
    expected = tshark_hellos(capture)
    found = our_hellos(analyze(capture))
    missing = sorted(set(expected) - set(found))
    assert not missing, f"{capture.name}: helloscope missed the ClientHellos of {missing}"
    for key, hello in expected.items():
        ours = found[key]
        if ours is None:
            continue
        if not hello["ja3"]:
            hello = dict(hello, ja3=ours["ja3"])  # tshark gives no JA3 for SSLv2-compatible hellos
        assert ours == hello, f"{capture.name} {key}"


@pytest.mark.parametrize("capture", sorted(PCAPS.glob("*.pcap")), ids=lambda path: path.stem)
def test_fixture_hellos_match_tshark(capture: Path):
    _compare(capture)


def _corpus_captures() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(path for path in CORPUS.rglob("*") if path.suffix in CAPTURE_SUFFIXES and path.is_file())


@pytest.mark.parametrize("capture", _corpus_captures(), ids=lambda path: str(path.relative_to(CORPUS)))
def test_corpus_hellos_match_tshark(capture: Path):
    _compare(capture)


def test_corpus_is_present_or_skipped(corpus: Path):
    assert _corpus_captures(), f"no captures under {corpus}"


# Public captures where tshark 4.0 decodes a plaintext CertificateRequest (found by scanning the corpus).
CERTIFICATE_REQUEST_CAPTURES = [
    "FlowTest/pcap/tls10.pcap",
    "FlowTest/pcap/tls11.pcap",
    "FlowTest/pcap/tls12.pcap",
    "FlowTest/pcap/tls_ssl30.pcap",
    "mercury/unit_tests/pcaps/tls_sgt.pcap",
    "nDPI/tests/cfgs/default/pcap/ftp-start-tls.pcap",
    "nealfennimore-cs-gy-6903/project5/mtls/mtls-failure.pcap",
    "nealfennimore-cs-gy-6903/project5/mtls/mtls-success.pcap",
    "portfolio/pcap_files/mTLS_with_nginx/nginx-mtls.pcapng",
    "wireshark-notes/tls/amqps.pcapng",
    "wireshark-notes/tls/mysql-ssl-larger.pcapng",
    "wireshark-notes/tls/mysql-ssl.pcapng",
    "wireshark-notes/tls/xmpp-ssl.pcapng",
]


def _endpoint(row: list[str]) -> tuple[str, int]:
    return ((row[0] or row[1]).split(",")[0], int(row[2].split(",")[0]))


@pytest.mark.parametrize("relative", CERTIFICATE_REQUEST_CAPTURES)
def test_certificate_requests_and_client_certificates_match_tshark(corpus: Path, relative: str):
    capture = corpus / relative
    events = {(event["source"]["ip"], event["source"]["port"]): event for event in analyze(capture)}
    requests = tshark_fields(capture, "tls.handshake.type == 13 && tcp", ["ip.dst", "ipv6.dst", "tcp.dstport"])
    assert requests
    for row in requests:
        request = events[_endpoint(row)]["helloscope"]["certificate_request"]
        assert (request["seen"], request["evidence"]) == (True, "plaintext"), relative
    certificates = tshark_fields(
        capture,
        "tls.handshake.type == 11 && tcp",
        ["ip.src", "ipv6.src", "tcp.srcport", "tls.handshake.certificates_length"],
        *TSHARK_OPTIONS,
    )
    for row in certificates:
        event = events.get(_endpoint(row))
        if event is None:
            continue  # a server's Certificate: keyed by the server endpoint
        state = "empty" if row[3].split(",")[0] == "0" else "presented"
        assert event["helloscope"]["client_certificate"]["state"] == state, relative
