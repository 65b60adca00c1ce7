#!/usr/bin/env python3
"""Record a labelled corpus of real TLS 1.3 handshakes for helloscope's keyless inference.

Run from anywhere, as root (tcpdump on ``lo``)::

    python3 bench/inference_corpus.py --out bench/out/inference [--repeat N] [--jobs J]
        [--stacks openssl,python,scapy,tlslite] [--only SUBSTRING ...] [--list]

Every *scenario* is one server stack, one client stack, one client-authentication setting and at most one
confounding variant (resumption, 0-RTT, HelloRetryRequest, record padding, tickets, server data, client
teardown). For each scenario the script

1. starts ``tcpdump -i lo`` on the scenario's own port (below the ephemeral range, so no other
   scenario's client port can match the filter),
2. starts the server (``openssl s_server -naccept N``, or this script as a Python ``ssl`` / tlslite-ng
   server), which writes a key log,
3. runs the client N times one after the other (``openssl s_client`` processes, or this script as a
   Python ``ssl`` / scapy ``TLSClientAutomaton`` / tlslite-ng client making N connections); clients that
   can also write a key log do, and the two key logs are merged,
4. stops tcpdump, reads the capture with tshark twice (PDML; without keys and with
   ``-o tls.keylog_file:NAME.keylog``) and labels every TCP connection from what tshark decrypted.

Outputs in ``--out``: ``NAME.pcap`` and ``NAME.keylog`` per scenario, ``labels.json`` (one entry per
TCP connection, key ``NAME.pcap:CLIENT_PORT``), ``summary.md`` (combinations produced and skipped, label
distribution, record sizes of the encrypted flights). Labels come from tshark only: helloscope is never
used. Every child process is bounded by a timeout and killed on expiry; temporary files live in a
temporary directory that is removed on exit.

Needs: openssl (3.0), tcpdump, tshark (4.0), scapy >= 2.6, tlslite-ng >= 0.8.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pcaps"))
from peers import Peer, closing_scapy_client, wait_listening  # noqa: E402  (shared with pcaps/make_fixtures.py)

PKI = REPO / "pcaps" / "pki"
SNI = "server.helloscope.test"
HOST = "127.0.0.1"
BASE_PORT = 21000  # + scenario index; below /proc/sys/net/ipv4/ip_local_port_range (32768-60999)

CLIENT_TIMEOUT = 20.0  # one s_client process
CONNECTION_BUDGET = 10.0  # per connection, for peers that make or accept several
LINGER = 0.6  # seconds a client keeps the connection open after sending its data
TSHARK_TIMEOUT = 120.0
PAD_BLOCK = 256  # record padding block size (openssl -record_padding, tlslite padding_cb)
HRR_SERVER_GROUP = "P-384"  # every client offers it but sends its first key share for X25519/P-256

OLD_SERVERS = ("openssl", "python", "tlslite")
OLD_CLIENTS = ("openssl", "python", "scapy", "tlslite")
# Added for issue 14: GnuTLS (gnutls-serv / gnutls-cli), NSS (selfserv / tstclnt), Java JSSE (bench/peers/Peer.java),
# Go crypto/tls (bench/peers/peer.go) and Node.js tls (bench/peers/peer.js). Their matrix uses each stack's
# default suite negotiation.
NEW_STACKS = ("gnutls", "nss", "java", "go", "node")
SERVERS = OLD_SERVERS + NEW_STACKS
CLIENTS = OLD_CLIENTS + NEW_STACKS
STACKS = ("openssl", "python", "scapy", "tlslite", *NEW_STACKS)
# No key log can be had from these (JSSE has none; Debian's NSS is built without SSLKEYLOGFILE): they are
# recorded only against a peer that writes one (the key log of either side decrypts both directions).
NO_KEYLOG = frozenset({"java", "nss"})
CLI_CLIENTS = frozenset({"openssl", "gnutls", "nss"})  # one process per connection, driven through stdin
# Clients that can resume a session across the scenario's connections.
RESUME_CLIENTS = frozenset({"openssl", "python", "tlslite", "go", "node", "java"})
# Clients with the http / close / abort behaviours (abort: the client refuses the server's certificate).
BEHAVING_CLIENTS = ("openssl", "gnutls", "nss", "java", "go", "node")
PAD_MBEDTLS = 16  # mbedTLS-style padding granularity (openssl -record_padding 16)


@dataclass(frozen=True)
class Suite:
    name: str
    code: int
    short: str
    tlslite: str
    tag: int  # AEAD tag bytes


SUITES = [
    Suite("TLS_AES_128_GCM_SHA256", 0x1301, "aes128gcm", "aes128gcm", 16),
    Suite("TLS_AES_256_GCM_SHA384", 0x1302, "aes256gcm", "aes256gcm", 16),
    Suite("TLS_CHACHA20_POLY1305_SHA256", 0x1303, "chacha20", "chacha20-poly1305", 16),
    Suite("TLS_AES_128_CCM_SHA256", 0x1304, "aes128ccm", "aes128ccm", 16),
    Suite("TLS_AES_128_CCM_8_SHA256", 0x1305, "aes128ccm8", "aes128ccm_8", 8),
]
SUITE_BY_NAME = {s.name: s for s in SUITES}
SUITE_BY_CODE = {s.code: s for s in SUITES}
CCM = {"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"}

# Client-authentication settings: (server mode, client certificate).
AUTHS: dict[str, tuple[str, str | None]] = {
    "noauth": ("none", None),
    "optional-nocert": ("optional", None),
    "optional-cert": ("optional", "client"),
    "optional-untrusted": ("optional", "untrusted-client"),
    "required-nocert": ("required", None),
    "required-cert": ("required", "client"),
    "required-untrusted": ("required", "untrusted-client"),
}
# Swept over every suite; the two others only with the first suite a pair supports.
SUITE_SWEEP_AUTHS = ("noauth", "optional-nocert", "required-nocert", "required-cert", "required-untrusted")

OPENSSL_SERVER_AUTH = {
    "noauth": [],
    "optional-nocert": ["-verify", "1"],
    "optional-cert": ["-verify", "1"],
    "optional-untrusted": ["-verify", "1"],
    "required-nocert": ["-Verify", "1"],
    "required-cert": ["-Verify", "1"],
    "required-untrusted": ["-Verify", "1", "-verify_return_error"],
}
PYTHON_VERIFY = {"none": "CERT_NONE", "optional": "CERT_OPTIONAL", "required": "CERT_REQUIRED"}

HS_NAMES = {
    1: "CH",
    2: "SH",
    4: "NST",
    5: "EOED",
    8: "EE",
    11: "Cert",
    13: "CR",
    15: "CV",
    20: "Fin",
    24: "KeyUpdate",
    25: "CompCert",
}
CT_NAMES = {20: "CCS", 21: "Alert", 22: "HS", 23: "App"}
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
EXT_PSK, EXT_EARLY_DATA = 41, 42


# --------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str
    client: str
    auth: str
    variant: str = "core"
    suite: str | None = None  # forced TLS 1.3 suite; None: the stacks' default negotiation
    resume: bool = False  # connections 2..N resume the previous one's session (PSK)
    early_data: bool = False  # connections 2..N also send 0-RTT data
    hrr: bool = False  # server accepts only P-384: HelloRetryRequest
    pad_server: int = 0
    pad_client: int = 0
    num_tickets: int | None = None  # None: stack default
    tickets: bool = False  # tlslite server: issue tickets (it sends none by default)
    server_data: bool = False  # server writes "srv\n" as soon as the handshake completes
    # data: "hi\n" right after Finished; quiet: no data; close: EOF at once; http: a GET request, waiting for the
    # answer; abort: the client refuses the server's certificate (untrusted CA) with its own fatal alert;
    # abort-resumed: the client (Go) refuses every resumed connection with its own fatal alert.
    client_mode: str = "data"
    port: int = 0

    @property
    def client_cert(self) -> str | None:
        return AUTHS[self.auth][1]

    @property
    def server_mode(self) -> str:
        return AUTHS[self.auth][0]

    @property
    def padding_by(self) -> str | None:
        if self.pad_server and self.pad_client:
            return "both"
        return "server" if self.pad_server else "client" if self.pad_client else None

    def expected(self, index: int) -> dict[str, Any]:
        """What the scenario should produce on connection ``index`` (a sanity check, not the label)."""
        if self.resume and index > 0 and self.client_mode != "abort-resumed":
            return {"certificate_request": False, "client_certificate": "absent", "server_alert": None}
        if self.server in NEW_STACKS or self.client in NEW_STACKS or self.client_mode.startswith("abort"):
            # Alerts and certificate choice differ per stack (e.g. JSSE sends no certificate that the
            # server's certificate_authorities do not name): only the CertificateRequest is checked.
            if self.resume and index > 0:
                return {"certificate_request": False}
            return {"certificate_request": self.server_mode != "none"}
        request = self.server_mode != "none"
        cert = "absent" if not request else "presented" if self.client_cert else "empty"
        alert = None
        if self.auth == "required-nocert":
            alert = 116
        elif self.auth == "required-untrusted" or (self.auth == "optional-untrusted" and self.server == "python"):
            alert = 48
        return {"certificate_request": request, "client_certificate": cert, "server_alert": alert}


def suites_for(server: str, client: str) -> tuple[list[str | None], str | None]:
    """Suites a pair can be made to negotiate, and why the others are missing."""
    if server in NEW_STACKS or client in NEW_STACKS:
        return [None], None
    if server == client == "python":
        return [None], (
            "Python ssl cannot restrict the TLS 1.3 suites on either side (set_ciphers only affects "
            "TLS <= 1.2): only the default negotiation (server preference) is recorded"
        )
    if "python" in (server, client):
        return [s.name for s in SUITES if s.name not in CCM], (
            "Python ssl cannot enable the TLS 1.3 CCM suites (OpenSSL's default TLS 1.3 list has none and "
            "Python 3.11 has no API for SSL_CTX_set_ciphersuites)"
        )
    return [s.name for s in SUITES], None


def auth_unsupported(server: str, auth: str) -> str | None:
    if server == "tlslite" and auth == "required-untrusted":
        return (
            "tlslite-ng does not validate client certificate chains (reqCert only asks for one), so there "
            "is no unknown_ca rejection to record"
        )
    return None


def build_scenarios() -> tuple[list[Scenario], list[dict[str, str]]]:
    """Every scenario (with its fixed port) and the combinations that cannot be made, with reasons."""
    out: list[Scenario] = []
    skipped: list[dict[str, str]] = []

    def skip(what: str, reason: str) -> None:
        skipped.append({"combination": what, "reason": reason})

    unsupported: dict[str, list[str]] = collections.defaultdict(list)

    def add(sc: Scenario) -> None:
        reason = auth_unsupported(sc.server, sc.auth)
        if reason:
            unsupported[reason].append(sc.name)
        else:
            out.append(sc)

    # Core: every server x client x suite x client-authentication setting.
    for server in OLD_SERVERS:
        for client in OLD_CLIENTS:
            suites, why = suites_for(server, client)
            if why:
                missing = [s.name for s in SUITES if s.name not in suites]
                skip(f"{server} server x {client} client, {'/'.join(missing)}", why)
            for n, suite in enumerate(suites):
                short = SUITE_BY_NAME[suite].short if suite else "default"
                for auth in AUTHS:
                    if n > 0 and auth not in SUITE_SWEEP_AUTHS:
                        continue
                    add(Scenario(f"{server}-{client}-{auth}-{short}", server, client, auth, suite=suite))

    three = ("noauth", "required-nocert", "required-cert")

    # Session resumption (PSK): connection 1 full, 2..N resume the previous session.
    for server in OLD_SERVERS:
        for client in OLD_CLIENTS:
            if client == "scapy":
                continue
            for auth in ("noauth", "required-cert"):
                add(
                    Scenario(
                        f"{server}-{client}-resume-{auth}",
                        server,
                        client,
                        auth,
                        "resume",
                        resume=True,
                        tickets=server == "tlslite",
                    )
                )
    skip(
        "scapy client x resumption",
        "scapy's TLSClientAutomaton resumes only from a ticket file plus a "
        "hex resumption secret passed by hand; not wired up here (openssl, Python and tlslite clients "
        "cover resumption)",
    )

    # 0-RTT: resumption with early data (EndOfEarlyData joins the client's flight).
    for auth in ("noauth", "required-cert"):
        add(
            Scenario(
                f"openssl-openssl-early-data-{auth}",
                "openssl",
                "openssl",
                auth,
                "early-data",
                resume=True,
                early_data=True,
            )
        )
    skip(
        "0-RTT with python / tlslite / scapy",
        "Python ssl has no early-data API; tlslite-ng and scapy "
        "clients do not send 0-RTT data (only openssl s_client -early_data is used)",
    )
    skip(
        "0.5-RTT (server data before the client's Finished)",
        "no stack here can do it: s_server, Python "
        "ssl and tlslite-ng only write after the handshake completes (OpenSSL's SSL_write_early_data on "
        "the server side is not reachable from s_server or Python)",
    )

    # HelloRetryRequest: the server accepts only P-384.
    for server, client in [("openssl", c) for c in OLD_CLIENTS] + [("python", "openssl"), ("tlslite", "openssl")]:
        for auth in three:
            add(Scenario(f"{server}-{client}-hrr-{auth}", server, client, auth, "hrr", hrr=True))

    # Record padding (blocks of PAD_BLOCK bytes).
    pad_auths = ("noauth", "optional-nocert", "required-nocert", "required-cert", "required-untrusted")
    pad_pairs = [
        ("openssl", "openssl", True, False),
        ("openssl", "python", True, False),
        ("openssl", "tlslite", True, False),
        ("tlslite", "openssl", True, False),
        ("tlslite", "python", True, False),
        ("openssl", "openssl", False, True),
        ("python", "openssl", False, True),
        ("tlslite", "openssl", False, True),
        ("openssl", "tlslite", False, True),
        ("openssl", "openssl", True, True),
        ("openssl", "tlslite", True, True),
        ("tlslite", "openssl", True, True),
    ]
    skip(
        "openssl server padding x scapy client",
        "scapy 2.8 cannot read padded TLS 1.3 records: after the "
        "server's padded flight it sends a 3-byte record and s_server answers bad_record_mac (20)",
    )
    for server, client, ps, pc in pad_pairs:
        side = "both" if ps and pc else "server" if ps else "client"
        for auth in pad_auths:
            add(
                Scenario(
                    f"{server}-{client}-pad{PAD_BLOCK}-{side}-{auth}",
                    server,
                    client,
                    auth,
                    f"padding-{side}",
                    pad_server=PAD_BLOCK if ps else 0,
                    pad_client=PAD_BLOCK if pc else 0,
                )
            )
    skip(
        "record padding by python (either side) or scapy",
        "Python ssl has no record-padding API and "
        "scapy's automaton has no padding option (openssl -record_padding and tlslite padding_cb are used)",
    )

    # NewSessionTicket count: none from OpenSSL / Python; tlslite made to send its 2.
    for server in ("openssl", "python"):
        for auth in three:
            add(Scenario(f"{server}-openssl-no-tickets-{auth}", server, "openssl", auth, "no-tickets", num_tickets=0))
    for auth in three:
        add(Scenario(f"tlslite-openssl-tickets-{auth}", "tlslite", "openssl", auth, "tickets", tickets=True))

    # Server application data right after the handshake; client teardown variants.
    for server in OLD_SERVERS:
        for auth in three:
            add(
                Scenario(
                    f"{server}-openssl-server-data-{auth}", server, "openssl", auth, "server-data", server_data=True
                )
            )
    for server, client in (
        ("openssl", "openssl"),
        ("python", "openssl"),
        ("tlslite", "openssl"),
        ("openssl", "python"),
    ):
        for auth in three:
            add(
                Scenario(
                    f"{server}-{client}-client-quiet-{auth}", server, client, auth, "client-quiet", client_mode="quiet"
                )
            )
    for server in OLD_SERVERS:
        for auth in three:
            add(
                Scenario(
                    f"{server}-openssl-client-eof-{auth}", server, "openssl", auth, "client-eof", client_mode="close"
                )
            )

    add_new_stack_scenarios(add, skip)

    for reason, names in unsupported.items():
        skip(f"tlslite server x required-untrusted ({len(names)} scenarios: {', '.join(names)})", reason)
    names = [sc.name for sc in out]
    assert len(names) == len(set(names)), "duplicate scenario names"
    return [replace(sc, port=BASE_PORT + i) for i, sc in enumerate(out)], skipped


def add_new_stack_scenarios(add: Any, skip: Any) -> None:
    """GnuTLS, NSS, JSSE, Go and Node against every stack, and real client behaviour (issue 14).

    Per pair (at least one new stack, at least one side writing a key log): every client-authentication
    setting; a client that sends an HTTP request and waits for the answer, one that closes right after its
    flight, one that refuses the server's certificate; resumption; HelloRetryRequest. Plus 16-byte record
    padding (mbedTLS's granularity) from s_server and from s_client, and a Go client refusing resumed
    sessions. s_client gets the http and abort behaviours against the older servers too.
    """
    three = ("noauth", "required-nocert", "required-cert")
    for server in SERVERS:
        for client in CLIENTS:
            if server in NO_KEYLOG and client in NO_KEYLOG:
                continue
            new = server in NEW_STACKS or client in NEW_STACKS
            # Against the other Python-hosted stacks (Python ssl, tlslite-ng, scapy), three settings only.
            light = bool({server, client} & {"python", "tlslite", "scapy"})
            if new:
                for auth in three if light else SUITE_SWEEP_AUTHS:
                    add(Scenario(f"{server}-{client}-{auth}-default", server, client, auth))
            if client in BEHAVING_CLIENTS and (new or client == "openssl"):
                for auth in ("noauth", "required-cert"):
                    add(
                        Scenario(
                            f"{server}-{client}-http-{auth}", server, client, auth, "client-http", client_mode="http"
                        )
                    )
                if new:
                    for auth in ("required-nocert", "required-cert"):
                        add(
                            Scenario(
                                f"{server}-{client}-client-close-{auth}",
                                server,
                                client,
                                auth,
                                "client-close",
                                client_mode="close",
                            )
                        )
                for auth in ("noauth",):
                    add(
                        Scenario(
                            f"{server}-{client}-client-abort-{auth}",
                            server,
                            client,
                            auth,
                            "client-abort",
                            client_mode="abort",
                        )
                    )
            if not new:
                continue
            if client in RESUME_CLIENTS and server != "nss" and not light:
                for auth in ("noauth",):
                    add(
                        Scenario(
                            f"{server}-{client}-resume-{auth}",
                            server,
                            client,
                            auth,
                            "resume",
                            resume=True,
                            tickets=server == "tlslite",
                        )
                    )
            if not light:
                for auth in ("required-nocert",):
                    add(Scenario(f"{server}-{client}-hrr-{auth}", server, client, auth, "hrr", hrr=True))
    for server in SERVERS:
        if server not in ("nss",):
            for auth in ("noauth", "required-cert"):
                add(
                    Scenario(
                        f"{server}-go-abort-resumed-{auth}",
                        server,
                        "go",
                        auth,
                        "client-abort-resumed",
                        resume=True,
                        tickets=server == "tlslite",
                        client_mode="abort-resumed",
                    )
                )
    for client in ("openssl", "gnutls", "nss", "java", "go", "node"):
        for auth in ("noauth", "required-nocert", "required-cert"):
            add(
                Scenario(
                    f"openssl-{client}-pad{PAD_MBEDTLS}-server-{auth}",
                    "openssl",
                    client,
                    auth,
                    f"padding{PAD_MBEDTLS}-server",
                    pad_server=PAD_MBEDTLS,
                )
            )
    for server in ("openssl", "gnutls", "nss", "java", "go", "node"):
        for auth in ("noauth", "required-nocert", "required-cert"):
            add(
                Scenario(
                    f"{server}-openssl-pad{PAD_MBEDTLS}-client-{auth}",
                    server,
                    "openssl",
                    auth,
                    f"padding{PAD_MBEDTLS}-client",
                    pad_client=PAD_MBEDTLS,
                )
            )
    skip(
        "java x java, java x nss, nss x java, nss x nss",
        "neither side writes a key log (JSSE has none; Debian's "
        "NSS is built without SSLKEYLOGFILE), so tshark could not label the connection",
    )
    skip("nss server x resumption", "selfserv's TLS 1.3 resumption was not wired up here")
    skip(
        "gnutls / nss clients x resumption",
        "gnutls-cli resumes only within one process (--resume makes its own "
        "second connection) and tstclnt has no session file: not wired up",
    )
    skip(
        "record padding by gnutls, nss, java, go, node",
        "none of these offers record padding from its tools or API "
        "(s_server/s_client -record_padding 16 stand in for mbedTLS's 16-byte granularity)",
    )


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------

PLAIN_CHECK = False  # --plain-check
TOOLS: dict[str, str] = {}  # filled by prepare_tools(): built peers, PKCS#12 files, NSS databases


def ensure_packages(stacks: set[str]) -> None:
    """apt-get install what the selected stacks need (Debian packages), when a tool is missing."""
    wanted = {
        "gnutls": ("gnutls-cli", "gnutls-bin"),
        "nss": ("selfserv", "libnss3-tools"),
        "java": ("javac", "openjdk-17-jdk-headless"),
        "go": ("go", "golang-go"),
        "node": ("node", "nodejs"),
    }
    for module, pkg in (("tlslite", "tlslite-ng"), ("scapy", "scapy")):
        try:
            __import__(module)
        except ImportError:
            subprocess.run([sys.executable, "-m", "pip", "install", pkg], check=True, timeout=600)
    missing = [pkg for stack, (tool, pkg) in wanted.items() if stack in stacks and shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update"], check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, timeout=1800)


def prepare_tools(stacks: set[str], work: Path) -> None:
    """Build the Go and Java peers, make PKCS#12 files and the NSS databases, once per run."""
    peers = REPO / "bench" / "peers"
    tools = work / "tools"
    tools.mkdir(exist_ok=True)
    run = lambda argv, **kw: subprocess.run(argv, check=True, capture_output=True, timeout=600, **kw)  # noqa: E731
    if "go" in stacks:
        env = {**os.environ, "GOCACHE": str(tools / "gocache"), "GOPATH": str(tools / "gopath"), "GO111MODULE": "off"}
        run(["go", "build", "-o", str(tools / "peer-go"), str(peers / "peer.go")], env=env)
        TOOLS["go"] = str(tools / "peer-go")
    if "java" in stacks:
        run(["javac", "-d", str(tools / "java"), str(peers / "Peer.java")])
        TOOLS["java"] = str(tools / "java")
    for name in ("server", "client", "untrusted-client"):
        run(
            [
                "openssl",
                "pkcs12",
                "-export",
                "-in",
                str(PKI / f"{name}.pem"),
                "-inkey",
                str(PKI / f"{name}.key"),
                "-name",
                name,
                "-out",
                str(tools / f"{name}.p12"),
                "-passout",
                "pass:changeit",
            ]
        )
        TOOLS[f"p12-{name}"] = str(tools / f"{name}.p12")
    if "nss" in stacks:
        for db, trusted in (("nssdb", True), ("nssdb-untrusted", False)):
            path = tools / db
            path.mkdir()
            run(["certutil", "-N", "-d", f"sql:{path}", "--empty-password"])
            for name in ("server", "client", "untrusted-client"):
                run(["pk12util", "-i", str(tools / f"{name}.p12"), "-d", f"sql:{path}", "-W", "changeit"])
            if trusted:
                run(["certutil", "-A", "-n", "ca", "-t", "CT,C,C", "-i", str(PKI / "ca.pem"), "-d", f"sql:{path}"])
            TOOLS[db] = str(path)
    TOOLS["node"] = str(peers / "peer.js")


def gnutls_priority(sc: Scenario) -> str:
    priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3"
    return priority + (":-GROUP-ALL:+GROUP-SECP384R1" if sc.hrr else "")


def gnutls_server_argv(sc: Scenario, keylog: Path) -> list[str]:
    auth = {"none": ["-a"], "optional": ["--verify-client-cert"], "required": ["-r", "--verify-client-cert"]}
    return [
        "env",
        f"SSLKEYLOGFILE={keylog}",
        "gnutls-serv",
        "-p",
        str(sc.port),
        "--x509certfile",
        str(PKI / "server.pem"),
        "--x509keyfile",
        str(PKI / "server.key"),
        "--x509cafile",
        str(PKI / "ca.pem"),
        f"--priority={gnutls_priority(sc)}",
        *auth[sc.server_mode],
    ]


def nss_server_argv(sc: Scenario) -> list[str]:
    auth = {"none": [], "optional": ["-r"], "required": ["-r", "-r"]}
    cmd = ["selfserv", "-p", str(sc.port), "-d", f"sql:{TOOLS['nssdb']}", "-n", "server", "-V", "tls1.3:tls1.3"]
    return cmd + auth[sc.server_mode] + (["-I", "secp384r1"] if sc.hrr else [])


def java_argv(sc: Scenario, role: str, n: int) -> list[str]:
    cert = "server" if role == "server" else sc.client_cert
    trust = "untrusted-ca.pem" if role == "client" and sc.client_mode == "abort" else "ca.pem"
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]
    if role == "server" and sc.hrr:
        cmd.append("-Djdk.tls.namedGroups=secp384r1")
    return cmd + [
        "-cp",
        TOOLS["java"],
        "Peer",
        role,
        str(sc.port),
        str(n),
        sc.server_mode,
        TOOLS[f"p12-{cert}"] if cert else "-",
        sc.client_mode,
        str(PKI / trust),
        str(int(sc.hrr)),
        str(int(sc.resume)),
        str(int(sc.server_data)),
    ]


def cli_client_argv(sc: Scenario, index: int, keylog: Path, work: Path) -> list[str]:
    """s_client, gnutls-cli or tstclnt for connection ``index``."""
    abort = sc.client_mode == "abort"
    if sc.client == "openssl":
        cmd = openssl_client_argv(sc, index, keylog, work)
        if abort:
            cmd[cmd.index("-CAfile") + 1] = str(PKI / "untrusted-ca.pem")
            cmd.append("-verify_return_error")
        return cmd
    if sc.client == "gnutls":
        cmd = [
            "env",
            f"SSLKEYLOGFILE={keylog}",
            "gnutls-cli",
            HOST,
            "-p",
            str(sc.port),
            f"--sni-hostname={SNI}",
            f"--verify-hostname={SNI}",
            "--x509cafile",
            str(PKI / ("untrusted-ca.pem" if abort else "ca.pem")),
            f"--priority={gnutls_priority(sc) if not sc.hrr else 'NORMAL:-VERS-ALL:+VERS-TLS1.3'}",
        ]
        if sc.client_cert:
            cmd += [
                "--x509certfile",
                str(PKI / f"{sc.client_cert}.pem"),
                "--x509keyfile",
                str(PKI / f"{sc.client_cert}.key"),
            ]
        return cmd
    db = TOOLS["nssdb-untrusted" if abort else "nssdb"]
    cmd = ["tstclnt", "-h", HOST, "-p", str(sc.port), "-a", SNI, "-d", f"sql:{db}", "-V", "tls1.3:tls1.3"]
    return cmd + (["-n", sc.client_cert] if sc.client_cert else [])


def self_peer(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--peer", json.dumps(spec)]


def openssl_server_argv(sc: Scenario, n: int, keylog: Path) -> list[str]:
    cmd = [
        "openssl",
        "s_server",
        "-accept",
        f"{HOST}:{sc.port}",
        "-tls1_3",
        "-cert",
        str(PKI / "server.pem"),
        "-key",
        str(PKI / "server.key"),
        "-CAfile",
        str(PKI / "ca.pem"),
        "-naccept",
        str(n),
        "-keylogfile",
        str(keylog),
        *OPENSSL_SERVER_AUTH[sc.auth],
    ]
    if sc.suite:
        cmd += ["-ciphersuites", sc.suite]
    if sc.hrr:
        cmd += ["-groups", HRR_SERVER_GROUP]
    if sc.pad_server:
        cmd += ["-record_padding", str(sc.pad_server)]
    if sc.num_tickets is not None:
        cmd += ["-num_tickets", str(sc.num_tickets)]
    if sc.early_data:
        cmd += ["-early_data", "-max_early_data", "16384"]
    return cmd


def openssl_client_argv(sc: Scenario, index: int, keylog: Path, work: Path) -> list[str]:
    cmd = [
        "openssl",
        "s_client",
        "-connect",
        f"{HOST}:{sc.port}",
        "-servername",
        SNI,
        "-tls1_3",
        "-CAfile",
        str(PKI / "ca.pem"),
        "-keylogfile",
        str(keylog),
    ]
    if sc.client_cert:
        cmd += ["-cert", str(PKI / f"{sc.client_cert}.pem"), "-key", str(PKI / f"{sc.client_cert}.key")]
    if sc.suite:
        cmd += ["-ciphersuites", sc.suite]
    if sc.pad_client:
        cmd += ["-record_padding", str(sc.pad_client)]
    if sc.resume:
        # Each connection saves its session (TLS 1.3: every ticket received), the next offers it.
        if index > 0:
            cmd += ["-sess_in", str(work / f"{sc.name}.sess{index - 1}")]
        cmd += ["-sess_out", str(work / f"{sc.name}.sess{index}")]
        if sc.early_data and index > 0:
            early = work / f"{sc.name}.early"
            early.write_bytes(b"early\n")
            cmd += ["-early_data", str(early)]
    return cmd


def peer_spec(sc: Scenario, role: str, n: int, keylog: Path) -> dict[str, Any]:
    suite = SUITE_BY_NAME[sc.suite] if sc.suite else None
    return {
        "role": role,
        "stack": sc.server if role == "server" else sc.client,
        "port": sc.port,
        "n": n,
        "keylog": str(keylog),
        "auth": sc.auth,
        "server_mode": sc.server_mode,
        "cert": sc.client_cert,
        "suite_code": suite.code if suite else None,
        "suite_tlslite": suite.tlslite if suite else None,
        "hrr": sc.hrr,
        "pad": sc.pad_server if role == "server" else sc.pad_client,
        "num_tickets": sc.num_tickets,
        "tickets": sc.tickets,
        "server_data": sc.server_data,
        "client_mode": sc.client_mode,
        "resume": sc.resume,
        "pki": str(PKI),
        "sni": SNI,
        "linger": LINGER,
    }


def peer_argv(sc: Scenario, role: str, n: int, keylog: Path) -> list[str]:
    stack = sc.server if role == "server" else sc.client
    spec = json.dumps(peer_spec(sc, role, n, keylog))
    if stack == "go":
        return [TOOLS["go"], spec]
    if stack == "node":
        return ["node", TOOLS["node"], spec]
    if stack == "java":
        return java_argv(sc, role, n)
    return self_peer(peer_spec(sc, role, n, keylog))


def record(sc: Scenario, n: int, work: Path) -> tuple[Path, Path, list[str]]:
    """Run the scenario's N connections under tcpdump; returns (pcap, merged keylog, log)."""
    pcap, keylog = work / f"{sc.name}.pcap", work / f"{sc.name}.keylog"
    skeylog, ckeylog = work / f"{sc.name}.server.keylog", work / f"{sc.name}.client.keylog"
    for stale in work.glob(f"{sc.name}.*"):
        stale.unlink()
    log: list[str] = []
    tcpdump = Peer(
        ["tcpdump", "-i", "lo", "-w", str(pcap), "-U", "--immediate-mode", "-Z", "root", "tcp", "port", str(sc.port)],
        log,
        "tcpdump",
    )
    server: Peer | None = None
    clients: list[Peer] = []
    try:
        tcpdump.wait_for("listening on")
        time.sleep(0.2)
        if sc.server == "openssl":
            # s_server quits on stdin EOF: keep a pipe open (and write "srv" into it for server-data).
            server = Peer(openssl_server_argv(sc, n, skeylog), log, "s_server", stdin=subprocess.PIPE)
            server.wait_for("ACCEPT")
        elif sc.server == "gnutls":
            server = Peer(gnutls_server_argv(sc, skeylog), log, "gnutls-serv")
            wait_listening(sc.port)
        elif sc.server == "nss":
            server = Peer(nss_server_argv(sc), log, "selfserv")
            wait_listening(sc.port)
        else:
            server = Peer(peer_argv(sc, "server", n, skeylog), log, f"{sc.server}-server")
            server.wait_for("READY", timeout=20.0)
        if sc.client in CLI_CLIENTS:
            for index in range(n):
                if sc.server_data and sc.server == "openssl":
                    server.write(b"srv\n")
                stdin = subprocess.DEVNULL if sc.client_mode == "close" else subprocess.PIPE
                argv = cli_client_argv(sc, index, ckeylog, work)
                client = Peer(argv, log, f"{sc.client}-client#{index + 1}", stdin=stdin)
                clients.append(client)
                if sc.client_mode != "close":
                    if sc.client_mode == "data":
                        client.write(b"hi\n")
                    elif sc.client_mode == "http":
                        client.write(f"GET / HTTP/1.0\r\nHost: {SNI}\r\n\r\n".encode())
                    time.sleep(LINGER + 0.4)
                    client.close_stdin()  # s_client, gnutls-cli and tstclnt close on EOF
                client.wait(CLIENT_TIMEOUT)
                time.sleep(0.05)
        else:
            client = Peer(peer_argv(sc, "client", n, ckeylog), log, f"{sc.client}-client")
            clients.append(client)
            client.wait(5 + n * CONNECTION_BUDGET + (5 if sc.client == "java" else 0))
        if sc.server in ("gnutls", "nss"):
            time.sleep(0.5)  # these serve forever: stopped below
        else:
            server.wait(5.0 if sc.server == "openssl" else 5.0 + n)
    finally:
        for peer in (*clients, server):
            if peer is not None:
                peer.kill()
                peer.close_stdin()
        time.sleep(0.3)
        if tcpdump.proc.poll() is None:
            tcpdump.proc.send_signal(signal.SIGINT)
        tcpdump.wait(10.0)
    lines: list[str] = []
    for part in (skeylog, ckeylog):
        if part.exists():
            for line in part.read_text().splitlines():
                if line.strip() and line not in lines:
                    lines.append(line)
    keylog.write_text("".join(f"{line}\n" for line in lines))
    return pcap, keylog, log


# --------------------------------------------------------------------------------------------------
# Peers run as child processes of this script (--peer JSON)
# --------------------------------------------------------------------------------------------------

_TLSLITE_RANDOM: list[bytes] = [b""]  # client random of the handshake in progress (one at a time)


def install_tlslite_keylog(path: str) -> None:
    """tlslite-ng writes no key log: wrap its HKDF Derive-Secret and log the traffic secrets.

    tlslite only sets ``TLSConnection._clientRandom`` once the handshake is over, so the client random is
    taken from the last ClientHello created (client) or parsed (server) in this process.
    """
    import tlslite.tlsconnection as tc
    from tlslite.messages import ClientHello

    original_create, original_parse = ClientHello.create, ClientHello.parse

    def create(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = original_create(self, *args, **kwargs)
        _TLSLITE_RANDOM[0] = bytes(self.random)
        return out

    def parse(self, parser):  # type: ignore[no-untyped-def]
        out = original_parse(self, parser)
        _TLSLITE_RANDOM[0] = bytes(self.random)
        return out

    ClientHello.create, ClientHello.parse = create, parse
    original = tc.derive_secret
    labels = {
        b"c e traffic": "CLIENT_EARLY_TRAFFIC_SECRET",
        b"c hs traffic": "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        b"s hs traffic": "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        b"c ap traffic": "CLIENT_TRAFFIC_SECRET_0",
        b"s ap traffic": "SERVER_TRAFFIC_SECRET_0",
        b"exp master": "EXPORTER_SECRET",
    }

    def derive_secret(secret, label, handshake_hashes, prf_name):  # type: ignore[no-untyped-def]
        out = original(secret, label, handshake_hashes, prf_name)
        name = labels.get(bytes(label))
        if name and len(_TLSLITE_RANDOM[0]) == 32:
            with open(path, "a") as f:
                f.write(f"{name} {_TLSLITE_RANDOM[0].hex()} {bytes(out).hex()}\n")
        return out

    tc.derive_secret = derive_secret


def tlslite_settings(spec: dict[str, Any]) -> Any:
    from tlslite import HandshakeSettings

    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 4)
    if spec["suite_tlslite"]:
        settings.cipherNames = [spec["suite_tlslite"]]
    if spec["role"] == "client":
        # tlslite-ng 0.8 compresses the client Certificate whenever its own ClientHello offered
        # compress_certificate (it looks at the wrong message), which OpenSSL 3.0 rejects with
        # unexpected_message: do not offer or send certificate compression.
        settings.certificate_compression_send = []
        settings.certificate_compression_receive = []
    if spec["role"] == "server":
        if spec["hrr"]:
            settings.eccCurves = ["secp384r1"]
            settings.keyShares = ["secp384r1"]
        if spec["tickets"]:
            settings.ticketKeys = [os.urandom(32)]
        else:
            settings.ticket_count = 0
    return settings


def tlslite_connection(sock: socket.socket, spec: dict[str, Any]) -> Any:
    from tlslite import TLSConnection

    conn = TLSConnection(sock)
    if spec["pad"]:
        block = spec["pad"]
        # tlslite-ng 0.8 copies HandshakeSettings.padding_cb onto the socket object, not the record layer,
        # so it never pads: set the record layer's callback directly. ``length`` counts the inner content
        # type byte; the inner plaintext is padded to a multiple of the block, like openssl -record_padding.
        conn._recordLayer.padding_cb = lambda length, content_type, max_padding: min(max_padding, -length % block)
    return conn


def drain(read, linger: float) -> str:  # type: ignore[no-untyped-def]
    """Read until EOF, an error or ``linger`` seconds of the peer's data; returns how it ended."""
    deadline = time.monotonic() + linger
    while time.monotonic() < deadline:
        try:
            data = read(4096)
        except TimeoutError:
            continue
        except Exception as exc:  # alert, reset, ...
            return f"error: {exc!r}"
        if not data:
            return "eof"
    return "linger over"


def tlslite_drain(conn: Any, sock: socket.socket, linger: float) -> str:
    """tlslite-ng closes the connection on a socket timeout: wait with select, then read one record."""
    import select

    deadline = time.monotonic() + linger
    while not conn.closed:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            return "linger over"
        try:
            conn.read(max=4096, min=0)  # one record: data, a ticket, or an alert
        except Exception as exc:  # alert, abrupt close
            return f"error: {exc!r}"
    return "closed"


def peer_main(spec: dict[str, Any]) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    {
        ("server", "python"): python_server,
        ("server", "tlslite"): tlslite_server,
        ("client", "python"): python_client,
        ("client", "tlslite"): tlslite_client,
        ("client", "scapy"): scapy_client,
    }[(spec["role"], spec["stack"])](spec)


def listen(port: int, n: int) -> socket.socket:
    sock = socket.create_server((HOST, port), backlog=n)
    sock.settimeout(CONNECTION_BUDGET)
    print("READY", flush=True)
    return sock


def python_server(spec: dict[str, Any]) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(PKI / "server.pem", PKI / "server.key")
    ctx.load_verify_locations(PKI / "ca.pem")
    ctx.verify_mode = getattr(ssl, PYTHON_VERIFY[spec["server_mode"]])
    ctx.keylog_filename = spec["keylog"]
    if spec["num_tickets"] is not None:
        ctx.num_tickets = spec["num_tickets"]
    if spec["hrr"]:
        ctx.set_ecdh_curve("secp384r1")  # OpenSSL 3: the server's group list becomes P-384 only
    lsock = listen(spec["port"], spec["n"])
    for index in range(spec["n"]):
        conn, _ = lsock.accept()
        conn.settimeout(0.2)
        try:
            conn.settimeout(5)
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            print(f"connection {index + 1}: handshake failed: {exc!r}")
            conn.close()
            continue
        tls.settimeout(0.2)
        print(
            f"connection {index + 1}: {tls.version()} {tls.cipher()} peer cert: {bool(tls.getpeercert(True))}"
            f" resumed: {tls.session_reused}"
        )
        if spec["server_data"]:
            tls.sendall(b"srv\n")
        print(f"connection {index + 1}: {drain(tls.recv, LINGER + 2)}")
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.unwrap()
        tls.close()


def tlslite_server(spec: dict[str, Any]) -> None:
    from tlslite import X509CertChain, parsePEMKey
    from tlslite.constants import AlertDescription
    from tlslite.errors import TLSError

    install_tlslite_keylog(spec["keylog"])
    chain = X509CertChain()
    chain.parsePemList((PKI / "server.pem").read_text() + (PKI / "ca.pem").read_text())
    key = parsePEMKey((PKI / "server.key").read_text(), private=True)
    settings = tlslite_settings(spec)
    lsock = listen(spec["port"], spec["n"])
    for index in range(spec["n"]):
        sock, _ = lsock.accept()
        sock.settimeout(5)
        # Like Go's net package: without it, Nagle holds the rejection alert behind the unacknowledged
        # tickets and the close() right after it (unread client data: RST) discards it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = tlslite_connection(sock, spec)
        try:
            conn.handshakeServer(
                certChain=chain, privateKey=key, reqCert=spec["server_mode"] != "none", settings=settings
            )
        except (TLSError, OSError) as exc:
            print(f"connection {index + 1}: handshake failed: {exc!r}")
            sock.close()
            continue
        peer = conn.session.clientCertChain
        presented = bool(peer and peer.getNumCerts())
        print(f"connection {index + 1}: {conn.getCipherName()} peer cert: {presented} resumed: {conn.resumed}")
        if spec["server_mode"] == "required" and not presented and not conn.resumed:
            # tlslite-ng accepts an empty Certificate: the application rejects it, as a server that
            # requires a certificate would (certificate_required, protected with the application key).
            try:
                for _ in conn._sendError(AlertDescription.certificate_required, "no client certificate"):
                    pass
            except TLSError:
                pass
            sock.close()
            continue
        if spec["server_data"]:
            conn.write(b"srv\n")
        print(f"connection {index + 1}: {tlslite_drain(conn, sock, LINGER + 2)}")
        with contextlib.suppress(TLSError, OSError):
            conn.close()
        sock.close()


def python_client(spec: dict[str, Any]) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(PKI / "ca.pem")
    ctx.keylog_filename = spec["keylog"]
    ctx.post_handshake_auth = False
    if spec["cert"]:
        ctx.load_cert_chain(PKI / f"{spec['cert']}.pem", PKI / f"{spec['cert']}.key")
    session = None
    for index in range(spec["n"]):
        sock = socket.create_connection((HOST, spec["port"]), timeout=5)
        try:
            tls = ctx.wrap_socket(sock, server_hostname=SNI, session=session)
        except (ssl.SSLError, OSError) as exc:
            print(f"connection {index + 1}: handshake failed: {exc!r}")
            sock.close()
            continue
        tls.settimeout(0.2)
        try:
            if spec["client_mode"] == "data":
                tls.sendall(b"hi\n")
            ended = drain(tls.recv, LINGER)
        except (ssl.SSLError, OSError) as exc:
            ended = f"error: {exc!r}"
        print(f"connection {index + 1}: {tls.cipher()} resumed: {tls.session_reused}: {ended}")
        if spec["resume"]:
            session = tls.session
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.unwrap()
        tls.close()
        time.sleep(0.1)


def tlslite_client(spec: dict[str, Any]) -> None:
    from tlslite import X509CertChain, parsePEMKey
    from tlslite.errors import TLSError

    install_tlslite_keylog(spec["keylog"])
    chain = key = None
    if spec["cert"]:
        chain = X509CertChain()
        chain.parsePemList((PKI / f"{spec['cert']}.pem").read_text())
        key = parsePEMKey((PKI / f"{spec['cert']}.key").read_text(), private=True)
    settings = tlslite_settings(spec)
    session = None
    for index in range(spec["n"]):
        sock = socket.create_connection((HOST, spec["port"]), timeout=5)
        conn = tlslite_connection(sock, spec)
        try:
            conn.handshakeClientCert(chain, key, session=session, settings=settings, serverName=SNI)
        except (TLSError, OSError) as exc:
            print(f"connection {index + 1}: handshake failed: {exc!r}")
            sock.close()
            continue
        try:
            if spec["client_mode"] == "data":
                conn.write(b"hi\n")
            ended = tlslite_drain(conn, sock, LINGER)
        except (TLSError, OSError) as exc:
            ended = f"error: {exc!r}"
        print(f"connection {index + 1}: {conn.getCipherName()} resumed: {conn.resumed}: {ended}")
        if spec["resume"] and conn.session is not None:
            session = conn.session
        with contextlib.suppress(TLSError, OSError):
            conn.close()
        sock.close()
        time.sleep(0.1)


def scapy_keylog(session: Any, path: str) -> None:
    """scapy writes no key log: write the TLS 1.3 secrets its session derived."""
    secrets = getattr(session, "tls13_derived_secrets", None) or {}
    random = getattr(session, "client_random", None)
    if not random or len(random) != 32:
        return
    names = {
        "client_handshake_traffic_secret": "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "server_handshake_traffic_secret": "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "client_traffic_secrets": "CLIENT_TRAFFIC_SECRET_0",
        "server_traffic_secrets": "SERVER_TRAFFIC_SECRET_0",
        "exporter_secret": "EXPORTER_SECRET",
    }
    with open(path, "a") as f:
        for key, label in names.items():
            value = secrets.get(key)
            if isinstance(value, list):
                value = value[0] if value else None
            if value:
                f.write(f"{label} {bytes(random).hex()} {bytes(value).hex()}\n")


def scapy_client(spec: dict[str, Any]) -> None:
    Client = closing_scapy_client()  # noqa: N806 - a class
    kwargs: dict[str, Any] = {}
    if spec["cert"]:
        kwargs.update(mycert=str(PKI / f"{spec['cert']}.pem"), mykey=str(PKI / f"{spec['cert']}.key"))
    if spec["suite_code"]:
        kwargs["ciphersuite"] = spec["suite_code"]
    data = [b"hi\n", b"quit"] if spec["client_mode"] == "data" else [b"quit"]
    for index in range(spec["n"]):
        client = Client(server=HOST, dport=spec["port"], server_name=SNI, version="tls13", data=list(data), **kwargs)
        try:
            client.run()  # bounded by the parent, which kills this process after its budget
        except Exception as exc:  # the automaton raises on some alerts
            print(f"connection {index + 1}: {exc!r}")
        scapy_keylog(client.cur_session, spec["keylog"])
        print(f"connection {index + 1}: done")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------
# Reading captures with tshark (PDML)
# --------------------------------------------------------------------------------------------------


@dataclass
class Record:
    index: int  # position in the connection, both directions
    frame: int
    time: float
    direction: str  # "c" | "s"
    outer: int  # content type in the record header
    length: int  # record length field (ciphertext incl. tag for protected records)
    inner: int | None = None  # decrypted content type (TLS 1.3 protected records)
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    alert: tuple[int, int] | None = None

    @property
    def types(self) -> list[int]:
        return [h["type"] for h in self.handshakes]

    @property
    def content(self) -> int | None:
        return self.inner if self.inner is not None else (None if self.outer == 23 else self.outer)

    def describe(self, tag: int | None) -> str:
        """e.g. ``Cert+CV+Fin 1643``, ``Alert(2,116) 19``, ``App 20``, ``CCS 1``, ``? 19`` (not decrypted)."""
        content = self.content
        if content == 22:
            what = "+".join(HS_NAMES.get(t, str(t)) for t in self.types) or "HS"
        elif content == 21 and self.alert:
            what = f"Alert({self.alert[0]},{self.alert[1]})"
        elif content is None:
            what = "?"
        else:
            what = CT_NAMES.get(content, str(content))
        pad = self.padding(tag)
        return f"{what} {self.length}" + (f" pad={pad}" if pad else "")

    def padding(self, tag: int | None) -> int | None:
        """Padding bytes of a decrypted handshake or alert record (record length - tag - type - content)."""
        if tag is None or self.outer != 23 or self.inner not in (21, 22):
            return None
        if self.inner == 21:
            content = 2
        else:
            if not self.handshakes:
                return None
            content = sum(h["length"] + 4 for h in self.handshakes)
        return self.length - tag - 1 - content


@dataclass
class Packet:
    frame: int
    time: float
    stream: int
    sport: int
    dport: int
    fin: bool
    rst: bool
    records: list[dict[str, Any]]


def _flag(value: str | None) -> bool:
    return value in ("1", "True", "true")


def _int(value: str | None) -> int:
    assert value is not None
    return int(value, 0) if value.startswith("0x") else int(value)


def tshark_packets(pcap: Path, port: int, keylog: Path | None) -> list[Packet]:
    # -d: decode the scenario's port as TLS (some ports in the range belong to other dissectors, which
    # would otherwise claim the stream: "TCP segment of a reassembled PDU" and no TLS at all).
    cmd = ["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={port},tls", "-T", "pdml"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    done = subprocess.run(cmd, capture_output=True, timeout=TSHARK_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode(errors='replace')}")
    packets = []
    for pkt in ElementTree.fromstring(done.stdout).iter("packet"):
        fields: dict[str, str | None] = {}
        records: list[dict[str, Any]] = []
        for proto in pkt:
            name = proto.get("name")
            if name in ("frame", "tcp"):
                for f in proto.iter("field"):
                    fields.setdefault(f.get("name", ""), f.get("show"))
            elif name == "tls":
                for rec in proto:
                    if rec.get("name") == "tls.record":
                        records.append(parse_record(rec))
        if "tcp.stream" not in fields:
            continue
        packets.append(
            Packet(
                frame=_int(fields["frame.number"]),
                time=float(fields["frame.time_relative"] or 0),
                stream=_int(fields["tcp.stream"]),
                sport=_int(fields["tcp.srcport"]),
                dport=_int(fields["tcp.dstport"]),
                fin=_flag(fields.get("tcp.flags.fin")),
                rst=_flag(fields.get("tcp.flags.reset")),
                records=records,
            )
        )
    return packets


def parse_record(rec: ElementTree.Element) -> dict[str, Any]:
    child = {c.get("name"): c.get("show") for c in rec if c.get("name")}
    opaque = child.get("tls.record.opaque_type")
    content = child.get("tls.record.content_type")
    out: dict[str, Any] = {
        "outer": _int(opaque if opaque is not None else content),
        "inner": _int(content) if opaque is not None and content is not None else None,
        "length": _int(child["tls.record.length"]),
        "handshakes": [],
        "alert": None,
    }
    for c in rec:
        if c.get("name") == "tls.handshake":
            hs = {g.get("name"): g.get("show") for g in c if g.get("name")}
            if "tls.handshake.type" not in hs:
                continue
            msg: dict[str, Any] = {
                "type": _int(hs["tls.handshake.type"]),
                "length": _int(hs.get("tls.handshake.length") or "0"),
            }
            if "tls.handshake.certificates_length" in hs:
                msg["certificates_length"] = _int(hs["tls.handshake.certificates_length"])
            if "tls.handshake.random" in hs:
                msg["random"] = (hs["tls.handshake.random"] or "").replace(":", "")
            if "tls.handshake.ciphersuite" in hs:
                msg["cipher_suite"] = _int(hs["tls.handshake.ciphersuite"])
            msg["extensions"] = [
                _int(e.get("show")) for e in c.iter("field") if e.get("name") == "tls.handshake.extension.type"
            ]
            out["handshakes"].append(msg)
        elif c.get("name") == "tls.alert_message":
            al = {g.get("name"): g.get("show") for g in c}
            if "tls.alert_message.level" in al and "tls.alert_message.desc" in al:
                out["alert"] = (_int(al["tls.alert_message.level"]), _int(al["tls.alert_message.desc"]))
    return out


def connections(
    packets: list[Packet], server_port: int
) -> dict[int, tuple[int, list[Record], list[tuple[int, str, str]]]]:
    """Per TCP stream: (client port, TLS records in order, TCP FIN/RST events (record position, dir, kind))."""
    out: dict[int, tuple[int, list[Record], list[tuple[int, str, str]]]] = {}
    for pkt in packets:
        direction = "s" if pkt.sport == server_port else "c"
        client_port = pkt.dport if direction == "s" else pkt.sport
        _, records, events = out.setdefault(pkt.stream, (client_port, [], []))
        for r in pkt.records:
            records.append(
                Record(
                    len(records),
                    pkt.frame,
                    pkt.time,
                    direction,
                    r["outer"],
                    r["length"],
                    r["inner"],
                    r["handshakes"],
                    r["alert"],
                )
            )
        for kind, on in (("FIN", pkt.fin), ("RST", pkt.rst)):
            if on:
                events.append((len(records), direction, kind))
    return out


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def label_connection(
    sc: Scenario,
    index: int,
    client_port: int,
    plain: list[Record],
    keyed: list[Record],
    events: list[tuple[int, str, str]],
    stacks: dict[str, str],
) -> dict[str, Any]:
    problems: list[str] = []
    if [(r.direction, r.outer, r.length) for r in plain] != [(r.direction, r.outer, r.length) for r in keyed]:
        problems.append("record sequence differs with and without keys")

    def hs(records: list[Record], direction: str, kind: int) -> list[dict[str, Any]]:
        return [h for r in records if r.direction == direction for h in r.handshakes if h["type"] == kind]

    # --- plaintext view (no keys) ---
    hellos = hs(plain, "s", 2)
    retry = [h for h in hellos if h.get("random") == HRR_RANDOM]
    final_sh = next((h for h in hellos if h.get("random") != HRR_RANDOM), None)
    client_hellos = hs(plain, "c", 1)
    plain_suite = final_sh.get("cipher_suite") if final_sh else None
    plaintext = {
        "events": merge_events([f"{r.direction} {r.outer}:{r.length}" for r in plain], events),
        "hello_retry": bool(retry),
        "resumed": bool(final_sh and EXT_PSK in final_sh["extensions"]),
        "psk_offered": bool(client_hellos and EXT_PSK in client_hellos[-1]["extensions"]),
        "early_data_offered": bool(client_hellos and EXT_EARLY_DATA in client_hellos[0]["extensions"]),
        "post_handshake_auth_offered": bool(client_hellos and 49 in client_hellos[0]["extensions"]),
        "cipher_suite": f"0x{plain_suite:04x}" if plain_suite is not None else None,
        "client_hello_bytes": [r.length + 5 for r in plain if r.direction == "c" and 1 in r.types],
        "handshake_types_visible": sorted({t for r in plain for t in r.types}),
    }

    # --- truth (key log) ---
    suite_code = plain_suite
    suite = SUITE_BY_CODE.get(suite_code) if suite_code is not None else None
    tag = suite.tag if suite else None
    k_hellos = hs(keyed, "s", 2)
    k_final = next((h for h in k_hellos if h.get("random") != HRR_RANDOM), None)
    server_types = [t for r in keyed if r.direction == "s" for t in r.types]
    client_types = [t for r in keyed if r.direction == "c" for t in r.types]
    certs = hs(keyed, "c", 11)
    client_certificate = "absent" if not certs else "presented" if certs[0].get("certificates_length", 0) else "empty"
    server_alerts = [list(r.alert) for r in keyed if r.direction == "s" and r.alert]
    client_alerts = [list(r.alert) for r in keyed if r.direction == "c" and r.alert]
    fatal = [desc for level, desc in server_alerts if level == 2]
    undecrypted = sum(1 for r in keyed if r.outer == 23 and r.inner is None)
    # A client without a key log (JSSE, NSS) against a server that stopped before deriving the client's
    # application secret: records the client sent after its Finished stay opaque. They are not the
    # handshake: only opaque records up to the client's Finished (and any from the server) count.
    c_fin_at = next((r.index for r in keyed if r.direction == "c" and 20 in r.types), None)
    opaque = sum(
        1
        for r in keyed
        if r.outer == 23 and r.inner is None and (r.direction == "s" or c_fin_at is None or r.index < c_fin_at)
    )
    ee = hs(keyed, "s", 8)
    truth = {
        "cipher_suite": suite.name if suite else (f"0x{suite_code:04x}" if suite_code is not None else None),
        "certificate_request": 13 in server_types,
        "client_certificate": client_certificate,
        "server_alert": fatal[0] if fatal else None,
        "resumed": bool(k_final and EXT_PSK in k_final["extensions"]),
        "hello_retry": any(h.get("random") == HRR_RANDOM for h in k_hellos),
    }
    expected = sc.expected(index)
    if sc.hrr and not truth["hello_retry"]:
        problems.append("no HelloRetryRequest")
    if sc.resume and index > 0 and not truth["resumed"]:
        problems.append("not resumed")
    s_fin = next((r.index for r in keyed if r.direction == "s" and 20 in r.types), None)
    # The client's flight was cut short: the server rejected its Certificate before the client finished
    # sending CertificateVerify/Finished (the server's alert comes first; Finished is never sent).
    cut_short = (
        bool(fatal) and s_fin is not None and any(r.direction == "c" and r.inner == 22 for r in keyed[s_fin + 1 :])
    )
    # The client refused the server's flight with its own fatal alert: no client Finished to expect.
    client_aborted = any(level == 2 for level, _ in client_alerts) and s_fin is not None
    # Or it closed without a word (a Node client refusing the certificate destroys its socket): nothing
    # protected from the client after the server's Finished, then its FIN or RST.
    client_silent = (
        s_fin is not None
        and not any(r.direction == "c" and r.outer == 23 for r in keyed[s_fin + 1 :])
        and any(d == "c" and pos > s_fin for pos, d, _ in events)
    )
    decrypted_ok = (
        20 in server_types and (20 in client_types or cut_short or client_aborted or client_silent) and opaque == 0
    )
    if not decrypted_ok:
        problems.append(
            f"not fully decrypted (server Fin {20 in server_types}, client Fin {20 in client_types}, "
            f"undecrypted handshake-phase records {opaque})"
        )
    mismatch = {k: truth[k] for k in expected if truth[k] != expected[k]}
    if mismatch:
        problems.append(f"differs from the scenario's expectation {expected}: {mismatch}")

    # --- flights (with keys) ---
    flights: dict[str, Any] = {}
    if s_fin is not None:
        after = keyed[s_fin + 1 :]
        c_fin = next((r.index for r in after if r.direction == "c" and 20 in r.types), None)
        if c_fin is not None:
            flight = [r for r in after if r.direction == "c" and r.index <= c_fin]
        elif client_aborted:
            flight = [r for r in after if r.direction == "c" and r.content in (20, 21, 22)][:1]
        else:  # cut short: the client's handshake records that made it out
            flight = [r for r in after if r.direction == "c" and r.content in (20, 22)]
        first = flight[0].index if flight else len(keyed)
        last = flight[-1].index if flight else len(keyed)
        flights["client_flight"] = [r.describe(tag) for r in flight]
        flights["server_before_client_flight"] = [
            r.describe(tag) for r in after if r.direction == "s" and r.index < first
        ]
        flights["server_after_client_flight"] = [
            r.describe(tag) for r in after if r.direction == "s" and r.index > first
        ]
        flights["client_after_client_flight"] = [
            r.describe(tag) for r in after if r.direction == "c" and r.index > last
        ]
        flights["tcp_end"] = [f"{d} {k}" for pos, d, k in events if pos > s_fin][:3]
    pads = [p for r in keyed if (p := r.padding(tag))]
    return {
        "capture": f"{sc.name}.pcap",
        "scenario": sc.name,
        "variant": sc.variant,
        "auth": sc.auth,
        "connection": index + 1,
        "client_port": client_port,
        "stack": {"server": stacks["server"], "client": stacks["client"]},
        "suite_requested": sc.suite,
        **truth,
        "server_alerts": server_alerts,
        "client_alerts": client_alerts,
        "padding": bool(sc.pad_server or sc.pad_client),
        "padding_by": sc.padding_by,
        "padded_records": len(pads),
        "early_data": {
            "offered": plaintext["early_data_offered"],
            "accepted": any(EXT_EARLY_DATA in h["extensions"] for h in ee),
        },
        "new_session_tickets": server_types.count(4),
        "decrypted_ok": decrypted_ok,
        "client_aborted": client_aborted,
        "client_silent": client_silent,
        "client_mode": sc.client_mode,
        "server_finished": 20 in server_types,
        "client_finished": 20 in client_types,
        "undecrypted_records": undecrypted,
        "expected": expected,
        "matches_expected": not mismatch,
        "problems": problems,
        "flights": flights,
        "decrypted": merge_events([f"{r.direction} {r.describe(tag)}" for r in keyed], events),
        "plaintext": plaintext,
    }


def timeline(records: list[str], events: list[tuple[int, str, str]]) -> list[tuple[float, str]]:
    """Records and TCP FIN/RST events in capture order, each with its position (records before it + ...):
    record i has position i, an event seen after n records has position n (so it sorts before record n)."""
    items = [(i, 1, text) for i, text in enumerate(records)] + [(pos, 0, f"{d} {k}") for pos, d, k in events]
    return [(pos - 0.5 if kind == 0 else pos, text) for pos, kind, text in sorted(items, key=lambda x: (x[0], x[1]))]


def merge_events(records: list[str], events: list[tuple[int, str, str]]) -> list[str]:
    return [text for _, text in timeline(records, events)]


def stack_names(sc: Scenario, versions: dict[str, str]) -> dict[str, str]:
    server = {
        "openssl": f"openssl s_server {versions['openssl']} "
        + (" ".join(OPENSSL_SERVER_AUTH[sc.auth]) or "(no verify)"),
        "python": f"python ssl {versions['python']} ({versions['python_openssl']}) {PYTHON_VERIFY[sc.server_mode]}",
        "tlslite": f"tlslite-ng {versions['tlslite']} reqCert={sc.server_mode != 'none'}"
        + (" (app rejects empty)" if sc.server_mode == "required" else ""),
        "gnutls": f"gnutls-serv {versions.get('gnutls')} "
        + {"none": "-a", "optional": "--verify-client-cert", "required": "-r --verify-client-cert"}[sc.server_mode],
        "nss": f"NSS selfserv {versions.get('nss')} "
        + {"none": "", "optional": "-r", "required": "-r -r"}[sc.server_mode],
        "java": f"JSSE {versions.get('java')} "
        + {"none": "", "optional": "wantClientAuth", "required": "needClientAuth"}[sc.server_mode],
        "go": f"Go crypto/tls {versions.get('go')} "
        + {"none": "NoClientCert", "optional": "VerifyClientCertIfGiven", "required": "RequireAndVerifyClientCert"}[
            sc.server_mode
        ],
        "node": f"Node.js tls {versions.get('node')} requestCert={sc.server_mode != 'none'} "
        f"rejectUnauthorized={sc.server_mode == 'required'}",
    }[sc.server]
    client = {
        "openssl": f"openssl s_client {versions['openssl']}",
        "python": f"python ssl {versions['python']} ({versions['python_openssl']}) post_handshake_auth=False",
        "scapy": f"scapy {versions['scapy']} TLSClientAutomaton tls13",
        "tlslite": f"tlslite-ng {versions['tlslite']}",
        "gnutls": f"gnutls-cli {versions.get('gnutls')}",
        "nss": f"NSS tstclnt {versions.get('nss')}",
        "java": f"JSSE {versions.get('java')}",
        "go": f"Go crypto/tls {versions.get('go')}",
        "node": f"Node.js tls {versions.get('node')}",
    }[sc.client] + (f", {sc.client_mode}" if sc.client_mode != "data" else "")
    cert = {None: "no certificate", "client": "trusted certificate", "untrusted-client": "untrusted certificate"}
    return {
        "server": sc.server,
        "client": sc.client,
        "server_config": server,
        "client_config": f"{client}, {cert[sc.client_cert]}",
    }


def versions() -> dict[str, str]:
    import ssl

    import scapy
    import tlslite

    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=10).stdout.split()[1]
    tshark = subprocess.run(["tshark", "--version"], capture_output=True, text=True, timeout=30).stdout.split()[2]

    def out(argv: list[str], word: int) -> str | None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (done.stdout + done.stderr).split()[word]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {
        "gnutls": out(["gnutls-cli", "--version"], 1),
        "nss": out(["dpkg-query", "-W", "-f", "${Version}", "libnss3"], 0),
        "java": out(["java", "-version"], 2),
        "go": out(["go", "version"], 2),
        "node": out(["node", "--version"], 0),
        "openssl": openssl,
        "python": sys.version.split()[0],
        "python_openssl": ssl.OPENSSL_VERSION,
        "scapy": scapy.__version__,
        "tlslite": tlslite.__version__,
        "tshark": tshark,
    }


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def produce(sc: Scenario, n: int, work: Path, out: Path, vers: dict[str, str]) -> dict[str, Any]:
    """Record one scenario (up to 3 attempts), label its connections, install pcap + keylog in ``out``."""
    result: dict[str, Any] = {}
    for attempt in range(1, 4):
        started = time.monotonic()
        try:
            pcap, keylog, log = record(sc, n, work)
            keyed = connections(tshark_packets(pcap, sc.port, keylog), sc.port)
            # tshark without keys shows the same records (outer type and length) and the same plaintext
            # hellos: one tshark run per capture (with --plain-check, a second run without keys compares).
            plain = connections(tshark_packets(pcap, sc.port, None), sc.port) if PLAIN_CHECK else keyed
        except Exception as exc:  # noqa: BLE001 - a failed attempt is retried, then reported
            result = {"error": repr(exc), "log": []}
            continue
        stacks = stack_names(sc, vers)
        labels = []
        for i, stream in enumerate(sorted(plain)):
            client_port, precs, events = plain[stream]
            _, krecs, _ = keyed.get(stream, (client_port, [], []))
            labels.append(label_connection(sc, i, client_port, precs, krecs, events, stacks))
        ok = len(labels) == n and all(not entry["problems"] for entry in labels)
        result = {
            "labels": labels,
            "log": log,
            "attempts": attempt,
            "seconds": time.monotonic() - started,
            "pcap": pcap,
            "keylog": keylog,
        }
        if ok:
            break
    if "labels" not in result:
        return {"scenario": sc, "error": result.get("error"), "labels": []}
    shutil.move(str(result["pcap"]), out / f"{sc.name}.pcap")
    shutil.move(str(result["keylog"]), out / f"{sc.name}.keylog")
    for leftover in work.glob(f"{sc.name}.*"):
        leftover.unlink()
    problems = [f"connection {e['connection']}: {p}" for e in result["labels"] for p in e["problems"]]
    if len(result["labels"]) != n:
        problems.append(f"{len(result['labels'])} TCP connections, expected {n}")
    return {
        "scenario": sc,
        "labels": result["labels"],
        "problems": problems,
        "attempts": result["attempts"],
        "log": result["log"] if problems else [],
    }


STOP = threading.Event()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "inference")
    parser.add_argument("--repeat", type=int, default=3, help="connections per capture (default 3)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="stacks to use, both roles (default: all)")
    parser.add_argument("--jobs", type=int, default=4, help="scenarios recorded in parallel (default 4)")
    parser.add_argument(
        "--only", action="extend", nargs="+", default=[], help="only scenarios whose name contains one of these"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and skipped combinations, then exit")
    parser.add_argument("--plain-check", action="store_true", help="also read each capture without keys and compare")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(json.loads(args.peer))
        return 0
    global PLAIN_CHECK
    PLAIN_CHECK = args.plain_check

    stacks = {s.strip() for s in args.stacks.split(",") if s.strip()}
    if stacks - set(STACKS):
        parser.error(f"unknown stacks: {', '.join(sorted(stacks - set(STACKS)))} (known: {', '.join(STACKS)})")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    all_scenarios, skipped = build_scenarios()
    selected = [
        sc
        for sc in all_scenarios
        if sc.server in stacks and sc.client in stacks and (not args.only or any(o in sc.name for o in args.only))
    ]
    if args.list:
        for sc in selected:
            print(f"{sc.port} {sc.name}")
        for s in skipped:
            print(f"SKIPPED {s['combination']}: {s['reason']}")
        print(f"{len(selected)} scenarios, {len(skipped)} skipped combinations")
        return 0
    if os.geteuid() != 0:
        print("needs root: tcpdump captures on lo", file=sys.stderr)
        return 1
    for tool in ("openssl", "tcpdump", "tshark"):
        if shutil.which(tool) is None:
            print(f"{tool} not found", file=sys.stderr)
            return 1
    if args.repeat == 1 and any(sc.resume for sc in selected):
        print("note: --repeat 1 records no resumed connection", file=sys.stderr)

    used = {sc.server for sc in selected} | {sc.client for sc in selected}
    ensure_packages(used)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in (*out.glob("*.pcap"), *out.glob("*.keylog"), out / "labels.json", out / "summary.md"):
        old.unlink(missing_ok=True)
    vers = versions()
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    print(f"{len(selected)} scenarios x {args.repeat} connections, {args.jobs} in parallel -> {out}")
    with tempfile.TemporaryDirectory(prefix="helloscope-inference-") as tmp:
        work = Path(tmp)
        prepare_tools(used, work)

        def job(sc: Scenario) -> dict[str, Any] | None:
            if STOP.is_set():
                return None
            r = produce(sc, args.repeat, work, out, vers)
            with lock:
                done = len(results) + 1
                status = "ok" if not r.get("problems") and not r.get("error") else "PROBLEM"
                triples = collections.Counter(
                    (e["certificate_request"], e["client_certificate"], e["server_alert"]) for e in r["labels"]
                )
                print(
                    f"[{done}/{len(selected)}] {sc.name}: {status} "
                    + " ".join(f"{k}x{v}" for k, v in triples.items())
                    + (f" attempts={r.get('attempts')}" if r.get("attempts", 1) > 1 else ""),
                    flush=True,
                )
                for p in r.get("problems", []) + ([r["error"]] if r.get("error") else []):
                    print(f"    {p}")
                for line in r.get("log", [])[-12:] if r.get("problems") else []:
                    print(f"      | {line}")
                results.append(r)
            return r

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs))
        try:
            futures = [pool.submit(job, sc) for sc in selected]
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            STOP.set()
            print("interrupted: finishing the scenarios in progress (bounded by their timeouts)", file=sys.stderr)
            pool.shutdown(wait=True, cancel_futures=True)
            return 130
        pool.shutdown(wait=True)
    elapsed = time.monotonic() - started
    results.sort(key=lambda r: r["scenario"].port)
    write_outputs(out, results, skipped, args, vers, elapsed, stacks)
    total = sum(len(r["labels"]) for r in results)
    bad = [r["scenario"].name for r in results if r.get("problems") or r.get("error")]
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"{len(results)} captures, {total} connections, {size / 1e6:.1f} MB in {out}, {elapsed:.0f} s")
    if bad:
        print(f"{len(bad)} captures with problems: {', '.join(bad)}")
    return 1 if bad else 0


# --------------------------------------------------------------------------------------------------
# labels.json and summary.md
# --------------------------------------------------------------------------------------------------


def write_outputs(
    out: Path,
    results: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    args: argparse.Namespace,
    vers: dict[str, str],
    elapsed: float,
    stacks: set[str],
) -> None:
    conns: dict[str, dict[str, Any]] = {}
    captures: dict[str, dict[str, Any]] = {}
    for r in results:
        sc: Scenario = r["scenario"]
        for e in r["labels"]:
            conns[f"{e['capture']}:{e['client_port']}"] = e
        captures[f"{sc.name}.pcap"] = {
            **{k: v for k, v in asdict(sc).items() if k != "name"},
            **{k: v for k, v in stack_names(sc, vers).items() if k.endswith("_config")},
            "connections": len(r["labels"]),
            "problems": r.get("problems", []) + ([r["error"]] if r.get("error") else []),
        }
    header = {
        "description": "Real TLS 1.3 handshakes over loopback, labelled per TCP connection by tshark with the key "
        "log (never by helloscope). Key: capture file name + ':' + client TCP port.",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": vers,
        "repeat": args.repeat,
        "stacks": sorted(stacks),
        "seconds": round(elapsed, 1),
        "fields": {
            "cipher_suite": "suite in the ServerHello",
            "certificate_request": "the server sent handshake type 13 (decrypted)",
            "client_certificate": "absent | empty | presented: client handshake type 11, certificates_length 0 = empty",
            "server_alert": "description of the first fatal (level 2) alert from the server, decrypted; "
            "close_notify (level 1) is listed only in server_alerts",
            "resumed": "the ServerHello carries pre_shared_key (41)",
            "hello_retry": "a ServerHello with the HelloRetryRequest random",
            "padding": "the scenario enabled record padding (padding_by: server | client | both); "
            "padded_records counts decrypted records whose length exceeds content + type + tag",
            "decrypted_ok": "tshark decrypted Finished from both sides and every protected record",
            "flights": "decrypted records as 'TYPES LENGTH' (record length field, i.e. ciphertext incl. tag): "
            "client_flight = client records after the record holding the server Finished, up to the one holding the "
            "client Finished (without one: its handshake/CCS records); server_before_client_flight / "
            "server_after_client_flight = server records after the server Finished and before / after the first "
            "record of that flight; client_after_client_flight; tcp_end = first FIN/RST after the server Finished; "
            "sequence_after_server_finished = both directions and FIN/RST in order (first 12)",
            "plaintext": "what tshark shows without keys: records as 'DIR TYPE:LENGTH' and, in events, TCP FIN/RST "
            "in order",
        },
    }
    with (out / "labels.json").open("w") as f:
        f.write(json.dumps(header, indent=2)[:-2] + ",\n")
        f.write(f'  "skipped": {json.dumps(skipped)},\n')
        f.write('  "captures": {\n' + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in captures.items()))
        f.write("\n  },\n")
        f.write('  "connections": {\n' + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in conns.items()))
        f.write("\n  }\n}\n")
    (out / "summary.md").write_text(summary(results, skipped, header, conns))


def summary(
    results: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    header: dict[str, Any],
    conns: dict[str, dict[str, Any]],
) -> str:
    lines = [
        "# Inference corpus summary",
        "",
        f"`{header['command']}`: {len(results)} captures, {len(conns)} connections, {header['seconds']:.0f} s. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in header['versions'].items())}.",
        "",
        "## Captures (server-client-variant-auth[-suite])",
        "",
    ]
    by_variant: dict[str, list[str]] = collections.defaultdict(list)
    for r in results:
        sc = r["scenario"]
        flag = "" if not r.get("problems") and not r.get("error") else " (PROBLEM)"
        by_variant[sc.variant].append(f"{sc.name}{flag}")
    for variant, names in by_variant.items():
        lines.append(f"- **{variant}** ({len(names)}): " + ", ".join(names))
    lines += ["", "## Skipped combinations", ""]
    lines += [f"- {s['combination']}: {s['reason']}" for s in skipped]

    lines += ["", "## Labels: connections per (certificate_request, client_certificate, server_alert)", ""]
    dist: dict[tuple[str, str], collections.Counter[tuple[Any, ...]]] = collections.defaultdict(collections.Counter)
    for e in conns.values():
        dist[(e["stack"]["server"], e["stack"]["client"])][
            (e["certificate_request"], e["client_certificate"], e["server_alert"])
        ] += 1
    triples = sorted({t for c in dist.values() for t in c}, key=str)
    lines.append("| server | client | " + " | ".join(f"CR={t[0]} {t[1]} alert={t[2]}" for t in triples) + " | total |")
    lines.append("|---|---|" + "---|" * (len(triples) + 1))
    for (s, c), counter in sorted(dist.items()):
        lines.append(
            f"| {s} | {c} | " + " | ".join(str(counter.get(t, 0)) for t in triples) + f" | {sum(counter.values())} |"
        )
    totals: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for counter in dist.values():
        totals.update(counter)
    lines.append("| all | all | " + " | ".join(str(totals.get(t, 0)) for t in triples) + f" | {sum(totals.values())} |")
    other = collections.Counter()
    for e in conns.values():
        other["resumed"] += e["resumed"]
        other["hello_retry"] += e["hello_retry"]
        other["padding"] += e["padding"]
        other["early_data accepted"] += e["early_data"]["accepted"]
        other["decrypted_ok"] += e["decrypted_ok"]
        other["matches_expected"] += e["matches_expected"]
    lines += ["", "Other labels: " + ", ".join(f"{k} {v}" for k, v in other.items()) + f" (of {len(conns)})."]

    lines += [
        "",
        "## Encrypted flights (record length field, decrypted types)",
        "",
        "Client flight = client records after the server's Finished up to its own Finished (if the server cut it "
        "short: those sent); server after = the server's records after the flight began; TCP end = the first "
        "FIN/RST after the server's Finished (with counts). `pad=N`: padding bytes. n = connections.",
        "",
        "| server | client | suite | variant | CR | client cert | alert | resumed | client flight | server after | "
        "TCP end | n |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[Any, ...], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for e in conns.values():
        fl = e["flights"]
        rows[
            (
                e["stack"]["server"],
                e["stack"]["client"],
                e["cipher_suite"] or "?",
                e["variant"],
                e["certificate_request"],
                e["client_certificate"],
                e["server_alert"],
                e["resumed"],
                " \\| ".join(fl.get("client_flight", [])) or "-",
                " \\| ".join(fl.get("server_after_client_flight", [])) or "-",
            )
        ][" ".join(fl.get("tcp_end", [])[:1]) or "-"] += 1
    for key, ends in sorted(rows.items(), key=lambda kv: [str(x) for x in kv[0]]):
        end = ", ".join(f"{k} x{v}" for k, v in sorted(ends.items()))
        lines.append("| " + " | ".join(str(x) for x in key) + f" | {end} | {sum(ends.values())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
