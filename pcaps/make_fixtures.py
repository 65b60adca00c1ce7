#!/usr/bin/env python3
"""Regenerate helloscope's bundled real-traffic fixtures (``pcaps/``).

Run from the repository root, as root (tcpdump on ``lo``)::

    python3 pcaps/make_fixtures.py            # every scenario
    python3 pcaps/make_fixtures.py tls13-untrusted large-clienthello   # a few

For every scenario in ``SCENARIOS`` this script

1. starts ``tcpdump -i lo`` on the scenario's own port and waits until it is listening,
2. starts ``openssl s_server`` (as many connections as the scenario makes, key log next to the capture),
   or ``gnutls-serv`` (``SSLKEYLOGFILE``) where the scenario is about a GnuTLS server's behaviour,
3. runs the client once per connection, one after the other (``openssl s_client``, or scapy's TLS 1.3
   client automaton when the ClientHello needs an extension OpenSSL cannot send: tls_flags, padding); in
   a resumption scenario the first s_client saves its session (``-sess_out``) and the second offers it
   (``-sess_in``),
4. stops tcpdump with SIGINT once both peers have exited,
5. reads the capture back with tshark twice, without and with the key log, and checks per TCP connection
   that what happened on the wire is what the scenario defines (CertificateRequest, client Certificate,
   server alert, outcome, tls_flags bytes, HelloRetryRequest, resumption), then writes
   ``NAME.expected.json`` from those verified facts, one entry per connection in capture order.

``large-clienthello-split-reordered`` is not recorded: it is a rewrite of ``large-clienthello`` whose
ClientHello segment is cut into five TCP segments, delivered out of order with one duplicate.

Every child process is bounded by a timeout and killed on expiry. Nothing here uses helloscope itself
apart from ``helloscope.parsers.flags.encode_tls_flags``, which builds the flagged test hellos (the bytes on the
wire are checked against the draft's encoding independently).

Needs: openssl (3.0), tcpdump, tshark (4.0), scapy >= 2.6 (TLS 1.3 client automaton), gnutls-serv (3.7).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

# pcaps/peers.py: this script's directory is on sys.path when it runs.
from peers import Peer, closing_scapy_client, wait_listening

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
PKI = PCAPS / "pki"
SNI = "server.helloscope.test"
HOST = "127.0.0.1"

# Fatal server alerts that count as "rejected" after the client's certificate flight (PROTOCOL.md).
REJECTION_ALERTS = frozenset({40, 42, 43, 44, 45, 46, 48, 49, 51, 116})
REQUEST_MTLS = 80
TLS_FLAGS_CODEPOINTS = (62, 0xFE01)
# draft-ietf-tls-tlsflags encoding of {80}: length 11, ten zero bytes, then bit 0 of byte 10.
FLAG_80_EXTENSION_DATA = bytes([11]) + bytes(10) + b"\x01"

PEER_TIMEOUT = 20.0  # seconds any client or server may live
CLIENT_LINGER = 1.0  # seconds s_client keeps stdin open so the server's answer (or alert) arrives
SPLIT_PIECES = 5


# --------------------------------------------------------------------------------------------------
# Scenario table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What the scenario makes happen, including the encrypted parts (checked with the key log)."""

    certificate_request: bool
    client_certificate: str  # absent | empty | presented
    server_alert: int | None
    outcome: str  # rejected | authenticated | declined | not_requested | failed


@dataclass(frozen=True)
class Scenario:
    name: str
    port: int
    tls: str  # "1.2" | "1.3"
    description: str
    truth: Truth
    server_auth: tuple[str, ...] = ()  # s_server client-authentication options
    server: str = "openssl"  # "openssl" (s_server) | "gnutls" (gnutls-serv, TLS 1.3, no client authentication)
    client: str = "openssl"  # "openssl" (s_client) | "scapy" (TLSClientAutomaton subclass)
    # The CA s_client trusts: "untrusted-ca" makes it refuse the server's certificate (-verify_return_error).
    client_trust: str = "ca"
    client_cert: str | None = None  # None | "client" (trusted CA) | "untrusted-client" (second CA)
    flag_codepoint: int | None = None  # tls_flags extension with flag 80 in the ClientHello
    padding: int = 0  # bytes of padding extension (21) in the ClientHello (scapy client)
    rewrite_of: str | None = None  # not recorded: a rewrite of that scenario's capture
    server_groups: str | None = None  # s_server -groups (the groups the server accepts)
    client_groups: str | None = None  # s_client -groups (OpenSSL sends a key share for the first only)
    hello_retry: bool = False  # the server answers the first ClientHello with a HelloRetryRequest
    resume: bool = False  # two connections; the second resumes the first's session (s_client only)
    record_padding: int = 0  # both peers pad every TLS 1.3 record to a multiple of this (-record_padding)
    ciphersuites: str | None = None  # both peers' TLS 1.3 suites (-ciphersuites; CCM needs it on both)

    @property
    def connections(self) -> int:
        """TCP connections in the capture (all with the same truth)."""
        return 2 if self.resume else 1


REQUIRE = ("-Verify", "1")
OPTIONAL = ("-verify", "1")
REQUIRE_TRUSTED = ("-Verify", "1", "-verify_return_error")

NOT_REQUESTED = Truth(False, "absent", None, "not_requested")
AUTHENTICATED = Truth(True, "presented", None, "authenticated")
DECLINED = Truth(True, "empty", None, "declined")
UNKNOWN_CA = Truth(True, "presented", 48, "rejected")
# s_client refusing the server's certificate alerts unknown_ca in plaintext (it has not switched its
# write keys yet); GnuTLS, expecting an encrypted record, answers bad_record_mac under its keys.
CLIENT_REFUSED_BAD_RECORD_MAC = Truth(False, "absent", 20, "failed")

# One entry per capture; the truth is what the script sets up and then checks on the wire.
# fmt: off
SCENARIOS: list[Scenario] = [
    Scenario("tls12-noauth", 47401, "1.2",
             "TLS 1.2, server does not ask for a client certificate",
             NOT_REQUESTED),
    Scenario("tls12-required-presented", 47402, "1.2",
             "TLS 1.2, server requires a client certificate, client presents one the server trusts",
             AUTHENTICATED, REQUIRE, client_cert="client"),
    Scenario("tls12-required-missing", 47403, "1.2",
             "TLS 1.2, server requires a client certificate, client sends an empty Certificate; "
             "OpenSSL answers handshake_failure in plaintext",
             Truth(True, "empty", 40, "rejected"), REQUIRE),
    Scenario("tls12-optional-missing", 47404, "1.2",
             "TLS 1.2, server asks for an optional client certificate, client sends an empty "
             "Certificate and the handshake completes",
             DECLINED, OPTIONAL),
    Scenario("tls12-untrusted", 47405, "1.2",
             "TLS 1.2, server requires a client certificate, client presents one from an unknown CA; "
             "OpenSSL answers unknown_ca in plaintext",
             UNKNOWN_CA, REQUIRE_TRUSTED, client_cert="untrusted-client"),
    Scenario("tls13-noauth", 47411, "1.3",
             "TLS 1.3, server does not ask for a client certificate",
             NOT_REQUESTED),
    Scenario("tls13-required-presented", 47412, "1.3",
             "TLS 1.3, server requires a client certificate, client presents one the server trusts",
             AUTHENTICATED, REQUIRE, client_cert="client"),
    Scenario("tls13-required-missing", 47413, "1.3",
             "TLS 1.3, server requires a client certificate, client sends an empty Certificate; "
             "OpenSSL answers certificate_required (encrypted)",
             Truth(True, "empty", 116, "rejected"), REQUIRE),
    Scenario("tls13-optional-missing", 47414, "1.3",
             "TLS 1.3, server asks for an optional client certificate, client sends an empty "
             "Certificate and the handshake completes",
             DECLINED, OPTIONAL),
    Scenario("tls13-untrusted", 47415, "1.3",
             "TLS 1.3, server requires a client certificate, client presents one from an unknown CA; "
             "OpenSSL answers unknown_ca (encrypted)",
             UNKNOWN_CA, REQUIRE_TRUSTED, client_cert="untrusted-client"),
    Scenario("tls13-flag62-honored", 47421, "1.3",
             "TLS 1.3, client sets request_mtls (flag 80) in tls_flags codepoint 62; server requires "
             "a client certificate, client presents a trusted one",
             AUTHENTICATED, REQUIRE, client="scapy", client_cert="client", flag_codepoint=62),
    Scenario("tls13-flagfe01-ignored", 47422, "1.3",
             "TLS 1.3, client sets request_mtls (flag 80) in tls_flags codepoint 0xFE01; server does "
             "not ask for a client certificate",
             NOT_REQUESTED, client="scapy", flag_codepoint=0xFE01),
    Scenario("tls13-flag62-required-missing", 47423, "1.3",
             "TLS 1.3, client sets request_mtls (flag 80) in tls_flags codepoint 62 but has no "
             "certificate; server requires one, client sends an empty Certificate; OpenSSL answers "
             "certificate_required (encrypted)",
             Truth(True, "empty", 116, "rejected"), REQUIRE, client="scapy", flag_codepoint=62),
    Scenario("large-clienthello", 47431, "1.3",
             "TLS 1.3, one ClientHello of more than 1,700 bytes (padding extension), server does not "
             "ask for a client certificate",
             NOT_REQUESTED, client="scapy", padding=1600),
    Scenario("large-clienthello-split-reordered", 47431, "1.3",
             "large-clienthello rewritten: the ClientHello segment is cut into 5 TCP segments "
             "delivered out of order (1, 3, 2, 3 again, 5, 4); everything else unchanged",
             NOT_REQUESTED, client="scapy", padding=1600, rewrite_of="large-clienthello"),
    Scenario("tls13-hello-retry", 47441, "1.3",
             "TLS 1.3, client offers X25519 and P-256 with a key share for X25519 only, server accepts "
             "only P-256 and answers with a HelloRetryRequest; the client sends a second ClientHello "
             "in the same connection; no client certificate requested",
             NOT_REQUESTED, server_groups="P-256", client_groups="X25519:P-256", hello_retry=True),
    Scenario("tls13-chacha20-required-presented", 47461, "1.3",
             "TLS 1.3 with TLS_CHACHA20_POLY1305_SHA256: server requires a client certificate, client "
             "presents a trusted one",
             AUTHENTICATED, REQUIRE, client_cert="client", ciphersuites="TLS_CHACHA20_POLY1305_SHA256"),
    Scenario("tls13-ccm-untrusted", 47462, "1.3",
             "TLS 1.3 with TLS_AES_128_CCM_SHA256: server requires a trusted client certificate, client "
             "presents one from an unknown CA; OpenSSL answers unknown_ca (encrypted)",
             UNKNOWN_CA, REQUIRE_TRUSTED, client_cert="untrusted-client", ciphersuites="TLS_AES_128_CCM_SHA256"),
    Scenario("tls13-ccm8-required-missing", 47463, "1.3",
             "TLS 1.3 with TLS_AES_128_CCM_8_SHA256 (8-byte tags): server requires a client certificate, "
             "client sends an empty Certificate; OpenSSL answers certificate_required (encrypted)",
             Truth(True, "empty", 116, "rejected"), REQUIRE, ciphersuites="TLS_AES_128_CCM_8_SHA256"),
    Scenario("tls13-padded-required-presented", 47451, "1.3",
             "TLS 1.3 with record padding on both peers (-record_padding 512): server requires a client "
             "certificate, client presents a trusted one; every encrypted record is padded, so record "
             "sizes no longer tell the messages apart",
             AUTHENTICATED, REQUIRE, client_cert="client", record_padding=512),
    Scenario("tls12-resumed", 47442, "1.2",
             "TLS 1.2, two connections: a full handshake, then an abbreviated handshake resuming its "
             "session (ServerHello, ChangeCipherSpec, Finished); no client certificate requested",
             NOT_REQUESTED, resume=True),
    Scenario("tls13-resumed-psk", 47443, "1.3",
             "TLS 1.3, two connections: a full handshake, then a PSK resumption with the session ticket "
             "of the first (ServerHello carries pre_shared_key); no client certificate requested",
             NOT_REQUESTED, resume=True),
    Scenario("client-abort-gnutls", 47471, "1.3",
             "TLS 1.3, gnutls-serv; s_client trusts another CA and refuses the server's certificate with "
             "a plaintext unknown_ca alert; GnuTLS answers bad_record_mac (encrypted) and closes",
             CLIENT_REFUSED_BAD_RECORD_MAC, server="gnutls", client_trust="untrusted-ca"),
]
# fmt: on


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def argv(template: str, **values: object) -> list[str]:
    """Split a command template on blanks, then fill in each word (values may contain blanks)."""
    return [word.format(**values) for word in template.split()]


def run(command: list[str], timeout: float = 60.0, cwd: Path | None = None) -> str:
    """Run a short command, fail loudly on error, return stdout."""
    done = subprocess.run(command, capture_output=True, timeout=timeout, cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


# --------------------------------------------------------------------------------------------------
# Test PKI
# --------------------------------------------------------------------------------------------------

PKI_FILES = [
    f"{stem}.{ext}" for stem in ("ca", "server", "client", "untrusted-ca", "untrusted-client") for ext in ("pem", "key")
]
DAYS = "3650"

LEAF_EXTENSIONS = {
    "server": (
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{SNI}\n"
    ),
    "client": ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"),
}


def make_pki() -> None:
    """CA, server and client certificates (RSA 2048); reused when all are present."""
    if all((PKI / name).exists() for name in PKI_FILES):
        print(f"PKI: reusing {PKI.relative_to(REPO)}/")
        return
    print(f"PKI: creating {PKI.relative_to(REPO)}/")
    PKI.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helloscope-pki-") as tmp:
        work = Path(tmp)

        def ca(stem: str, cn: str) -> None:
            run(
                argv(
                    "openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days {days} -subj {subj}"
                    " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
                    " -keyout {key} -out {pem}",
                    days=DAYS,
                    subj=f"/O=helloscope test/CN={cn}",
                    key=PKI / f"{stem}.key",
                    pem=PKI / f"{stem}.pem",
                ),
                cwd=work,
            )

        def leaf(stem: str, cn: str, issuer: str, kind: str, serial: int) -> None:
            csr, ext = work / f"{stem}.csr", work / f"{stem}.ext"
            ext.write_text(LEAF_EXTENSIONS[kind])
            run(
                argv(
                    "openssl req -new -newkey rsa:2048 -nodes -sha256 -subj {subj} -keyout {key} -out {csr}",
                    subj=f"/O=helloscope test/CN={cn}",
                    key=PKI / f"{stem}.key",
                    csr=csr,
                ),
                cwd=work,
            )
            # -set_serial: no .srl file next to the CA.
            run(
                argv(
                    "openssl x509 -req -in {csr} -sha256 -days {days} -CA {ca} -CAkey {ca_key}"
                    " -set_serial {serial} -extfile {ext} -out {pem}",
                    csr=csr,
                    days=DAYS,
                    ca=PKI / f"{issuer}.pem",
                    ca_key=PKI / f"{issuer}.key",
                    serial=serial,
                    ext=ext,
                    pem=PKI / f"{stem}.pem",
                ),
                cwd=work,
            )

        ca("ca", "helloscope test CA")
        leaf("server", SNI, "ca", "server", 1001)
        leaf("client", "client.helloscope.test", "ca", "client", 1002)
        ca("untrusted-ca", "helloscope untrusted test CA")
        leaf("untrusted-client", "untrusted-client.helloscope.test", "untrusted-ca", "client", 2001)
    for name in PKI_FILES:
        if name.endswith(".key"):
            os.chmod(PKI / name, 0o644)  # test keys, committed on purpose
    run(
        argv(
            "openssl verify -CAfile {ca} {server} {client}",
            ca=PKI / "ca.pem",
            server=PKI / "server.pem",
            client=PKI / "client.pem",
        )
    )


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


def server_argv(sc: Scenario, keylog: Path) -> list[str]:
    if sc.server == "gnutls":
        if sc.tls != "1.3" or sc.server_auth or sc.resume:
            raise RuntimeError(f"{sc.name}: gnutls-serv is set up for TLS 1.3 without client authentication")
        return [
            *argv("env SSLKEYLOGFILE={keylog} gnutls-serv -p {port}", keylog=keylog, port=sc.port),
            *argv(
                "--x509certfile {cert} --x509keyfile {key} --x509cafile {ca} --disable-client-cert"
                " --priority=NORMAL:-VERS-ALL:+VERS-TLS1.3",
                cert=PKI / "server.pem",
                key=PKI / "server.key",
                ca=PKI / "ca.pem",
            ),
        ]
    version = "-tls1_2" if sc.tls == "1.2" else "-tls1_3"
    return [
        *argv(
            "openssl s_server -accept {host}:{port} {version} -cert {cert} -key {key} -CAfile {ca}"
            " -naccept {naccept} -keylogfile {keylog}",
            host=HOST,
            port=sc.port,
            version=version,
            cert=PKI / "server.pem",
            key=PKI / "server.key",
            ca=PKI / "ca.pem",
            naccept=sc.connections,
            keylog=keylog,
        ),
        *(("-groups", sc.server_groups) if sc.server_groups else ()),
        *(("-record_padding", str(sc.record_padding)) if sc.record_padding else ()),
        *(("-ciphersuites", sc.ciphersuites) if sc.ciphersuites else ()),
        *sc.server_auth,
    ]


def client_argv(sc: Scenario, index: int, session: Path) -> list[str]:
    """The client of connection ``index`` (0-based); ``session`` carries a session between them."""
    if sc.client == "scapy":
        if sc.resume or sc.client_groups:
            raise RuntimeError(f"{sc.name}: resumption and -groups need the openssl client")
        spec = {
            "port": sc.port,
            "flag_codepoint": sc.flag_codepoint,
            "padding": sc.padding,
            "cert": str(PKI / f"{sc.client_cert}.pem") if sc.client_cert else None,
            "key": str(PKI / f"{sc.client_cert}.key") if sc.client_cert else None,
        }
        return [sys.executable, str(Path(__file__).resolve()), "--scapy-client", json.dumps(spec)]
    version = "-tls1_2" if sc.tls == "1.2" else "-tls1_3"
    command = argv(
        "openssl s_client -connect {host}:{port} -servername {sni} {version} -CAfile {ca}",
        host=HOST,
        port=sc.port,
        sni=SNI,
        version=version,
        ca=PKI / f"{sc.client_trust}.pem",
    )
    if sc.client_trust != "ca":
        command.append("-verify_return_error")
    if sc.client_cert:
        command += argv(
            "-cert {cert} -key {key}", cert=PKI / f"{sc.client_cert}.pem", key=PKI / f"{sc.client_cert}.key"
        )
    if sc.client_groups:
        command += ["-groups", sc.client_groups]
    if sc.record_padding:
        command += ["-record_padding", str(sc.record_padding)]
    if sc.ciphersuites:
        command += ["-ciphersuites", sc.ciphersuites]
    if sc.resume:
        # The first connection saves its session (TLS 1.3: the last ticket received), the next offer it.
        command += ["-sess_out" if index == 0 else "-sess_in", str(session)]
    return command


def record(sc: Scenario, work: Path) -> tuple[Path, Path, list[str]]:
    """The scenario's connections over loopback, one after the other; returns (pcap, keylog, log)."""
    pcap, keylog = work / f"{sc.name}.pcap", work / f"{sc.name}.keylog"
    session = work / f"{sc.name}.session.pem"
    for stale in (pcap, keylog, session):
        stale.unlink(missing_ok=True)
    log: list[str] = []
    tcpdump = Peer(
        argv("tcpdump -i lo -w {pcap} -U --immediate-mode -Z root tcp port {port}", pcap=pcap, port=sc.port),
        log,
        "tcpdump",
    )
    server = client = None
    try:
        tcpdump.wait_for("listening on")
        time.sleep(0.3)
        if sc.server == "gnutls":
            server = Peer(server_argv(sc, keylog), log, "gnutls-serv")
            wait_listening(sc.port)
        else:
            # s_server reads stdin and quits on EOF: keep a pipe open until it is done.
            server = Peer(server_argv(sc, keylog), log, "s_server", stdin=subprocess.PIPE)
            server.wait_for("ACCEPT")  # printed once; s_server keeps listening for -naccept connections
        for index in range(sc.connections):
            if sc.client == "openssl":
                client = Peer(client_argv(sc, index, session), log, f"s_client#{index + 1}", stdin=subprocess.PIPE)
                try:
                    assert client.proc.stdin is not None
                    client.proc.stdin.write(b"hi\n")
                    client.proc.stdin.flush()
                except BrokenPipeError:
                    pass
                time.sleep(CLIENT_LINGER)
                client.close_stdin()  # s_client sends close_notify and quits on EOF
            else:
                command = client_argv(sc, index, session)
                client = Peer(command, log, "scapy-client", stdin=subprocess.DEVNULL, cwd=REPO)
            client.wait(PEER_TIMEOUT)
            if index + 1 < sc.connections and sc.resume and not (session.exists() and session.stat().st_size):
                raise RuntimeError(f"{sc.name}: s_client saved no session to resume")
        if sc.server == "gnutls":
            time.sleep(0.5)  # gnutls-serv serves forever: its answer and FIN are out, it is stopped below
        else:
            server.wait(5.0)
            server.close_stdin()
    finally:
        for peer in (client, server):
            if peer is not None:
                peer.kill()
                peer.close_stdin()
        time.sleep(0.3)
        tcpdump.proc.send_signal(signal.SIGINT)
        tcpdump.wait(10.0)
    return pcap, keylog, log


def scapy_client(spec: dict[str, Any]) -> None:
    """Child process: scapy's TLS 1.3 client with extra ClientHello extensions (flags, padding)."""
    sys.path.insert(0, str(REPO))
    from helloscope.parsers.flags import encode_tls_flags
    from scapy.layers.tls.extensions import TLS_Ext_Padding, TLS_Ext_Unknown
    from scapy.layers.tls.handshake import TLS13ClientHello

    class ExtraExtensionsClient(closing_scapy_client()):  # type: ignore[misc]
        """Appends ``extra_extensions`` to the TLS 1.3 ClientHello the automaton builds."""

        def parse_args(self, extra_extensions=(), **kwargs):  # type: ignore[no-untyped-def]
            super().parse_args(**kwargs)
            self.extra_extensions = list(extra_extensions)

        def add_msg(self, pkt):  # type: ignore[no-untyped-def]
            if isinstance(pkt, TLS13ClientHello) and self.extra_extensions:
                pkt.ext = list(pkt.ext) + self.extra_extensions
            super().add_msg(pkt)

    extra = []
    if spec["flag_codepoint"] is not None:
        extra.append(TLS_Ext_Unknown(type=spec["flag_codepoint"], val=encode_tls_flags({REQUEST_MTLS})))
    if spec["padding"]:
        extra.append(TLS_Ext_Padding(padding=b"\x00" * spec["padding"]))
    kwargs: dict[str, Any] = {}
    if spec["cert"]:
        kwargs.update(mycert=spec["cert"], mykey=spec["key"])
    client = ExtraExtensionsClient(
        server=HOST,
        dport=spec["port"],
        server_name=SNI,
        version="tls13",
        data=[b"hi\n", b"quit"],
        extra_extensions=extra,
        **kwargs,
    )
    client.run()


# --------------------------------------------------------------------------------------------------
# Rewrite: split and reorder the ClientHello segment
# --------------------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def read_pcap(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Global header and (record header, frame) pairs of a classic little-endian pcap file."""
    raw = path.read_bytes()
    magic, linktype = struct.unpack_from("<I", raw, 0)[0], struct.unpack_from("<I", raw, 20)[0]
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise RuntimeError(f"{path}: expected a little-endian microsecond Ethernet pcap")
    records, offset = [], 24
    while offset < len(raw):
        incl = struct.unpack_from("<I", raw, offset + 8)[0]
        records.append((raw[offset : offset + 16], raw[offset + 16 : offset + 16 + incl]))
        offset += 16 + incl
    return raw[:24], records


def tcp_segment(frame: bytes) -> tuple[int, int, bytes] | None:
    """(IP header offset, TCP header offset, payload) of an Ethernet/IPv4/TCP frame."""
    if frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ip = 14
    tcp = ip + (frame[ip] & 0x0F) * 4
    end = ip + struct.unpack_from("!H", frame, ip + 2)[0]
    return ip, tcp, frame[tcp + (frame[tcp + 12] >> 4) * 4 : end]


def build_piece(frame: bytes, ip: int, tcp: int, offset: int, piece: bytes, last: bool) -> bytes:
    """Copy of a TCP frame carrying ``piece`` at ``offset`` of the original payload."""
    headers = bytearray(frame[: tcp + (frame[tcp + 12] >> 4) * 4])
    struct.pack_into("!H", headers, ip + 2, len(headers) - ip + len(piece))
    struct.pack_into("!H", headers, ip + 10, 0)
    struct.pack_into("!H", headers, ip + 10, _checksum(bytes(headers[ip:tcp])))
    seq = struct.unpack_from("!I", headers, tcp + 4)[0]
    struct.pack_into("!I", headers, tcp + 4, (seq + offset) & 0xFFFFFFFF)
    if not last:
        headers[tcp + 13] &= ~0x08  # PSH only on the last piece
    struct.pack_into("!H", headers, tcp + 16, 0)
    segment = bytes(headers[tcp:]) + piece
    pseudo = bytes(headers[ip + 12 : ip + 20]) + struct.pack("!BBH", 0, 6, len(segment))
    struct.pack_into("!H", headers, tcp + 16, _checksum(pseudo + segment))
    return bytes(headers) + piece


# Delivery order of the pieces (0-based); piece 2 appears twice (a retransmitted duplicate).
SPLIT_ORDER = (0, 2, 1, 2, 4, 3)


def split_reorder(src: Path, dst: Path, port: int) -> dict[str, Any]:
    header, records = read_pcap(src)
    out = bytearray(header)
    for index, (rec, frame) in enumerate(records):  # noqa: B007 - used after the break
        seg = tcp_segment(frame)
        if (
            seg
            and seg[2][:1] == b"\x16"
            and len(seg[2]) > 5
            and seg[2][5] == 1
            and struct.unpack_from("!H", frame, seg[1] + 2)[0] == port
        ):
            break
    else:
        raise RuntimeError(f"{src}: no ClientHello segment")
    ip, tcp, payload = seg
    if len(payload) != 5 + struct.unpack_from("!H", payload, 3)[0]:
        raise RuntimeError(f"{src}: ClientHello segment is not exactly one TLS record")
    for rec_before, frame_before in records[:index]:
        out += rec_before + frame_before
    cuts = [round(len(payload) * i / SPLIT_PIECES) for i in range(SPLIT_PIECES + 1)]
    pieces = [(cuts[i], payload[cuts[i] : cuts[i + 1]]) for i in range(SPLIT_PIECES)]
    sec, usec = struct.unpack_from("<II", rec, 0)
    for n, which in enumerate(SPLIT_ORDER):
        offset, piece = pieces[which]
        frame_new = build_piece(frame, ip, tcp, offset, piece, last=which == SPLIT_PIECES - 1)
        t = sec * 1_000_000 + usec + n  # 1 us apart, before the server's answer
        out += struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame_new), len(frame_new))
        out += frame_new
    for rec_after, frame_after in records[index + 1 :]:
        out += rec_after + frame_after
    dst.write_bytes(bytes(out))
    return {
        "client_hello_segment_bytes": len(payload),
        "pieces": [len(p) for _, p in pieces],
        "order": [w + 1 for w in SPLIT_ORDER],
    }


# --------------------------------------------------------------------------------------------------
# Verification with tshark
# --------------------------------------------------------------------------------------------------

FIELDS = [
    "tcp.srcport",
    "tls.record.content_type",
    "tls.handshake.type",
    "tls.handshake.length",
    "tls.record.length",
    "tls.handshake.certificates_length",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extension.type",
    "tls.handshake.ja3",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.version",
    "tcp.stream",
    "tls.handshake.random",
    "tls.handshake.session_id",
]
# ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3): SHA-256 of "HelloRetryRequest".
HELLO_RETRY_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
PRE_SHARED_KEY = 41


def tshark_frames(pcap: Path, keylog: Path | None) -> list[dict[str, list[str]]]:
    argv = [
        "tshark",
        "-n",
        "-r",
        str(pcap),
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-Y",
        "tls",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]
    if keylog is not None:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    for field in FIELDS:
        argv += ["-e", field]
    frames = []
    for line in run(argv).splitlines():
        values = line.split("\t")
        frames.append({f: (v.split("|") if v else []) for f, v in zip(FIELDS, values, strict=False)})
    return frames


def client_hello_extensions(pcap: Path) -> dict[int, list[list[tuple[int, bytes]]]]:
    """Per TCP stream, (type, extension_data) of every extension of each ClientHello, from tshark's PDML."""
    pdml = run(
        [
            "tshark",
            "-n",
            "-r",
            str(pcap),
            "-o",
            "tcp.reassemble_out_of_order:TRUE",
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "pdml",
        ]
    )
    hellos: dict[int, list[list[tuple[int, bytes]]]] = {}
    for packet in ElementTree.fromstring(pdml).iter("packet"):
        stream = next(int(f.get("show", "-1")) for f in packet.iter("field") if f.get("name") == "tcp.stream")
        for handshake in packet.iter("field"):
            if handshake.get("name") != "tls.handshake":
                continue
            if not any(c.get("name") == "tls.handshake.type" and c.get("show") == "1" for c in handshake):
                continue
            extensions = []
            for field in handshake.iter("field"):
                kind = [c for c in field if c.get("name") == "tls.handshake.extension.type"]
                if kind and field.get("name") == "":
                    raw = bytes.fromhex(field.get("value", ""))
                    extensions.append((int(kind[0].get("show", "-1")), raw[4:]))
            hellos.setdefault(stream, []).append(extensions)
    return hellos


def wire_facts(pcap: Path, port: int, keylog: Path | None) -> list[dict[str, Any]]:
    """What tshark sees in one capture, per TCP connection in capture order (decrypted with a key log)."""
    frames = tshark_frames(pcap, keylog)
    streams: dict[int, list[dict[str, list[str]]]] = {}
    for frame in frames:
        streams.setdefault(int(frame["tcp.stream"][0]), []).append(frame)
    extensions = client_hello_extensions(pcap)
    return [
        connection_facts(f"{pcap} stream {stream}", side, port, extensions.get(stream, []))
        for stream, side in sorted(streams.items())
    ]


def connection_facts(
    where: str, frames: list[dict[str, list[str]]], port: int, hello_extensions: list[list[tuple[int, bytes]]]
) -> dict[str, Any]:
    """What tshark sees in the frames of one TCP connection."""
    server = [f for f in frames if f["tcp.srcport"] == [str(port)]]
    client = [f for f in frames if f["tcp.srcport"] != [str(port)]]

    def values(side: list[dict[str, list[str]]], field: str) -> list[str]:
        return [v for f in side for v in f[field]]

    hellos = [f for f in client if "1" in f["tls.handshake.type"]]
    if not hellos or any(f["tls.handshake.type"].count("1") != 1 for f in hellos):
        raise RuntimeError(f"{where}: expected one ClientHello per frame, tshark found {len(hellos)} frames")
    ch = hellos[0]  # a HelloRetryRequest makes the client send a second one
    ch_types = [int(t) for t in ch["tls.handshake.extension.type"]]
    if len(hello_extensions) != len(hellos) or [t for t, _ in hello_extensions[0]] != ch_types:
        raise RuntimeError(f"{where}: PDML and field views of the ClientHello disagree")
    flags = [(t, data) for t, data in hello_extensions[0] if t in TLS_FLAGS_CODEPOINTS]

    # ServerHellos: a HelloRetryRequest is a ServerHello with a fixed random (tshark 4.0 keeps type 2).
    server_hellos = [f for f in server if "2" in f["tls.handshake.type"]]
    randoms = values(server_hellos, "tls.handshake.random")
    if len(randoms) != sum(f["tls.handshake.type"].count("2") for f in server) or len(randoms) != len(server_hellos):
        raise RuntimeError(f"{where}: expected one ServerHello per frame")
    is_retry = [r.replace(":", "") == HELLO_RETRY_RANDOM for r in randoms]
    retries = [f for f, retry in zip(server_hellos, is_retry, strict=True) if retry]
    final = [f for f, retry in zip(server_hellos, is_retry, strict=True) if not retry]
    sh = final[0] if final else None

    versions = values(server, "tls.handshake.extensions.supported_version")
    version = (
        "1.3"
        if "0x0304" in versions
        else ("1.2" if "0x0303" in values(server_hellos, "tls.handshake.version") else "?")
    )
    server_types = {int(t) for t in values(server, "tls.handshake.type")}
    client_types = {int(t) for t in values(client, "tls.handshake.type")}
    cert_frames = [f for f in client if "11" in f["tls.handshake.type"]]
    if not cert_frames:
        client_cert = "absent"
    else:
        length = int(cert_frames[0]["tls.handshake.certificates_length"][0])
        client_cert = "presented" if length else "empty"

    def alerts(side: list[dict[str, list[str]]], sender: str) -> list[dict[str, Any]]:
        found = []
        for f in side:
            for level, desc in zip(f["tls.alert_message.level"], f["tls.alert_message.desc"], strict=False):
                found.append({"sender": sender, "level": int(level), "code": int(desc)})
        return found

    # Resumption. TLS 1.3: the ServerHello accepts a PSK (pre_shared_key, 41; only the ServerHello of
    # that frame is readable without keys, and no other server message carries 41). TLS 1.2: abbreviated
    # handshake, the server sends no Certificate (11) and no ServerHelloDone (14).
    sh_extensions = [int(t) for t in sh["tls.handshake.extension.type"]] if sh else []
    resumed = PRE_SHARED_KEY in sh_extensions if version == "1.3" else sh is not None and not {11, 14} & server_types
    ccs = [f for f in frames if "20" in f["tls.record.content_type"]]
    first_ccs = None if not ccs else "server" if ccs[0]["tcp.srcport"] == [str(port)] else "client"
    ch_session = ch["tls.handshake.session_id"][0] if ch["tls.handshake.session_id"] else ""
    sh_session = sh["tls.handshake.session_id"][0] if sh and sh["tls.handshake.session_id"] else ""

    position = {id(f): i for i, f in enumerate(frames)}
    content = {int(c) for f in frames for c in f["tls.record.content_type"]}
    ch_record = int(ch["tls.record.length"][0]) + 5
    return {
        "version": version,
        "server_name": ch["tls.handshake.extensions_server_name"][0]
        if ch["tls.handshake.extensions_server_name"]
        else None,
        "ja3": ch["tls.handshake.ja3"][0],
        "client_hello_record_bytes": ch_record,
        "client_hello_message_bytes": int(ch["tls.handshake.length"][0]) + 4,
        "tls_flags": flags,
        "post_handshake_auth": 49 in ch_types,
        "certificate_request": 13 in server_types,
        "client_certificate": client_cert,
        "server_finished": 20 in server_types,
        "client_finished": 20 in client_types,
        "ccs": {
            "client": any("20" in f["tls.record.content_type"] for f in client),
            "server": any("20" in f["tls.record.content_type"] for f in server),
        },
        "application_data": 23 in content,
        "alerts": alerts(server, "server") + alerts(client, "client"),
        "handshake_types_seen": sorted(server_types | client_types),
        "client_hello_extensions": ch_types,
        "hello_retry_request": bool(retries),
        # ClientHello, HelloRetryRequest, ClientHello, ServerHello, in capture order.
        "hello_sequence": [
            kind
            for _, kind in sorted(
                [(position[id(f)], "ClientHello") for f in hellos]
                + [(position[id(f)], "HelloRetryRequest") for f in retries]
                + [(position[id(f)], "ServerHello") for f in final]
            )
        ],
        "server_certificate": 11 in server_types,
        "resumed": resumed,
        "first_ccs": first_ccs,
        "session_id_echoed": bool(ch_session) and ch_session == sh_session,
    }


def classify(facts: dict[str, Any], completed: bool) -> tuple[int | None, str]:
    """(server's fatal alert, outcome) by PROTOCOL.md's definitions."""
    fatal = [a["code"] for a in facts["alerts"] if a["sender"] == "server" and a["level"] == 2]
    alert = fatal[0] if fatal else None
    if alert is not None:
        cert_flight = facts["client_certificate"] != "absent"
        return alert, "rejected" if alert in REJECTION_ALERTS and cert_flight else "failed"
    if not completed:
        return None, "unknown"
    if facts["certificate_request"]:
        return None, "authenticated" if facts["client_certificate"] == "presented" else "declined"
    return None, "not_requested"


def flag_outcome(flagged: bool, certificate_request: bool | None) -> str:
    if certificate_request is None:
        return "unknown"
    if flagged:
        return "honored" if certificate_request else "ignored"
    return "unsolicited" if certificate_request else "none"


def check(condition: bool, sc: Scenario, what: str) -> None:
    if not condition:
        raise RuntimeError(f"{sc.name}: {what}")


def expected_document(sc: Scenario, plain: list[dict[str, Any]], keyed: list[dict[str, Any]]) -> dict[str, Any]:
    """Cross-check the capture against the scenario, then build NAME.expected.json."""
    check(len(plain) == len(keyed) == sc.connections, sc, f"{len(plain)} TCP connections, expected {sc.connections}")
    server = f"gnutls-serv {gnutls_version()}" if sc.server == "gnutls" else f"openssl s_server {openssl_version()}"
    client = (
        f"openssl s_client {openssl_version()}"
        if sc.client == "openssl"
        else f"scapy {scapy_version()} TLSClientAutomaton (TLS 1.3)"
    )
    return {
        "description": sc.description,
        "generator": f"{server} / {client}",
        "keylog": f"{(sc.rewrite_of or sc.name)}.keylog",
        "server_port": sc.port,
        "connections": [
            connection_entry(sc, index, p, k) for index, (p, k) in enumerate(zip(plain, keyed, strict=True))
        ],
    }


def connection_entry(sc: Scenario, index: int, plain: dict[str, Any], keyed: dict[str, Any]) -> dict[str, Any]:
    """Cross-check one connection (0-based ``index`` in capture order), then build its entry."""

    def verify(condition: bool, what: str) -> None:
        check(condition, sc, f"connection {index + 1}: {what}")

    # The ClientHello as defined.
    verify(plain["version"] == keyed["version"] == sc.tls, f"negotiated {plain['version']}")
    verify(plain["server_name"] == SNI, "SNI missing")
    if sc.flag_codepoint is None:
        verify(plain["tls_flags"] == [], "unexpected tls_flags extension")
    else:
        verify(
            plain["tls_flags"] == [(sc.flag_codepoint, FLAG_80_EXTENSION_DATA)],
            f"tls_flags on the wire: {plain['tls_flags']}",
        )
    if sc.padding:
        verify(plain["client_hello_record_bytes"] >= 1700, "ClientHello smaller than 1,700 bytes")

    # The handshake's shape: HelloRetryRequest, resumption (plaintext facts, confirmed with the keys).
    for facts in (plain, keyed):
        verify(facts["hello_retry_request"] == sc.hello_retry, f"HelloRetryRequest: {facts['hello_retry_request']}")
        sequence = ["ClientHello", "HelloRetryRequest"] if sc.hello_retry else []
        verify(
            facts["hello_sequence"] == [*sequence, "ClientHello", "ServerHello"],
            f"hellos in capture order: {facts['hello_sequence']}",
        )
    resumed = sc.resume and index > 0
    verify(plain["resumed"] == keyed["resumed"] == resumed, f"resumed {plain['resumed']}, expected {resumed}")
    if sc.tls == "1.2":
        # Abbreviated handshake: the server's ChangeCipherSpec comes first and it echoes the session ID.
        verify(plain["first_ccs"] == ("server" if resumed else "client"), f"first CCS from {plain['first_ccs']}")
        verify(plain["session_id_echoed"] == resumed, f"session ID echoed: {plain['session_id_echoed']}")
    else:
        # The client offers a PSK and the server accepts it instead of authenticating with a certificate.
        verify((PRE_SHARED_KEY in plain["client_hello_extensions"]) == resumed, "pre_shared_key offer")
        verify(keyed["server_certificate"] != resumed, f"server Certificate: {keyed['server_certificate']}")

    # The truth, from the decrypted capture, must be what the scenario set up.
    _, truth_outcome = classify(keyed, completed=keyed["client_finished"] and keyed["server_finished"])
    server_alert, _ = classify(keyed, completed=True)
    truth = Truth(keyed["certificate_request"], keyed["client_certificate"], server_alert, truth_outcome)
    verify(truth == sc.truth, f"on the wire {truth}, scenario defines {sc.truth}")
    flagged = sc.flag_codepoint is not None

    # What is visible without keys.
    if sc.tls == "1.2":
        verify(plain["certificate_request"] == truth.certificate_request, "1.2 CR not in plaintext")
        verify(plain["client_certificate"] == truth.client_certificate, "1.2 client cert differs")
        completed = plain["ccs"]["client"] and plain["ccs"]["server"] and plain["application_data"]
        _, outcome = classify(plain, completed)
        verify(outcome == truth.outcome, f"plaintext outcome {outcome} != {truth.outcome}")
        cr_seen: bool | None = plain["certificate_request"]
        evidence, cert_state = "plaintext", plain["client_certificate"]
    else:
        verify(not {11, 13, 20} & set(plain["handshake_types_seen"]), "1.3 handshake in plaintext?")
        cr_seen, evidence, cert_state = None, "unknown", None
        # A fatal alert sent in plaintext (a client refusing the server before its keys) shows the failure.
        outcome = "failed" if any(alert["level"] == 2 for alert in plain["alerts"]) else "unknown"
    visible_alerts = [{"sender": a["sender"], "code": a["code"]} for a in plain["alerts"]]

    expected = {
        "tls.version": sc.tls,
        "tls.client.server_name": SNI,
        "tls.client.ja3": plain["ja3"],  # of the first ClientHello
        **({"tls.resumed": plain["resumed"]} if sc.resume else {}),
        **({"helloscope.hello_retry_request": plain["hello_retry_request"]} if sc.hello_retry else {}),
        "helloscope.request_mtls": flagged,
        "helloscope.tls_flags.codepoint": sc.flag_codepoint,
        "helloscope.tls_flags.flags": [REQUEST_MTLS] if flagged else [],
        "helloscope.certificate_request.seen": cr_seen,
        "helloscope.certificate_request.evidence": evidence,
        "helloscope.client_certificate.state": cert_state,
        "helloscope.alerts": visible_alerts,
        "helloscope.outcome": outcome,
        "helloscope.flag_outcome": flag_outcome(flagged, cr_seen),
    }
    return {
        "expected": expected,
        "truth": {
            "certificate_request": truth.certificate_request,
            "client_certificate": truth.client_certificate,
            "server_alert": truth.server_alert,
            "outcome": truth.outcome,
            "flag_outcome": flag_outcome(flagged, truth.certificate_request),
        },
    }


_VERSIONS: dict[str, str] = {}


def openssl_version() -> str:
    if "openssl" not in _VERSIONS:
        _VERSIONS["openssl"] = run(["openssl", "version"]).split()[1]
    return _VERSIONS["openssl"]


def gnutls_version() -> str:
    if "gnutls" not in _VERSIONS:
        _VERSIONS["gnutls"] = run(["gnutls-serv", "--version"]).split()[1]
    return _VERSIONS["gnutls"]


def scapy_version() -> str:
    if "scapy" not in _VERSIONS:
        import scapy

        _VERSIONS["scapy"] = scapy.__version__
    return _VERSIONS["scapy"]


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def produce(sc: Scenario, work: Path) -> dict[str, Any]:
    """Record (or rewrite) one scenario, verify it and install its files in pcaps/."""
    pcap_out = PCAPS / f"{sc.name}.pcap"
    if sc.rewrite_of:
        source = PCAPS / f"{sc.rewrite_of}.pcap"
        keylog = PCAPS / f"{sc.rewrite_of}.keylog"
        split = split_reorder(source, work / pcap_out.name, sc.port)
        pcap = work / pcap_out.name
        original = wire_facts(source, sc.port, None)
        log = [f"split {split}"]
    else:
        for attempt in range(1, 4):
            pcap, keylog, log = record(sc, work)
            if pcap.exists() and keylog.exists() and keylog.stat().st_size:
                break
            print(f"  attempt {attempt}: no capture or key log, retrying\n  " + "\n  ".join(log))
        else:
            raise RuntimeError(f"{sc.name}: recording failed\n" + "\n".join(log))
    try:
        plain = wire_facts(pcap, sc.port, None)
        keyed = wire_facts(pcap, sc.port, keylog)
        document = expected_document(sc, plain, keyed)
    except Exception:
        print("\n".join(log))
        raise
    if sc.rewrite_of:
        check([c["ja3"] for c in plain] == [c["ja3"] for c in original], sc, "JA3 differs from the original")
        check(
            [c["client_hello_record_bytes"] for c in plain] == [c["client_hello_record_bytes"] for c in original],
            sc,
            "reassembled ClientHello differs in size",
        )
        document["split"] = split
    shutil.move(str(pcap), pcap_out)
    os.chmod(pcap_out, 0o644)
    if not sc.rewrite_of:
        shutil.move(str(keylog), PCAPS / keylog.name)
        os.chmod(PCAPS / keylog.name, 0o644)
    (PCAPS / f"{sc.name}.expected.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"  ok: {pcap_out.stat().st_size} bytes")
    for n, (facts, connection) in enumerate(zip(plain, document["connections"], strict=True), 1):
        truth = connection["truth"]
        print(
            f"  connection {n}: ClientHello {facts['client_hello_record_bytes']} B, "
            f"hellos {'/'.join(facts['hello_sequence'])}, resumed={facts['resumed']}, "
            f"CR={truth['certificate_request']} cert={truth['client_certificate']} "
            f"alert={truth['server_alert']} outcome={truth['outcome']} flag={truth['flag_outcome']}"
        )
    return {"scenario": sc, "facts": plain, "document": document}


def write_readme(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        sc: Scenario = r["scenario"]
        truth = r["document"]["connections"][0]["truth"]  # every connection of a scenario has the same
        server = "GnuTLS gnutls-serv" if sc.server == "gnutls" else "OpenSSL s_server"
        stack = f"{server} / " + ("OpenSSL s_client" if sc.client == "openssl" else "scapy TLS 1.3 client")
        alert = f"{truth['server_alert']}" if truth["server_alert"] is not None else "–"
        flags = "–" if sc.flag_codepoint is None else f"{sc.flag_codepoint} (0x{sc.flag_codepoint:04X}): {{80}}"
        rows.append(
            f"| `{sc.name}.pcap` | TLS {sc.tls} | {stack} | {sc.description} | {flags} | "
            f"{'yes' if truth['certificate_request'] else 'no'} | {truth['client_certificate']} | "
            f"{alert} | {truth['outcome']} / {truth['flag_outcome']} | "
            f"{' / '.join(str(c['client_hello_record_bytes']) for c in r['facts'])} |"
        )
    text = README_TEMPLATE.format(table="\n".join(rows), openssl=openssl_version(), scapy=scapy_version())
    (PCAPS / "README.md").write_text(text)


README_TEMPLATE = """\
# Real-traffic fixtures

Packet captures of real TLS stacks talking over loopback, one TCP connection per capture (two in the
resumption captures), each with the server's key log and the result helloscope must report. They are
regenerated by one script:

    sudo python3 pcaps/make_fixtures.py            # from the repository root; all scenarios
    sudo python3 pcaps/make_fixtures.py NAME ...   # only these (a rewrite needs its source capture)

The script needs root (tcpdump on `lo`), OpenSSL 3.0 (`openssl s_server`/`s_client`), tcpdump,
tshark 4.0, scapy >= 2.6 and GnuTLS 3.7 (`gnutls-serv`). Every run produces new captures (TLS randoms, key shares and session tickets
differ); the `.expected.json` files and this README come out the same.

## Files

For each scenario `NAME`:

| file | content |
| --- | --- |
| `NAME.pcap` | tcpdump capture (Ethernet link type, `tcp port P` on `lo`) of the scenario's connections |
| `NAME.keylog` | the server's key log (`openssl s_server -keylogfile`, or `SSLKEYLOGFILE` for `gnutls-serv`; NSS key log format), all connections |
| `NAME.expected.json` | what helloscope must report, one entry in `connections` per TCP connection in capture order: `expected` (without keys, plaintext-visible facts only) and `truth` (what really happened, including the encrypted parts) |

`large-clienthello-split-reordered` has no key log of its own: it is a rewrite of `large-clienthello`
and uses `large-clienthello.keylog`.

`pki/` holds the test PKI the captures were made with (RSA 2048, SHA-256, valid 10 years):
`ca` (helloscope test CA), `server` (CN and SAN `server.helloscope.test`, signed by `ca`), `client`
(EKU clientAuth, signed by `ca`) and `untrusted-ca` / `untrusted-client` (a second CA the server does not
trust). **These are test keys, published on purpose: never trust them for anything.** The script reuses
them when they are all present; delete `pki/` to make new ones.

## Captures

Every connection goes to `127.0.0.1` with SNI `server.helloscope.test`. The server is
`openssl s_server` ({openssl}), always with `-CAfile pki/ca.pem` (so it also sends the CA in its
chain), except in `client-abort-gnutls`, where it is `gnutls-serv`; client authentication is
`-Verify 1` (required), `-verify 1` (optional) or `-Verify 1 -verify_return_error` (required and
trusted). The client sends `hi` and closes. In the
resumption captures `s_server -naccept 2` serves two connections one after the other: the first
`s_client` saves its session with `-sess_out`, the second offers it with `-sess_in`. Every connection of
a capture has the same CertificateRequest, client Certificate, alert and outcome; the last column gives
the size of the first ClientHello of each connection, in capture order.

| file | version | stacks | scenario | tls_flags (codepoint: flags) | CertificateRequest | client Certificate | server alert | outcome / flag outcome | ClientHello record bytes |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{table}

Notes:

- "client Certificate" is what the client sent: `absent` (no Certificate message), `empty` (a Certificate
  message without certificates: OpenSSL and scapy both send one when asked and they have no
  certificate, in TLS 1.2 and 1.3 alike) or `presented`.
- In TLS 1.2 the CertificateRequest, the client Certificate and the server's rejection alert are
  plaintext; in TLS 1.3 everything after the ServerHello is encrypted, so `expected` says `null` /
  `unknown` and only `truth` (checked with the key log) has them. `helloscope.alerts` lists only alerts
  whose description is readable without keys (TLS 1.2 alerts after ChangeCipherSpec, such as the
  close_notify, are encrypted and not listed).
- `tls.client.ja3` is tshark's `tls.handshake.ja3` for the ClientHello (the first one of the
  connection when a HelloRetryRequest makes the client send a second).
- `tls13-hello-retry`: `s_server -groups P-256`, `s_client -groups X25519:P-256`. The client's first
  ClientHello carries a key share for X25519 only, the server answers with a HelloRetryRequest (a
  ServerHello whose random is `cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c`,
  RFC 8446 4.1.3), the client sends a second ClientHello with a P-256 key share and the handshake
  completes: ClientHello, HelloRetryRequest, ClientHello, ServerHello in one TCP connection.
  Its `expected` has `helloscope.hello_retry_request: true`.
- `tls12-resumed`: the second connection is an abbreviated handshake (OpenSSL offers the session ticket
  and session ID it saved; the server echoes the session ID and answers ServerHello, ChangeCipherSpec,
  Finished: no Certificate, no ServerHelloDone, and its ChangeCipherSpec comes before the client's).
  `tls13-resumed-psk`: the second ClientHello offers the first connection's session ticket in
  pre_shared_key (41) and the ServerHello accepts it with pre_shared_key (41); the decrypted handshake
  has no server Certificate. In both, `expected` has `tls.resumed`: `false` for the first connection,
  `true` for the second.
- `client-abort-gnutls`: `gnutls-serv --disable-client-cert` (TLS 1.3 only), `s_client -CAfile
  pki/untrusted-ca.pem -verify_return_error`. The client refuses the server's certificate with a
  plaintext unknown_ca alert (it has not switched to its handshake keys) and sends its FIN; the server,
  expecting an encrypted record, sends the two session tickets it had queued, then a fatal
  bad_record_mac under its application keys, and its FIN. Without keys only the client's alert is
  readable (`expected`); with the key log the server's alert is too (`truth`).
- The flagged hellos (`tls13-flag*`) and the large hellos come from scapy {scapy}'s TLS 1.3 client
  automaton (`scapy.layers.tls.automaton_cli.TLSClientAutomaton`, subclassed so its ClientHello carries
  extra extensions). The tls_flags extension_data is `0b 00 00 00 00 00 00 00 00 00 00 01` (flag 80,
  request_mtls). scapy offers only TLS_AES_128_GCM_SHA256, and adds post_handshake_auth (49) when it has
  a client certificate.
- `large-clienthello` carries a 1,600-byte padding extension (21). In
  `large-clienthello-split-reordered` its ClientHello segment is cut into 5 TCP segments of about
  equal size, written in the order 1, 3, 2, 3 (duplicate), 5, 4, 1 µs apart, with sequence numbers, IP
  lengths and IP/TCP checksums recomputed; every other frame is copied byte for byte. tshark 4.0
  reassembles the ClientHello (same JA3 as the original) only with
  `-o tcp.reassemble_out_of_order:TRUE`, which is off by default; the script always sets it.
  With default preferences tshark reports no errors; with checksum validation turned on, only the
  frames copied from the loopback capture fail it (Linux does not fill in TCP checksums on `lo`, in
  every capture here), the five rewritten segments pass.
- Every fact in the expected files was checked with tshark when the capture was made (without keys for
  `expected`, with `-o tls.keylog_file:pcaps/NAME.keylog` for `truth`): `tls.handshake.type == 13`,
  `tls.handshake.certificates_length` of the client Certificate, `tls.alert_message.desc` of the server's
  alert, both Finished messages, and per TCP connection (`tcp.stream`) the ServerHello
  `tls.handshake.random` (HelloRetryRequest), its `tls.handshake.extension.type` (pre_shared_key) and the
  handshake types and ChangeCipherSpec order of an abbreviated TLS 1.2 handshake. The script stops if the
  wire does not match the scenario definition.
  The expected files were never produced by helloscope.

## Licence

The captures, key logs, expected results and the test PKI are made by this project and are licensed
under the Apache License 2.0, like the code. The private keys in `pki/` and the secrets in the key logs
are test material with no value: publishing them is the point.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios to regenerate (default: all)")
    parser.add_argument("--scapy-client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scapy_client:
        scapy_client(json.loads(args.scapy_client))
        return 0
    if os.geteuid() != 0:
        print("needs root: tcpdump captures on lo", file=sys.stderr)
        return 1
    known = {sc.name for sc in SCENARIOS}
    unknown = set(args.names) - known
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    selected = [sc for sc in SCENARIOS if not args.names or sc.name in args.names]
    gnutls = ("gnutls-serv",) if any(sc.server == "gnutls" for sc in selected) else ()
    for tool in ("openssl", "tcpdump", "tshark", *gnutls):
        if shutil.which(tool) is None:
            print(f"{tool} not found", file=sys.stderr)
            return 1
    make_pki()
    results = []
    with tempfile.TemporaryDirectory(prefix="helloscope-fixtures-") as tmp:
        for sc in selected:
            print(f"{sc.name} (port {sc.port})")
            results.append(produce(sc, Path(tmp)))
    if len(selected) == len(SCENARIOS):
        write_readme(results)
        print("README: pcaps/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
