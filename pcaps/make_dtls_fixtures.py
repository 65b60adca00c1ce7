#!/usr/bin/env python3
"""Record helloscope's DTLS fixtures (``pcaps/dtls/``) from real peers on loopback.

Run from the repository root, as root (tcpdump on ``lo``)::

    python3 pcaps/make_dtls_fixtures.py                     # every scenario
    python3 pcaps/make_dtls_fixtures.py dtls12-openssl-noauth  # a few

For every scenario this script

1. starts ``tcpdump -i lo udp port N`` and waits until it listens,
2. starts the server (``openssl s_server -dtls1_2`` or ``gnutls-serv --udp``) with a key log, and the
   client (``openssl s_client`` / ``gnutls-cli --udp``, key log via ``-keylogfile`` / ``SSLKEYLOGFILE``),
   with the test PKI of ``pcaps/pki/`` (made by ``pcaps/make_fixtures.py``);
3. for the loss scenario, puts a UDP relay between them that drops one server datagram on its way to
   the client, so both peers really time out and retransmit (the capture sees the server side of the
   relay, where the dropped datagram was still on the wire);
4. stops tcpdump with SIGINT once both peers have exited or were killed at their deadline (GnuTLS
   sends no alert on a failed DTLS handshake and its client retransmits until killed);
5. reads the capture back with tshark, without and with the key log, and writes ``NAME.expected.json``
   from tshark's fields only (never from helloscope's parsers): per handshake (UDP conversation) the
   ClientHellos, the HelloVerifyRequest, the ServerHello, whether a CertificateRequest and a client
   Certificate were sent, the alerts (plaintext, and decrypted with the key log) and the negotiated
   version.

Rewrites are not recorded: ``dtls12-openssl-lost-fragment`` is ``dtls12-openssl-retransmit`` without the
first copy of the dropped datagram, as a sensor that missed it would see the handshake.

DTLS 1.3 is not recorded: none of the stacks installable here speaks it (OpenSSL 3.0, GnuTLS 3.7 and
Debian's wolfSSL 5.5.4, built without ``--enable-dtls13``); the corpus' illustrated-dtls capture is the
DTLS 1.3 reference.

Needs: openssl (3.0), gnutls-bin (gnutls-serv, gnutls-cli; 3.7), tcpdump, tshark (4.0). Nothing is
installed by this script: it stops and names what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from make_fixtures import argv, read_pcap, run  # pcaps/: this script's directory is on sys.path when it runs
from peers import Peer

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "pcaps" / "dtls"
PKI = REPO / "pcaps" / "pki"
SNI = "server.helloscope.test"
HOST = "127.0.0.1"
NEEDS = {"openssl": "openssl", "gnutls-serv": "gnutls-bin", "gnutls-cli": "gnutls-bin", "tcpdump": "tcpdump",
         "tshark": "tshark"}  # fmt: skip

CLIENT_LINGER = 1.5  # seconds the client keeps stdin open so the server's answer (or alert) arrives
CLIENT_DEADLINE = 6.0  # a client still retransmitting then is killed (GnuTLS after a silent failure)
SERVER_DEADLINE = 4.0  # after the client is done

OPENSSL_AUTH = {
    "none": (),
    "optional": ("-verify", "1"),
    "required": ("-Verify", "1"),
    "required-trusted": ("-Verify", "1", "-verify_return_error"),
}
GNUTLS_AUTH = {
    "none": ("--disable-client-cert",),
    "optional": ("--verify-client-cert",),
    "required": ("--require-client-cert", "--verify-client-cert"),
    "required-trusted": ("--require-client-cert", "--verify-client-cert"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    port: int
    stack: str  # openssl | gnutls
    description: str
    auth: str = "none"  # none | optional | required | required-trusted
    client_cert: str | None = None  # None | client (trusted CA) | untrusted-client (second CA)
    version: str = "-dtls1_2"  # OpenSSL's version option on both peers (-dtls: whatever it negotiates)
    mtu: int | None = None  # both peers' link MTU (OpenSSL -mtu): fragments the certificate flights
    drop_server_datagram: int | None = None  # index of the server->client datagram the relay drops
    rewrite_of: str | None = None  # not recorded: that scenario's capture without the dropped datagram


# fmt: off
SCENARIOS: list[Scenario] = [
    Scenario("dtls12-openssl-noauth", 48101, "openssl",
             "DTLS 1.2, OpenSSL: HelloVerifyRequest cookie exchange, server does not ask for a client certificate"),
    Scenario("dtls12-openssl-required-presented", 48102, "openssl",
             "DTLS 1.2, OpenSSL: server requires a client certificate, client presents one the server trusts",
             "required", "client"),
    Scenario("dtls12-openssl-required-missing", 48103, "openssl",
             "DTLS 1.2, OpenSSL: server requires a client certificate, client sends an empty Certificate",
             "required"),
    Scenario("dtls12-openssl-optional-missing", 48104, "openssl",
             "DTLS 1.2, OpenSSL: server asks for an optional client certificate, client sends an empty one",
             "optional"),
    Scenario("dtls12-openssl-untrusted", 48105, "openssl",
             "DTLS 1.2, OpenSSL: server requires a trusted client certificate, client presents one from an "
             "unknown CA",
             "required-trusted", "untrusted-client"),
    Scenario("dtls-openssl-default", 48106, "openssl",
             "OpenSSL -dtls on both peers (the highest DTLS version the installed OpenSSL speaks), no client "
             "authentication",
             version="-dtls"),
    Scenario("dtls12-openssl-fragmented", 48107, "openssl",
             "DTLS 1.2, OpenSSL with -mtu 300 on both peers: both certificate flights are cut into many "
             "fragments over several datagrams; client presents a trusted certificate",
             "required", "client", mtu=300),
    Scenario("dtls12-openssl-retransmit", 48108, "openssl",
             "DTLS 1.2, OpenSSL through a relay that drops the server's 4th datagram (a Certificate fragment) "
             "on its way to the client: the client times out and resends its ClientHello, the server resends "
             "its whole flight; client presents a trusted certificate",
             "required", "client", drop_server_datagram=3),
    Scenario("dtls12-openssl-lost-fragment", 48108, "openssl",
             "dtls12-openssl-retransmit rewritten without the first copy of the dropped datagram: the sensor "
             "sees that Certificate fragment only in the retransmitted flight",
             "required", "client", drop_server_datagram=3, rewrite_of="dtls12-openssl-retransmit"),
    Scenario("dtls12-gnutls-noauth", 48111, "gnutls",
             "DTLS 1.2, GnuTLS: cookie exchange, server does not ask for a client certificate"),
    Scenario("dtls12-gnutls-required-presented", 48112, "gnutls",
             "DTLS 1.2, GnuTLS: server requires a client certificate, client presents one the server trusts",
             "required", "client"),
    Scenario("dtls12-gnutls-required-missing", 48113, "gnutls",
             "DTLS 1.2, GnuTLS: server requires a client certificate, client sends an empty Certificate",
             "required"),
    Scenario("dtls12-gnutls-optional-missing", 48114, "gnutls",
             "DTLS 1.2, GnuTLS: server asks for an optional client certificate, client sends an empty one",
             "optional"),
    Scenario("dtls12-gnutls-untrusted", 48115, "gnutls",
             "DTLS 1.2, GnuTLS: server requires and verifies a client certificate, client presents one from an "
             "unknown CA",
             "required-trusted", "untrusted-client"),
]
# fmt: on


# --------------------------------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------------------------------


def server_argv(sc: Scenario, keylog: Path) -> tuple[list[str], dict[str, str]]:
    if sc.stack == "openssl":
        command = argv(
            "openssl s_server {version} -accept {host}:{port} -cert {cert} -key {key} -CAfile {ca} -naccept 1"
            " -keylogfile {keylog}",
            version=sc.version, host=HOST, port=sc.port, cert=PKI / "server.pem", key=PKI / "server.key",
            ca=PKI / "ca.pem", keylog=keylog,
        )  # fmt: skip
        if sc.mtu:
            command += ["-mtu", str(sc.mtu)]
        return command + list(OPENSSL_AUTH[sc.auth]), {}
    command = argv(
        "gnutls-serv --udp -p {port} --x509certfile {cert} --x509keyfile {key} --x509cafile {ca}",
        port=sc.port, cert=PKI / "server.pem", key=PKI / "server.key", ca=PKI / "ca.pem",
    )  # fmt: skip
    if sc.mtu:
        command += [f"--mtu={sc.mtu}"]
    return command + list(GNUTLS_AUTH[sc.auth]), {"SSLKEYLOGFILE": str(keylog.with_suffix(".server.keylog"))}


def client_argv(sc: Scenario, port: int, keylog: Path) -> tuple[list[str], dict[str, str]]:
    cert = PKI / f"{sc.client_cert}.pem" if sc.client_cert else None
    key = PKI / f"{sc.client_cert}.key" if sc.client_cert else None
    if sc.stack == "openssl":
        command = argv(
            "openssl s_client {version} -connect {host}:{port} -servername {sni} -CAfile {ca}",
            version=sc.version, host=HOST, port=port, sni=SNI, ca=PKI / "ca.pem",
        )  # fmt: skip
        if cert:
            command += ["-cert", str(cert), "-key", str(key)]
        if sc.mtu:
            command += ["-mtu", str(sc.mtu)]
        return command, {}
    command = argv(
        "gnutls-cli --udp -p {port} {host} --sni-hostname {sni} --verify-hostname {sni} --x509cafile {ca}",
        port=port, host=HOST, sni=SNI, ca=PKI / "ca.pem",
    )  # fmt: skip
    if cert:
        command += [f"--x509certfile={cert}", f"--x509keyfile={key}"]
    if sc.mtu:
        command += [f"--mtu={sc.mtu}"]
    return command, {"SSLKEYLOGFILE": str(keylog)}


def started(command: list[str], env: dict[str, str], log: list[str], name: str) -> Peer:
    """A Peer with extra environment variables (Peer itself passes the parent's environment)."""
    if not env:
        return Peer(command, log, name, stdin=subprocess.PIPE)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return Peer(command, log, name, stdin=subprocess.PIPE)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DroppingRelay:
    """A UDP relay for one client that drops the Nth datagram from the server to the client.

    The capture filters on the server's port, so it shows the relay-server leg: the dropped datagram is
    on the wire there (a sensor next to the server sees it), the client never gets it and retransmits.
    """

    def __init__(self, server_port: int, drop_index: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((HOST, 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect((HOST, server_port))
        self.port = self.front.getsockname()[1]
        self.drop_index = drop_index
        self.dropped: bytes | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=pump, daemon=True) for pump in (self._up, self._down)]
        self._client: tuple[str, int] | None = None
        for thread in self._threads:
            thread.start()

    def _up(self) -> None:
        self.front.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, self._client = self.front.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.back.send(data)

    def _down(self) -> None:
        self.back.settimeout(0.2)
        index = 0
        while not self._stop.is_set():
            try:
                data = self.back.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                continue  # ICMP port unreachable once a peer is gone
            if index == self.drop_index and self.dropped is None:
                self.dropped = data
            elif self._client is not None:
                self.front.sendto(data, self._client)
            index += 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.front.close()
        self.back.close()


def record(sc: Scenario, work: Path) -> tuple[Path, Path, list[str], bytes | None]:
    """One association over loopback; returns (pcap, merged key log, log, dropped datagram)."""
    pcap, keylog = work / f"{sc.name}.pcap", work / f"{sc.name}.keylog"
    for stale in (pcap, keylog, keylog.with_suffix(".server.keylog")):
        stale.unlink(missing_ok=True)
    log: list[str] = []
    tcpdump = Peer(
        argv("tcpdump -i lo -w {pcap} -U --immediate-mode -Z root udp port {port}", pcap=pcap, port=sc.port),
        log,
        "tcpdump",
    )
    server = client = relay = None
    try:
        tcpdump.wait_for("listening on")
        time.sleep(0.3)
        command, env = server_argv(sc, keylog)
        server = started(command, env, log, sc.stack + "-server")
        server.wait_for("ACCEPT" if sc.stack == "openssl" else "listening")
        time.sleep(0.3)
        port = sc.port
        if sc.drop_server_datagram is not None:
            relay = DroppingRelay(sc.port, sc.drop_server_datagram)
            port = relay.port
        command, env = client_argv(sc, port, keylog)
        client = started(command, env, log, sc.stack + "-client")
        client.write(b"hi\n")
        time.sleep(CLIENT_LINGER + (2.5 if relay else 0.0))  # a lost flight is resent after about a second
        client.close_stdin()  # both clients send close_notify and quit on EOF
        client.wait(CLIENT_DEADLINE)
        server.close_stdin()
        server.wait(SERVER_DEADLINE)
    finally:
        for peer in (client, server):
            if peer is not None:
                peer.kill()
                peer.close_stdin()
        dropped = relay.dropped if relay is not None else None
        if relay is not None:
            relay.close()
        time.sleep(0.3)
        tcpdump.proc.send_signal(signal.SIGINT)
        tcpdump.wait(10.0)
    server_keylog = keylog.with_suffix(".server.keylog")
    lines = keylog.read_text().splitlines() if keylog.exists() else []
    if server_keylog.exists():
        lines += server_keylog.read_text().splitlines()
        server_keylog.unlink()
    # Both peers log the same secrets: one copy of each line, comments dropped.
    keylog.write_text("".join(f"{line}\n" for line in dict.fromkeys(lines) if line and not line.startswith("#")))
    if sc.drop_server_datagram is not None and dropped is None:
        raise RuntimeError(f"{sc.name}: the relay dropped nothing (fewer server datagrams than expected)")
    return pcap, keylog, log, dropped


# --------------------------------------------------------------------------------------------------
# Rewrite: a sensor that missed the dropped datagram
# --------------------------------------------------------------------------------------------------


def udp_payload(frame: bytes) -> bytes | None:
    """The payload of an Ethernet/IPv4/UDP frame (what tcpdump writes on lo)."""
    if frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    udp = 14 + (frame[14] & 0x0F) * 4
    return frame[udp + 8 : udp + struct.unpack_from("!H", frame, udp + 4)[0]]


def drop_first_copy(source: Path, target: Path, payload: bytes) -> None:
    header, records = read_pcap(source)
    index = next((i for i, (_, frame) in enumerate(records) if udp_payload(frame) == payload), None)
    if index is None:
        raise RuntimeError(f"{source.name}: the dropped datagram is not in the capture")
    kept = records[:index] + records[index + 1 :]
    target.write_bytes(header + b"".join(head + frame for head, frame in kept))


# --------------------------------------------------------------------------------------------------
# Expected results, from tshark only
# --------------------------------------------------------------------------------------------------

FIELDS = [
    "frame.number", "udp.stream", "udp.srcport", "udp.dstport", "dtls.record.content_type", "dtls.record.epoch",
    "dtls.handshake.type", "dtls.handshake.message_seq", "dtls.handshake.version", "dtls.handshake.random",
    "dtls.handshake.cookie_length", "dtls.handshake.ciphersuite", "dtls.handshake.extension.type",
    "dtls.handshake.extensions_server_name", "dtls.handshake.extensions.supported_version",
    "dtls.handshake.extensions_supported_group", "dtls.handshake.extensions_ec_point_format",
    "dtls.handshake.sig_hash_alg", "dtls.handshake.extensions_alpn_str", "dtls.handshake.ja3_full",
    "dtls.handshake.ja3", "dtls.handshake.certificates_length", "dtls.alert_message.level",
    "dtls.alert_message.desc",
]  # fmt: skip
CLIENT_HELLO, SERVER_HELLO, HELLO_VERIFY_REQUEST, CERTIFICATE, CERTIFICATE_REQUEST = 1, 2, 3, 11, 13


def tshark_rows(pcap: Path, keylog: Path | None) -> list[dict[str, list[str]]]:
    """One dict per packet: field -> every occurrence (several records and messages per datagram)."""
    command = ["tshark", "-n", "-r", str(pcap), "-Y", "dtls", "-T", "fields", "-E", "separator=\t",
               "-E", "occurrence=a", "-E", "aggregator=|"]  # fmt: skip
    if keylog is not None:
        command += ["-o", f"tls.keylog_file:{keylog}"]
    for name in FIELDS:
        command += ["-e", name]
    rows = []
    for line in run(command).splitlines():
        values = line.split("\t")
        rows.append({name: [v for v in value.split("|") if v] for name, value in zip(FIELDS, values, strict=True)})
    return rows


def _ints(values: list[str]) -> list[int]:
    return [int(v, 0) for v in values]


def _ch_fields(row: dict[str, list[str]]) -> dict[str, Any]:
    """The ClientHello of a packet that carries only one (tshark puts its fields first in the packet)."""
    return {
        "frame": int(row["frame.number"][0]),
        "message_seq": _ints(row["dtls.handshake.message_seq"])[0],
        "version": row["dtls.handshake.version"][0],
        "random": row["dtls.handshake.random"][0],
        "cookie_length": _ints(row["dtls.handshake.cookie_length"])[0],
        "server_name": (row["dtls.handshake.extensions_server_name"] or [None])[0],
        "cipher_suites": _ints(row["dtls.handshake.ciphersuite"]),
        "extensions": _ints(row["dtls.handshake.extension.type"]),
        "supported_versions": _ints(row["dtls.handshake.extensions.supported_version"]),
        "supported_groups": _ints(row["dtls.handshake.extensions_supported_group"]),
        "ec_point_formats": _ints(row["dtls.handshake.extensions_ec_point_format"]),
        "signature_algorithms": _ints(row["dtls.handshake.sig_hash_alg"]),
        "alpn": row["dtls.handshake.extensions_alpn_str"],
        "ja3_full": row["dtls.handshake.ja3_full"][0],
        "ja3": row["dtls.handshake.ja3"][0],
    }


def handshakes(pcap: Path, keylog: Path, server_port: int) -> list[dict[str, Any]]:
    plain, decrypted = tshark_rows(pcap, None), tshark_rows(pcap, keylog)
    out: dict[int, dict[str, Any]] = {}
    for clear, row in zip(plain, decrypted, strict=True):
        stream = int(row["udp.stream"][0])
        sender = "server" if int(row["udp.srcport"][0]) == server_port else "client"
        hs = out.setdefault(
            stream,
            {"udp_stream": stream, "client_hellos": [], "hello_verify_requests": 0, "server_hello": None,
             "negotiated_version": None, "certificate_request": False, "client_certificate": "absent",
             "plaintext_alerts": [], "alerts": []},
        )  # fmt: skip
        types = _ints(row["dtls.handshake.type"])
        if CLIENT_HELLO in types:
            hello = _ch_fields(row)
            # A retransmitted ClientHello (same random and message_seq) is the same hello.
            key = (hello["random"], hello["message_seq"])
            if all((h["random"], h["message_seq"]) != key for h in hs["client_hellos"]):
                hs["client_hellos"].append(hello)
        if HELLO_VERIFY_REQUEST in types:
            hs["hello_verify_requests"] += 1
        if SERVER_HELLO in types and hs["server_hello"] is None:
            versions = _ints(row["dtls.handshake.extensions.supported_version"])
            hs["server_hello"] = {
                "frame": int(row["frame.number"][0]),
                "version": row["dtls.handshake.version"][0],
                "cipher_suite": _ints(row["dtls.handshake.ciphersuite"])[0],
                "extensions": _ints(row["dtls.handshake.extension.type"]),
                "supported_version": f"0x{versions[0]:04x}" if versions else None,
            }
            hs["negotiated_version"] = hs["server_hello"]["supported_version"] or hs["server_hello"]["version"]
        if CERTIFICATE_REQUEST in types and sender == "server":
            hs["certificate_request"] = True
        if CERTIFICATE in types and sender == "client":
            lengths = _ints(row["dtls.handshake.certificates_length"])
            if lengths:
                hs["client_certificate"] = "presented" if lengths[0] else "empty"
        for key, source in (("plaintext_alerts", clear), ("alerts", row)):
            levels, codes = _ints(source["dtls.alert_message.level"]), _ints(source["dtls.alert_message.desc"])
            for level, desc in zip(levels, codes, strict=True):
                hs[key].append({"frame": int(row["frame.number"][0]), "sender": sender, "level": level, "code": desc})
    return [out[stream] for stream in sorted(out)]


def versions_of(sc: Scenario) -> str:
    if sc.stack == "openssl":
        text = run(["openssl", "version"]).split()[1]
        return f"openssl s_server {text} / openssl s_client {text}"
    text = run(["gnutls-cli", "--version"]).splitlines()[0].split()[-1]
    return f"gnutls-serv {text} / gnutls-cli {text}"


def write_expected(sc: Scenario, pcap: Path, keylog: Path) -> dict[str, Any]:
    tshark = run(["tshark", "--version"]).splitlines()[0]
    expected = {
        "description": sc.description,
        "generator": versions_of(sc),
        "truth_from": tshark,
        "keylog": keylog.name,
        "server_port": sc.port,
        "handshakes": handshakes(pcap, keylog, sc.port),
    }
    (pcap.parent / f"{sc.name}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def check_tools() -> None:
    missing = sorted({package for tool, package in NEEDS.items() if shutil.which(tool) is None})
    if missing:
        sys.exit(f"missing tools; install them first: apt-get install {' '.join(missing)}")
    if not (PKI / "ca.pem").exists():
        sys.exit(f"no test PKI in {PKI}: run pcaps/make_fixtures.py first (it creates pcaps/pki/)")
    if os.geteuid() != 0:
        sys.exit("tcpdump on lo needs root")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    args = parser.parse_args()
    check_tools()
    chosen = [sc for sc in SCENARIOS if not args.names or sc.name in args.names]
    OUT.mkdir(parents=True, exist_ok=True)
    recorded: dict[str, tuple[Path, Path, bytes | None]] = {}  # name -> (pcap, keylog, dropped) in tmp
    with tempfile.TemporaryDirectory(prefix="helloscope-dtls-") as tmp:
        for sc in chosen:
            source = sc.rewrite_of or sc.name
            if source not in recorded:
                pcap, keylog, log, payload = record(next(s for s in SCENARIOS if s.name == source), Path(tmp))
                recorded[source] = (pcap, keylog, payload)
            pcap, keylog, payload = recorded[source]
            if sc.rewrite_of is not None:
                assert payload is not None
                drop_first_copy(pcap, OUT / f"{sc.name}.pcap", payload)
            else:
                shutil.copy(pcap, OUT / f"{sc.name}.pcap")
            shutil.copy(keylog, OUT / f"{sc.name}.keylog")
            expected = write_expected(sc, OUT / f"{sc.name}.pcap", OUT / f"{sc.name}.keylog")
            for hs in expected["handshakes"]:
                print(
                    f"{sc.name}: stream {hs['udp_stream']} hellos={len(hs['client_hellos'])} "
                    f"hvr={hs['hello_verify_requests']} version={hs['negotiated_version']} "
                    f"certreq={hs['certificate_request']} client_cert={hs['client_certificate']} "
                    f"alerts={[(a['sender'], a['code']) for a in hs['alerts']]}"
                )


if __name__ == "__main__":
    main()
