#!/usr/bin/env python3
"""Record the TLS 1.2 renegotiation fixtures (``pcaps/tls12-renegotiation-*``) with real OpenSSL peers.

Run from the repository root, as root (tcpdump on ``lo``)::

    python3 pcaps/make_renegotiation_fixtures.py

Each scenario is one connection: ``openssl s_server -tls1_2 -no_resumption_on_reneg`` (no client
certificate asked in the first handshake) and ``openssl s_client``. After the first handshake the client
sends a line, the server types ``R`` (renegotiate and request a client certificate: the CertificateRequest
exists only in the encrypted renegotiation), then each side sends a line and the client closes.

- ``authenticated``: the client presents its certificate in the renegotiation, the server accepts it;
- ``declined``: the client has no certificate (an empty Certificate), the server goes on;
- ``rejected``: the client presents an untrusted certificate and ``-verify_return_error`` makes the server
  end the renegotiation with a fatal unknown_ca alert.

tshark reads the capture with the key log (``s_server -keylogfile``: one master secret per handshake,
named by that handshake's ClientHello.random) and the facts it decrypts become the scenario's truth in
``NAME.expected.json``; without keys the report must say the certificate request is unknown.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from peers import Peer  # pcaps/peers.py: this script's directory is on sys.path when it runs

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
PKI = PCAPS / "pki"
SNI = "server.helloscope.test"
HOST = "127.0.0.1"
PEER_TIMEOUT = 20.0

# name: (port, client certificate stem or None, extra s_server options, expected outcome with keys)
SCENARIOS = {
    "tls12-renegotiation-authenticated": (47711, "client", (), "authenticated"),
    "tls12-renegotiation-declined": (47712, None, (), "declined"),
    "tls12-renegotiation-rejected": (47713, "untrusted-client", ("-verify_return_error",), "rejected"),
}


def record(name: str, port: int, client_cert: str | None, server_extra: tuple[str, ...]) -> tuple[Path, Path]:
    pcap, keylog = PCAPS / f"{name}.pcap", PCAPS / f"{name}.keylog"
    for stale in (pcap, keylog):
        stale.unlink(missing_ok=True)
    log: list[str] = []
    tcpdump = Peer(
        ["tcpdump", "-i", "lo", "-w", str(pcap), "-U", "--immediate-mode", "-Z", "root", "tcp", "port", str(port)],
        log,
        "tcpdump",
    )
    server = client = None
    try:
        tcpdump.wait_for("listening on")
        time.sleep(0.3)
        server = Peer(
            [
                *("openssl", "s_server", "-accept", f"{HOST}:{port}", "-tls1_2", "-no_resumption_on_reneg"),
                *("-cert", str(PKI / "server.pem"), "-key", str(PKI / "server.key"), "-CAfile", str(PKI / "ca.pem")),
                *("-naccept", "1", "-keylogfile", str(keylog), *server_extra),
            ],
            log,
            "s_server",
            stdin=subprocess.PIPE,
        )
        server.wait_for("ACCEPT")
        command = [
            *("openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", SNI, "-tls1_2"),
            *("-CAfile", str(PKI / "ca.pem")),
        ]
        if client_cert:
            command += ["-cert", str(PKI / f"{client_cert}.pem"), "-key", str(PKI / f"{client_cert}.key")]
        client = Peer(command, log, "s_client", stdin=subprocess.PIPE)
        time.sleep(0.7)
        client.write(b"hello\n")
        time.sleep(0.4)
        server.write(b"R\n")  # renegotiate, asking for a client certificate this time
        time.sleep(0.6)
        server.write(b"after\n")
        time.sleep(0.3)
        client.write(b"bye\n")
        time.sleep(0.5)
        client.close_stdin()
        client.wait(PEER_TIMEOUT)
        time.sleep(0.3)
        server.close_stdin()
        server.wait(5.0)
    finally:
        for peer in (client, server):
            if peer is not None:
                peer.kill()
                peer.close_stdin()
        time.sleep(0.3)
        tcpdump.proc.send_signal(signal.SIGINT)
        tcpdump.wait(10.0)
    return pcap, keylog


def tshark(pcap: Path, keylog: Path, display_filter: str, *fields: str) -> list[list[str]]:
    command = ["tshark", "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", display_filter, "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


def truth(pcap: Path, keylog: Path, port: int) -> dict[str, object]:
    """What tshark decrypts: the renegotiation's CertificateRequest, the client's Certificate, the alert."""
    requests = tshark(pcap, keylog, "tls.handshake.type == 13", "frame.number")
    hellos = tshark(pcap, keylog, f"tcp.srcport != {port} and tls.handshake.type == 1", "frame.number")
    certificates = tshark(
        pcap, keylog, f"tcp.srcport != {port} and tls.handshake.type == 11", "tls.handshake.certificates_length"
    )
    alerts = tshark(pcap, keylog, f"tcp.srcport == {port} and tls.alert_message.level == 2", "tls.alert_message.desc")
    if len(hellos) != 2 or len(requests) != 1:
        raise RuntimeError(f"{pcap.name}: expected one renegotiation with one CertificateRequest")
    lengths = [int(row[0]) for row in certificates if row and row[0]]
    certificate = "presented" if any(lengths) else "empty" if certificates else "absent"
    alert = int(alerts[0][0]) if alerts else None
    outcome = "rejected" if alert is not None else "authenticated" if certificate == "presented" else "declined"
    return {
        "certificate_request": True,
        "client_certificate": certificate,
        "server_alert": alert,
        "outcome": outcome,
        "flag_outcome": "unsolicited",
    }


def main() -> int:
    for name, (port, client_cert, server_extra, outcome) in SCENARIOS.items():
        pcap, keylog = record(name, port, client_cert, server_extra)
        facts = truth(pcap, keylog, port)
        if facts["outcome"] != outcome:
            raise RuntimeError(f"{name}: recorded {facts['outcome']}, wanted {outcome}")
        document = {
            "description": f"TLS 1.2, a server-initiated renegotiation requests a client certificate: {outcome}",
            "generator": "openssl s_server -no_resumption_on_reneg (R) / openssl s_client, TLS 1.2",
            "keylog": keylog.name,
            "server_port": port,
            "connections": [
                {
                    # Without keys: the renegotiation is seen (record headers), its content is not.
                    "expected": {
                        "tls.version": "1.2",
                        "helloscope.renegotiation": True,
                        "helloscope.certificate_request.seen": None,
                        "helloscope.certificate_request.evidence": "unknown",
                        "helloscope.outcome": "unknown",
                        "helloscope.alerts": [],
                    },
                    "truth": facts,
                }
            ],
        }
        (PCAPS / f"{name}.expected.json").write_text(json.dumps(document, indent=2) + "\n")
        print(f"{name}: {facts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
