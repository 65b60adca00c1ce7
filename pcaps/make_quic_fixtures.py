#!/usr/bin/env python3
"""Regenerate the QUIC fixtures (``pcaps/quic-*``): aioquic client and server over loopback.

Run from the repository root, as root (tcpdump on ``lo``)::

    python3 pcaps/make_quic_fixtures.py

For every scenario this script starts ``tcpdump -i lo udp port P``, runs one aioquic connection (server
and client in this process, both writing the key log ``NAME.keylog``), stops tcpdump, then reads the
capture back with tshark and the key log and checks that the wire shows what the scenario defines
(CertificateRequest, the client's Certificate, the server's CONNECTION_CLOSE). ``NAME.expected.json``
is written from those tshark-verified facts, not from helloscope, in the format of make_fixtures.py:
``expected`` (dotted event fields without keys: only the hellos are visible, so `unknown`) and
``truth`` (what happened, which a report with the key log must equal).

aioquic's server can only request a client certificate through a flag its own tests use
(``Context._request_client_certificate``) and never verifies the certificate; both are patched here, in
the helper, never in the product: the flag is set for the scenarios that ask for it, and the
``rejected`` scenario's server checks the client chain against ``pki/ca.pem`` (aioquic's own
``verify_certificate``) and closes with bad_certificate when it fails.

``quic-split-hello`` offers enough ALPN names that the ClientHello needs two Initial packets;
``quic-split-hello-reordered`` is a rewrite of it with the client's first two datagrams swapped and
the second one duplicated (and the client's port moved up by one, so both read in one run stay two
connections: a QUIC connection has no FIN to end it).

Needs: aioquic (1.x), tcpdump, tshark (4.0), scapy (for the rewrite).
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aioquic
from aioquic import tls
from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helloscope.parsers.flags import REQUEST_MTLS, encode_tls_flags  # noqa: E402  (the bytes are checked with tshark)

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
PKI = PCAPS / "pki"
SNI = "server.helloscope.test"
HOST = "127.0.0.1"
REJECTION_ALERTS = frozenset({40, 42, 43, 44, 45, 46, 48, 49, 51, 116})  # PROTOCOL.md
CRYPTO_ERROR = 0x0100


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    port: int
    request_certificate: bool
    client_identity: str | None  # pki/<name>.pem and .key
    verify_client: bool = False
    alpn: tuple[str, ...] = ("h3",)
    tls_flags: int | None = None  # codepoint of a tls_flags extension carrying request_mtls (80)


SCENARIOS = (
    Scenario("quic-mtls-authenticated", "QUIC v1, client certificate requested and presented", 24431, True, "client"),
    Scenario("quic-mtls-declined", "QUIC v1, client certificate requested, none sent", 24432, True, None),
    Scenario(
        "quic-mtls-rejected",
        "QUIC v1, untrusted client certificate, server closes with bad_certificate",
        24433,
        True,
        "untrusted-client",
        verify_client=True,
    ),
    Scenario(
        "quic-flag-honored",
        "QUIC v1, tls_flags (codepoint 0xfe01) with request_mtls; certificate requested and presented",
        24435,
        True,
        "client",
        tls_flags=0xFE01,
    ),
    Scenario(
        "quic-split-hello",
        "QUIC v1, no client authentication, 151 ALPN names: the ClientHello spans two Initial packets",
        24434,
        False,
        None,
        alpn=(*(f"proto-{i:03d}" for i in range(150)), "h3"),
    ),
)
_SCENARIO = {"current": SCENARIOS[0]}  # which scenario the patched tls.Context serves


def _patch_aioquic() -> None:
    original_init = tls.Context.__init__
    original_certificate = tls.Context._server_handle_certificate
    original_client_hello = tls.Context._client_send_hello

    def init(self: tls.Context, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        if not self._is_client:
            self._request_client_certificate = _SCENARIO["current"].request_certificate

    def handle_certificate(self: tls.Context, input_buf: object) -> None:
        start = input_buf.tell()  # type: ignore[attr-defined]
        certificate = tls.pull_certificate(input_buf)  # type: ignore[arg-type]
        input_buf.seek(start)  # type: ignore[attr-defined]
        if _SCENARIO["current"].verify_client and certificate.certificates:
            from cryptography import x509

            chain = [x509.load_der_x509_certificate(der) for der, _ in certificate.certificates]
            tls.verify_certificate(certificate=chain[0], chain=chain[1:], cafile=str(PKI / "ca.pem"))
        original_certificate(self, input_buf)  # type: ignore[arg-type]

    def client_hello(self: tls.Context, output_buf: object) -> None:
        # aioquic sends no tls_flags: add the extension to the ClientHello's extensions here.
        codepoint = _SCENARIO["current"].tls_flags
        if codepoint is not None:
            self.handshake_extensions = [*self.handshake_extensions, (codepoint, encode_tls_flags({REQUEST_MTLS}))]
        original_client_hello(self, output_buf)  # type: ignore[arg-type]

    tls.Context.__init__ = init  # type: ignore[method-assign]
    tls.Context._client_send_hello = client_hello  # type: ignore[method-assign]
    tls.Context._server_handle_certificate = handle_certificate  # type: ignore[method-assign]


async def _connection(scenario: Scenario, keylog: Path) -> None:
    with keylog.open("w") as secrets:
        server_config = QuicConfiguration(is_client=False, alpn_protocols=["h3"], secrets_log_file=secrets)
        server_config.load_cert_chain(PKI / "server.pem", PKI / "server.key")
        client_config = QuicConfiguration(
            is_client=True, alpn_protocols=list(scenario.alpn), server_name=SNI, secrets_log_file=secrets
        )
        client_config.load_verify_locations(str(PKI / "ca.pem"))
        client_config.verify_mode = ssl.CERT_REQUIRED
        if scenario.client_identity:
            client_config.load_cert_chain(
                PKI / f"{scenario.client_identity}.pem", PKI / f"{scenario.client_identity}.key"
            )
        server = await serve(HOST, scenario.port, configuration=server_config)
        try:
            async with connect(HOST, scenario.port, configuration=client_config, wait_connected=True) as client:
                await asyncio.wait_for(client.ping(), 5)
                await asyncio.sleep(0.3)
        except (TimeoutError, ConnectionError) as error:
            print(f"  {scenario.name}: client saw {error!r}")
        await asyncio.sleep(0.3)
        server.close()


def _record(scenario: Scenario) -> None:
    capture, keylog = PCAPS / f"{scenario.name}.pcap", PCAPS / f"{scenario.name}.keylog"
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "-w", str(capture), "udp", "port", str(scenario.port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tcpdump.stderr is not None
    if "listening" not in tcpdump.stderr.readline():
        tcpdump.kill()
        raise SystemExit("tcpdump did not start")
    try:
        _SCENARIO["current"] = scenario
        asyncio.run(asyncio.wait_for(_connection(scenario, keylog), 20))
        time.sleep(0.5)
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)


def _tshark(capture: Path, keylog: Path, fields: list[str]) -> list[list[str]]:
    command = ["tshark", "-n", "-r", str(capture), "-o", f"tls.keylog_file:{keylog}", "-Y", "quic"]
    command += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def _truth(scenario: Scenario, capture: Path, keylog: Path) -> dict[str, object]:
    """What the wire shows, read by tshark with the key log."""
    rows = _tshark(
        capture,
        keylog,
        [
            "udp.srcport",
            "tls.handshake.type",
            "tls.handshake.certificates_length",
            "quic.cc.error_code",
            "tls.handshake.extension.type",
            "tls.handshake.extension.data",
        ],
    )
    client_types: list[int] = []
    server_types: list[int] = []
    client_certificate = "absent"
    server_alert = None
    flagged = False
    for sport, types, certificate_lengths, errors, extension_types, extension_data in rows:
        kinds = [int(kind) for kind in types.split(",") if kind]
        from_server = int(sport) == scenario.port
        if not from_server and 1 in kinds and scenario.tls_flags is not None:
            # One length byte, then the flag bits: request_mtls (80) is bit 0 of the 11th byte. tshark
            # prints extension data only for extensions it does not know, as tls_flags.
            flagged = str(scenario.tls_flags) in extension_types.split(",") and (
                "0b" + "00" * 10 + "01" in extension_data.split(",")
            )
        (server_types if from_server else client_types).extend(kinds)
        if not from_server and 11 in kinds:
            client_certificate = "presented" if any(int(n) for n in certificate_lengths.split(",") if n) else "empty"
        for error in (int(code, 0) for code in errors.split(",") if code):
            if from_server and CRYPTO_ERROR <= error <= CRYPTO_ERROR + 0xFF and server_alert is None:
                server_alert = error - CRYPTO_ERROR
    request = 13 in server_types
    assert request == scenario.request_certificate, (scenario.name, server_types)
    assert flagged == (scenario.tls_flags is not None), scenario.name
    assert 1 in client_types and 2 in server_types and 20 in server_types and 20 in client_types, scenario.name
    if server_alert in REJECTION_ALERTS and client_certificate != "absent":
        outcome = "rejected"
    elif server_alert is not None:
        outcome = "failed"
    elif not request:
        outcome = "not_requested"
    else:
        outcome = "authenticated" if client_certificate == "presented" else "declined"
    return {
        "certificate_request": request,
        "client_certificate": client_certificate,
        "server_alert": server_alert,
        "outcome": outcome,
        "flag_outcome": ("honored" if request else "ignored") if flagged else ("unsolicited" if request else "none"),
        "request_mtls": flagged,
    }


# Without keys a QUIC connection shows its hellos and nothing of the certificate exchange; the TCP
# record-size inference does not apply to QUIC.
EXPECTED_WITHOUT_KEYS = {
    "network.transport": "udp",
    "network.protocol": "quic",
    "tls.version": "1.3",
    "tls.client.server_name": SNI,
    "helloscope.quic.version": "0x00000001",
    "helloscope.certificate_request.seen": None,
    "helloscope.certificate_request.evidence": "unknown",
    "helloscope.client_certificate.state": None,
    "helloscope.alerts": [],
    "helloscope.outcome": "unknown",
    "helloscope.flag_outcome": "unknown",
}


def _reorder(source: str, target: str, port: int) -> None:
    """Swap the client's first two datagrams and repeat the second; move the client to another port so
    that both captures can be read in one run as two connections."""
    from scapy.all import UDP, rdpcap, wrpcap  # scapy.all registers the link layers rdpcap needs

    packets = list(rdpcap(str(PCAPS / f"{source}.pcap")))
    first, second = [i for i, packet in enumerate(packets) if UDP in packet and packet[UDP].dport == port][:2]
    assert (first, second) == (0, 1), "the two Initial datagrams of the ClientHello should open the capture"
    for packet in packets:
        udp = packet[UDP]
        if udp.dport == port:
            udp.sport += 1
        else:
            udp.dport += 1
        del udp.chksum  # recomputed when written
    wrpcap(str(PCAPS / f"{target}.pcap"), [packets[1], packets[0], packets[1], *packets[2:]])


def _spec(description: str, keylog: str, port: int, truth: dict[str, object]) -> dict[str, object]:
    expected = dict(EXPECTED_WITHOUT_KEYS, **{"helloscope.request_mtls": truth["request_mtls"]})
    return {
        "description": description,
        "generator": f"aioquic {aioquic.__version__} client and server (pcaps/make_quic_fixtures.py)",
        "keylog": keylog,
        "server_port": port,
        "connections": [{"expected": expected, "truth": truth}],
    }


def main() -> None:
    _patch_aioquic()
    specs: dict[str, dict[str, object]] = {}
    for scenario in SCENARIOS:
        print(scenario.name)
        _record(scenario)
        keylog = f"{scenario.name}.keylog"
        truth = _truth(scenario, PCAPS / f"{scenario.name}.pcap", PCAPS / keylog)
        specs[scenario.name] = _spec(scenario.description, keylog, scenario.port, truth)
    split = next(scenario for scenario in SCENARIOS if scenario.name == "quic-split-hello")
    _reorder(split.name, "quic-split-hello-reordered", split.port)
    truth = specs[split.name]["connections"][0]["truth"]  # type: ignore[index]
    description = (
        "quic-split-hello rewritten: its two ClientHello datagrams swapped, the second one sent twice, "
        "the client one port higher"
    )
    specs["quic-split-hello-reordered"] = _spec(description, f"{split.name}.keylog", split.port, truth)
    for name, spec in specs.items():
        (PCAPS / f"{name}.expected.json").write_text(json.dumps(spec, indent=2) + "\n")
        print(name, spec["connections"][0]["truth"])  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
