"""Record pcaps/hostile/hostile-strings.pcap: ClientHellos whose SNI and ALPN carry terminal and JSON hazards.

Run from the repository root, as root (tcpdump on ``lo``)::

    python3 pcaps/make_hostile_fixture.py

What it does: starts ``tcpdump -i lo`` on its own port and ``openssl s_server``, then opens one TCP
connection per entry of HOSTILE from a plain Python socket and sends a TLS 1.2/1.3 ClientHello built
with scapy whose server_name and ALPN values are the hostile bytes. The server refuses both host names with a fatal
unrecognized_name alert, which is fine: the ClientHello is what the sensor must render safely.
The expected document (``hostile/hostile-strings.expected.json``) is derived from HOSTILE alone, never from
helloscope: per connection, the exact bytes sent and the text a JSON consumer must read back
(UTF-8 where valid, ``\\xNN`` for each invalid byte, as docs/EVENTS.md documents for wire strings).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import Peer  # noqa: E402

HERE: Final = Path(__file__).resolve().parent
PORT: Final = 44733
# A directory of its own: the suite's tshark oracle reads every pcaps/*.pcap, and tshark shows a host
# name only up to its first NUL, so it cannot be this capture's oracle; the truth is HOSTILE itself.
PCAP: Final = HERE / "hostile" / "hostile-strings.pcap"
EXPECTED: Final = HERE / "hostile" / "hostile-strings.expected.json"
UNRECOGNIZED_NAME: Final = 112

# Every hazard in one value, in a host name and an ALPN protocol: newline, NUL, an ANSI colour escape,
# rich markup, a right-to-left override, invalid UTF-8 (a lone continuation byte, 0xff, and a cut
# 3-byte sequence). Then a 1,000-byte host name, longer than any terminal cell.
MIXED: Final = b"evil\nline\x00nul\x1b[31mansi[red]markup[/red]\xe2\x80\xaebidi\x80\xff\xe2\x80.example"
LONG: Final = b"a" * 990 + b"\x1b[2J.test"  # the clear-screen escape sits past any cut a table makes


class Hostile(NamedTuple):
    server_name: bytes
    alpn: tuple[bytes, ...]


HOSTILE: Final = (
    Hostile(MIXED, (b"h2\n\x1b[31m[red]", b"\x00\xff\xe2\x80\xae")),
    Hostile(LONG, (b"x" * 200 + b"\x1b]0;title\x07",)),
)


def client_hello(server_name: bytes, alpn: tuple[bytes, ...]) -> bytes:
    """A TLS record holding a ClientHello OpenSSL can answer (TLS 1.2 ECDHE-RSA-AES128-GCM, or 1.3)."""
    from scapy.layers.tls.extensions import (
        ProtocolName,
        ServerName,
        TLS_Ext_ALPN,
        TLS_Ext_ServerName,
        TLS_Ext_SignatureAlgorithms,
        TLS_Ext_SupportedGroups,
        TLS_Ext_SupportedPointFormat,
    )
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    hello = TLSClientHello(
        version=0x0303,
        ciphers=[0xC02F, 0xC030, 0x009C],
        ext=[
            TLS_Ext_ServerName(servernames=[ServerName(servername=server_name)]),
            TLS_Ext_SupportedGroups(groups=[23, 24]),
            TLS_Ext_SupportedPointFormat(ecpl=[0]),
            TLS_Ext_SignatureAlgorithms(sig_algs=[0x0401, 0x0804, 0x0403]),
            TLS_Ext_ALPN(protocols=[ProtocolName(protocol=name) for name in alpn]),
        ],
    )
    return bytes(TLS(version=0x0301, msg=[hello]))


def converse(record: bytes) -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=3.0) as sock:
        sock.sendall(record)
        sock.settimeout(1.0)
        try:
            while sock.recv(65536):
                pass  # read the server's flight until it closes or goes quiet
        except TimeoutError:
            pass


def text_of(raw: bytes) -> str:
    """What a JSON reader must get back: the bytes as UTF-8 where valid, ``\\xNN`` where not."""
    return raw.decode("utf-8", "backslashreplace")


def expected() -> dict[str, object]:
    """The scenario's truth in the shape tests/test_fixtures.py reads: ``connections[i].expected``."""
    return {
        "capture": PCAP.name,
        "made_by": "pcaps/make_hostile_fixture.py (scapy ClientHello over a Python socket to openssl s_server)",
        "connections": [
            {
                "sent": {
                    "server_name_hex": entry.server_name.hex(),
                    "alpn_hex": [name.hex() for name in entry.alpn],
                },
                "expected": {
                    "tls.client.server_name": text_of(entry.server_name),
                    "helloscope.client_hello.alpn": [text_of(name) for name in entry.alpn],
                    # OpenSSL refuses such names (checked against tshark below): unrecognized_name.
                    "helloscope.alerts": [{"sender": "server", "code": UNRECOGNIZED_NAME}],
                },
            }
            for entry in HOSTILE
        ],
    }


def check_alerts() -> None:
    """The server's refusal is taken from tshark, not assumed: one unrecognized_name per connection."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(PCAP), "-Y", "tls.alert_message", "-T", "fields", "-e", "tls.alert_message.desc"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    if out != [str(UNRECOGNIZED_NAME)] * len(HOSTILE):
        raise RuntimeError(f"expected one unrecognized_name alert per connection, tshark saw {out}")


def main() -> int:
    log: list[str] = []
    PCAP.unlink(missing_ok=True)
    tcpdump = Peer(
        ["tcpdump", "-i", "lo", "-w", str(PCAP), "-U", "--immediate-mode", "-Z", "root", "tcp", "port", str(PORT)],
        log,
        "tcpdump",
    )
    server = None
    try:
        tcpdump.wait_for("listening on")
        time.sleep(0.3)
        pki = HERE / "pki"
        server = Peer(
            [
                "openssl",
                "s_server",
                "-accept",
                f"127.0.0.1:{PORT}",
                "-cert",
                str(pki / "server.pem"),
                "-key",
                str(pki / "server.key"),
                "-naccept",
                str(len(HOSTILE)),
            ],
            log,
            "s_server",
            stdin=subprocess.PIPE,
        )
        server.wait_for("ACCEPT")
        for entry in HOSTILE:
            converse(client_hello(entry.server_name, entry.alpn))
        server.wait(5.0)
    finally:
        if server is not None:
            server.kill()
            server.close_stdin()
        time.sleep(0.3)
        tcpdump.proc.send_signal(signal.SIGINT)
        tcpdump.wait(10.0)
    check_alerts()
    EXPECTED.write_text(json.dumps(expected(), indent=2, ensure_ascii=True) + "\n")
    print("\n".join(log[-20:]))
    print(f"wrote {PCAP.name} ({PCAP.stat().st_size} bytes) and {EXPECTED.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
