"""DTLS record decryption (parsers/decrypt.py): DTLS 1.2 with explicit record numbers, DTLS 1.3 with
``dtls13`` labels and record number encryption.

Vectors: every epoch-1 record of the real-peer DTLS 1.2 fixtures (pcaps/dtls/, OpenSSL and GnuTLS, with
their key logs) opens and says what tshark decrypted there (a Finished, then the alerts); the corpus'
illustrated DTLS 1.3 capture (skipped when absent) opens record for record; the record number mask is
QUIC's header protection mask (the same primitive), checked on RFC 9001's vectors; and a live OpenSSL
DTLS 1.2 ChaCha20-Poly1305 exchange covers the suite without an explicit nonce.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from helloscope.parsers.alerts import parse_alerts
from helloscope.parsers.decrypt import (
    DTLS13_LABEL_PREFIX,
    TLS13_LABEL_PREFIX,
    DecryptError,
    Dtls13RecordDecryptor,
    Tls12RecordDecryptor,
    derive_traffic_keys,
    dtls13_sequence_mask,
    hkdf_expand_label,
)
from helloscope.parsers.dtls import (
    DtlsRecord,
    iter_records,
    parse_handshake_fragments,
    reconstruct,
    sequence_mask_sample,
    unmask_sequence,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import parse_client_hello, parse_server_hello
from helloscope.parsers.keylog import CLIENT_RANDOM, KeyLog
from helloscope.parsers.registry import ALERT, APPLICATION_DATA, CLIENT_HELLO, HANDSHAKE, SERVER_HELLO
from helloscope.sniffer.capture.decode import decode
from helloscope.sniffer.capture.files import open_capture

from tests.helpers import CORPUS, PCAPS

DTLS = PCAPS / "dtls"
KEYED = sorted(path for path in DTLS.glob("*.pcap") if path.with_suffix(".keylog").read_text().strip())
ILLUSTRATED = CORPUS / "illustrated-dtls" / "captures"
FINISHED, ACK = 20, 26


@dataclass(frozen=True)
class Seen:
    from_client: bool
    record: DtlsRecord


def records_of(capture: Path) -> list[Seen]:
    """Every DTLS record of a one-association capture, in order, with its direction."""
    out: list[Seen] = []
    client: tuple[bytes, int] | None = None
    with open_capture(str(capture)) as reader:
        for _, linktype, frame in reader:
            segment = decode(linktype, frame)
            if segment is None or not segment.payload:
                continue
            source = (segment.src, segment.sport)
            if client is None:
                client = source  # the ClientHello opens every fixture
            out.extend(Seen(source == client, record) for record in iter_records(segment.payload))
    return out


def hellos(seen: list[Seen]) -> tuple[bytes, bytes, int]:
    """ClientHello.random, ServerHello.random and the suite, from the epoch-0 handshake records."""
    client_random = server_random = None
    suite = 0
    for item in seen:
        record = item.record
        if record.content_type != HANDSHAKE or record.epoch != 0:
            continue
        for fragment in parse_handshake_fragments(record.payload):
            if fragment.msg_type == CLIENT_HELLO and fragment.complete:
                client_random = parse_client_hello(fragment.body, dtls=True).random
            elif fragment.msg_type == SERVER_HELLO and fragment.complete:
                hello = parse_server_hello(fragment.body)
                server_random, suite = hello.random, hello.cipher_suite
    assert client_random is not None and server_random is not None
    return client_random, server_random, suite


def short_header(record: DtlsRecord) -> bytes:
    assert record.content_type is not None and record.version is not None
    return bytes((record.content_type, record.version >> 8, record.version & 0xFF)) + len(record.payload).to_bytes(
        2, "big"
    )


def keylog(path: Path) -> KeyLog:
    keys = KeyLog()
    keys.feed(path.read_text())
    keys.finish()
    return keys


# --- labels and masks ------------------------------------------------------------------------------


def test_label_prefix_defaults_to_tls13_and_dtls13_has_no_space() -> None:
    secret = bytes(range(32))

    def expand(full_label: bytes) -> bytes:
        info = (16).to_bytes(2, "big") + bytes([len(full_label)]) + full_label + b"\x00"
        return HKDFExpand(SHA256(), 16, info).derive(secret)

    assert hkdf_expand_label(secret, b"key", b"", 16, "sha256") == expand(b"tls13 key")
    assert hkdf_expand_label(secret, b"key", b"", 16, "sha256", TLS13_LABEL_PREFIX) == expand(b"tls13 key")
    assert hkdf_expand_label(secret, b"key", b"", 16, "sha256", DTLS13_LABEL_PREFIX) == expand(b"dtls13key")
    tls, dtls = derive_traffic_keys(0x1301, secret), derive_traffic_keys(0x1301, secret, DTLS13_LABEL_PREFIX)
    assert tls.sn_key is None and dtls.sn_key == hkdf_expand_label(secret, b"sn", b"", 16, "sha256", b"dtls13")
    assert dtls.key == expand(b"dtls13key") != tls.key
    assert "sn_key" not in repr(dtls) or dtls.sn_key.hex() not in repr(dtls)


@pytest.mark.parametrize(
    ("aead", "key", "sample", "mask"),
    [
        # RFC 9001 A.2 (AES-128: client Initial header protection) and A.5 (ChaCha20 short header).
        ("AES-GCM", "9f50449e04a0e810283a1e9933adedd2", "d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"),
        (
            "ChaCha20-Poly1305",
            "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4",
            "5e5cd55c41f69080575d7999c25a5bfb",
            "aefefe7d03",
        ),
    ],
)
def test_record_number_mask_is_quic_header_protection(aead: str, key: str, sample: str, mask: str) -> None:
    """RFC 9147 4.2.3 and RFC 9001 5.4.3-5.4.4 use the same function of (key, 16-byte sample)."""
    assert dtls13_sequence_mask(aead, bytes.fromhex(key), bytes.fromhex(sample))[:5].hex() == mask


def test_mask_sample_must_be_16_bytes() -> None:
    decryptor = Dtls13RecordDecryptor(0x1301, bytes(32))
    with pytest.raises(ParseError):
        decryptor.sequence_mask(bytes(15))
    with pytest.raises(ParseError):
        decryptor.decrypt(b"\x2e\x00\x00\x00\x10", bytes(16), 1 << 64)


# --- DTLS 1.2: the fixtures ------------------------------------------------------------------------


def dtls12_decryptors(capture: Path) -> tuple[list[Seen], dict[bool, Tls12RecordDecryptor]]:
    seen = records_of(capture)
    client_random, server_random, suite = hellos(seen)
    master = keylog(capture.with_suffix(".keylog")).secret(CLIENT_RANDOM, client_random)
    assert master is not None
    return seen, {
        side: Tls12RecordDecryptor(suite, master, client_random, server_random, from_client=side)
        for side in (True, False)
    }


@pytest.mark.parametrize("capture", KEYED, ids=lambda path: path.stem)
def test_every_epoch1_record_of_the_dtls12_fixtures_opens(capture: Path) -> None:
    """Each side's first epoch-1 record is its Finished; the alerts are those tshark decrypted."""
    seen, decryptors = dtls12_decryptors(capture)
    expected = json.loads(capture.with_suffix(".expected.json").read_text())
    opened: dict[bool, list[tuple[int, bytes]]] = {True: [], False: []}
    alerts: list[tuple[str, int, int]] = []
    for item in seen:
        record = item.record
        if record.epoch == 0:
            continue
        assert record.epoch == 1
        decryptor = decryptors[item.from_client]
        plaintext = decryptor.decrypt(short_header(record), record.payload, record.epoch << 48 | record.sequence)
        assert decryptor.sequence == 0  # the explicit number leaves the TLS counter alone
        opened[item.from_client].append((record.content_type, plaintext))
        if record.content_type == ALERT:
            alerts += [
                ("client" if item.from_client else "server", a.level, a.description) for a in parse_alerts(plaintext)
            ]
    for contents in opened.values():
        if not contents:
            continue
        content_type, plaintext = contents[0]
        (fragment,) = parse_handshake_fragments(plaintext)
        assert (content_type, fragment.msg_type, fragment.length, fragment.complete) == (HANDSHAKE, FINISHED, 12, True)
    (truth,) = expected["handshakes"]
    encrypted_truth = [alert for alert in truth["alerts"] if alert not in truth["plaintext_alerts"]]
    assert alerts == [(alert["sender"], alert["level"], alert["code"]) for alert in encrypted_truth]


def test_dtls12_record_number_is_authenticated() -> None:
    seen, decryptors = dtls12_decryptors(DTLS / "dtls12-openssl-noauth.pcap")
    item = next(item for item in seen if item.record.epoch == 1)
    record, decryptor = item.record, decryptors[item.from_client]
    number = record.epoch << 48 | record.sequence
    for wrong in (number + 1, record.sequence, None):  # another sequence, no epoch, TLS's counter
        with pytest.raises(DecryptError):
            decryptor.decrypt(short_header(record), record.payload, wrong)
    with pytest.raises(ParseError):
        decryptor.decrypt(short_header(record), record.payload, 1 << 64)
    decryptor.decrypt(short_header(record), record.payload, number)


# --- DTLS 1.3: the illustrated capture -------------------------------------------------------------


@pytest.fixture(scope="module")
def illustrated() -> Path:
    if not (ILLUSTRATED / "capture.pcap").is_file():
        pytest.skip("../shared/corpus/illustrated-dtls is absent")
    return ILLUSTRATED


def test_illustrated_dtls13_opens_record_for_record(illustrated: Path) -> None:
    """dtls.xargs.org: EncryptedExtensions, Certificate, CertificateVerify, Finished; the client's
    Finished; an ACK, "ping", "pong" and the server's close_notify."""
    seen = records_of(illustrated / "capture.pcap")
    client_random, _, suite = hellos(seen)
    assert suite == 0x1301
    lines = dict(
        (line.split()[0], bytes.fromhex(line.split()[2]))
        for line in (illustrated / "keylog.txt").read_text().splitlines()
        if line.strip()
    )
    assert client_random.hex() == (illustrated / "keylog.txt").read_text().split()[1]
    labels = {
        (False, 2): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        (True, 2): "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        (False, 3): "SERVER_TRAFFIC_SECRET",
        (True, 3): "CLIENT_TRAFFIC_SECRET",
    }
    decryptors = {slot: Dtls13RecordDecryptor(suite, lines[label]) for slot, label in labels.items()}
    highest: dict[tuple[bool, int], int] = {}
    out = []
    for item in seen:
        record = item.record
        if not record.unified:
            continue
        slot = (item.from_client, record.epoch)
        decryptor = decryptors[slot]
        unmasked = unmask_sequence(record, decryptor.sequence_mask(sequence_mask_sample(record)))
        sequence = reconstruct(unmasked.sequence, record.sequence_bits, highest.get(slot, -1) + 1)
        highest[slot] = sequence
        inner = decryptor.decrypt(unmasked.header, record.payload, sequence)
        kind = inner.content_type
        if kind == HANDSHAKE:
            detail: object = [fragment.msg_type for fragment in parse_handshake_fragments(inner.plaintext)]
        elif kind == ALERT:
            detail = [(alert.level, alert.description) for alert in parse_alerts(inner.plaintext)]
        else:
            detail = inner.plaintext if kind == APPLICATION_DATA else len(inner.plaintext)
        out.append(("client" if item.from_client else "server", record.epoch, sequence, kind, detail))
    assert out == [
        ("server", 2, 0, HANDSHAKE, [8]),
        ("server", 2, 1, HANDSHAKE, [11]),
        ("server", 2, 2, HANDSHAKE, [15]),
        ("server", 2, 3, HANDSHAKE, [FINISHED]),
        ("client", 2, 0, HANDSHAKE, [FINISHED]),
        ("server", 3, 0, ACK, 18),
        ("client", 3, 0, APPLICATION_DATA, b"ping"),
        ("server", 3, 1, APPLICATION_DATA, b"pong"),
        ("server", 3, 2, ALERT, [(1, 0)]),
    ]


def test_illustrated_dtls13_masked_header_does_not_open(illustrated: Path) -> None:
    """The additional data is the header with the sequence number in clear, not as masked on the wire."""
    seen = records_of(illustrated / "capture.pcap")
    _, _, suite = hellos(seen)
    secret = bytes.fromhex(
        next(
            line.split()[2]
            for line in (illustrated / "keylog.txt").read_text().splitlines()
            if line.startswith("SERVER_HANDSHAKE_TRAFFIC_SECRET")
        )
    )
    record = next(item.record for item in seen if item.record.unified)
    decryptor = Dtls13RecordDecryptor(suite, secret)
    with pytest.raises(DecryptError):
        decryptor.decrypt(record.header, record.payload, 0)
    unmasked = unmask_sequence(record, decryptor.sequence_mask(sequence_mask_sample(record)))
    with pytest.raises(DecryptError):
        decryptor.decrypt(unmasked.header, record.payload, 1)
    assert decryptor.decrypt(unmasked.header, record.payload, 0).content_type == HANDSHAKE
    with pytest.raises(DecryptError):  # a TLS 1.3 ("tls13 ") key does not open a DTLS 1.3 record
        Dtls13RecordDecryptor(suite, bytes(32)).decrypt(unmasked.header, record.payload, 0)


# --- DTLS 1.2 ChaCha20-Poly1305: a live OpenSSL exchange -------------------------------------------

DATAGRAM = b"hello over dtls\n"


def _wait_for(path: Path, needle: bytes, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_bytes():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{needle!r} not seen in {path.name}: {path.read_bytes()[-300:] if path.exists() else b''!r}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def openssl_dtls_chacha(folder: Path) -> tuple[Path, Path]:
    """s_client -dtls1_2 sends a line to s_server with ECDHE-RSA-CHACHA20-POLY1305; (pcap, keylog)."""
    if os.geteuid() != 0:
        pytest.skip("capturing loopback traffic with tcpdump needs root")
    for tool in ("openssl", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    pki = PCAPS / "pki"
    cert, key = pki / "server.pem", pki / "server.key"
    if not cert.exists() or not key.exists():
        pytest.skip("pcaps/pki has no server certificate")
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    capture, keys = folder / "chacha.pcap", folder / "chacha.keylog"
    tcpdump_log, server_log = folder / "tcpdump.log", folder / "server.log"
    with tcpdump_log.open("wb") as log:
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-w", str(capture), f"udp port {port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        _wait_for(tcpdump_log, b"listening on")
        with server_log.open("wb") as log:
            server = subprocess.Popen(
                ["openssl", "s_server", "-dtls1_2", "-accept", str(port), "-cert", str(cert), "-key", str(key),
                 "-cipher", "ECDHE-RSA-CHACHA20-POLY1305", "-naccept", "1", "-quiet"],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            time.sleep(0.5)
            subprocess.run(
                ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-quiet", "-no_ign_eof",
                 "-cipher", "ECDHE-RSA-CHACHA20-POLY1305", "-keylogfile", str(keys)],
                input=DATAGRAM, capture_output=True, timeout=20, check=False,
            )  # fmt: skip
            _wait_for(server_log, DATAGRAM.strip())
        finally:
            _stop(server)
        time.sleep(0.3)
    finally:
        _stop(tcpdump)
    if not keys.exists() or not keys.read_text().strip():
        pytest.skip("s_client wrote no key log")
    return capture, keys


def test_openssl_dtls12_chacha20_poly1305(tmp_path: Path) -> None:
    capture, keys = openssl_dtls_chacha(tmp_path)
    seen = records_of(capture)
    client_random, server_random, suite = hellos(seen)
    assert suite == 0xCCA8
    master = keylog(keys).secret(CLIENT_RANDOM, client_random)
    assert master is not None
    decryptors = {
        side: Tls12RecordDecryptor(suite, master, client_random, server_random, from_client=side)
        for side in (True, False)
    }
    client_data = b""
    count = 0
    for item in seen:
        record = item.record
        if record.epoch == 0:
            continue
        plaintext = decryptors[item.from_client].decrypt(
            short_header(record), record.payload, record.epoch << 48 | record.sequence
        )
        count += 1
        if item.from_client and record.content_type == APPLICATION_DATA:
            client_data += plaintext
    assert count >= 3 and client_data == DATAGRAM
