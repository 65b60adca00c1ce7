"""TLS record decryption: RFC 8448 vectors, then every corpus capture that ships a key log, then real
OpenSSL traffic for the suites the corpus lacks, then robustness properties.

On real traffic the decrypted content and handshake types are compared with what tshark reports for
the same capture and key log, so the oracle is an independent implementation, not this one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from helloscope.parsers.decrypt import (
    TLS12_AEAD_SUITES,
    TLS13_SUITES,
    Decrypted,
    DecryptError,
    Tls12RecordDecryptor,
    Tls13RecordDecryptor,
    derive_traffic_keys,
    hkdf_expand_label,
    tls12_prf,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.keylog import (
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_RANDOM,
    CLIENT_TRAFFIC_SECRET_0,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
    parse_keylog_text,
)
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import tshark_fields


def h(text: str) -> bytes:
    """The RFC's hex dump layout (spaces and line breaks) to bytes."""
    return bytes.fromhex("".join(text.split()))


# --- RFC 8448 §3 "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256), transcribed from the RFC ----------

# {server} derive secret "tls13 s hs traffic" / {client} ... "tls13 c hs traffic": expanded
RFC8448_SERVER_HS_SECRET = h(
    "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 befd 59 d3 91 ad 38"
)
RFC8448_CLIENT_HS_SECRET = h(
    "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 746a 0e 27 a5 5a 21"
)
# {server} derive secret "tls13 c ap traffic" / "tls13 s ap traffic": PRK, hash and expanded
RFC8448_MASTER_SECRET = h(
    "18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a41d a8 d0 40 29 19"
)
RFC8448_SERVER_FINISHED_HASH = h(
    "96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a 00 0e aa da 3d aa e4 777a 76 86 c9 ff 83 df 13"
)
RFC8448_CLIENT_AP_SECRET = h(
    "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92eb b7 c1 75 04 a5"
)
RFC8448_SERVER_AP_SECRET = h(
    "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f1f 3f cb 63 16 43"
)

# "derive write traffic keys for ...": (secret, key expanded, iv expanded)
RFC8448_TRAFFIC_KEYS = {
    "server handshake": (
        RFC8448_SERVER_HS_SECRET,
        h("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc"),
        h("5d 31 3e b2 67 12 76 ee 13 00 0b 30"),
    ),
    "client handshake": (
        RFC8448_CLIENT_HS_SECRET,
        h("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01"),
        h("5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"),
    ),
    "server application": (
        RFC8448_SERVER_AP_SECRET,
        h("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"),
        h("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"),
    ),
    "client application": (
        RFC8448_CLIENT_AP_SECRET,
        h("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"),
        h("5b 78 92 3d ee 08 57 90 33 e5 23 d9"),
    ),
}

# {server} construct an EncryptedExtensions / Certificate / CertificateVerify / Finished handshake message
RFC8448_ENCRYPTED_EXTENSIONS = h("""
    08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c
    00 02 40 01 00 00 00 00""")
RFC8448_CERTIFICATE = h("""
    0b 00 01 b9 00 00 01 b5 00 01 b0 30 82 01 ac 30 82 01 15 a0 03 02 01 02 02 01 02 30 0d 06 09 2a 86 48
    86 f7 0d 01 01 0b 05 00 30 0e 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36 30 37 33 30
    30 31 32 33 35 39 5a 17 0d 32 36 30 37 33 30 30 31 32 33 35 39 5a 30 0e 31 0c 30 0a 06 03 55 04 03 13
    03 72 73 61 30 81 9f 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02 81 81 00 b4
    bb 49 8f 82 79 30 3d 98 08 36 39 9b 36 c6 98 8c 0c 68 de 55 e1 bd b8 26 d3 90 1a 24 61 ea fd 2d e4 9a
    91 d0 15 ab bc 9a 95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12 09 98 e1 87 a8 0e e0 cc b0 52 4b 1b
    01 8c 3e 0b 63 26 4d 44 9a 6d 38 e2 2a 5f da 43 08 46 74 80 30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6
    d1 d0 3e 2b d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a 8d 88 d7 9f 7f 1e 3f 02 03 01 00 01 a3 1a 30 18
    30 09 06 03 55 1d 13 04 02 30 00 30 0b 06 03 55 1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86 f7 0d
    01 01 0b 05 00 03 81 81 00 85 aa d2 a0 e5 b9 27 6b 90 8c 65 f7 3a 72 67 17 06 18 a5 4c 5f 8a 7b 33 7d
    2d f7 a5 94 36 54 17 f2 ea e8 f8 a5 8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a 03 01 51 56 72 60
    96 fd 33 5e 5e 67 f2 db f1 02 70 2e 60 8c ca e6 be c1 fc 63 a4 2a 99 be 5c 3e b7 10 7c 3c 54 e9 b9 eb
    2b d5 20 3b 1c 3b 84 e0 a8 b2 f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8 f8 96 12 29 ac 91 87 b4 2b 4d
    e1 00 00""")
RFC8448_CERTIFICATE_VERIFY = h("""
    0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2 e5 5a b0 85 a6 10 15 b7 21 1f 82 4c d4 84 14 5a b3 ff
    52 f1 fd a8 47 7b 0b 7a bc 90 db 78 e2 d3 3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee aa a7 85 c4
    f3 94 ca b6 d3 0b be 8d 48 59 ee 51 1f 60 29 57 b1 54 11 ac 02 76 71 45 9e 46 44 5c 9e a5 8c 18 1e 81
    8e 95 b8 c3 fb 0b f3 27 84 09 d3 be 15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2 0d 53 df ac d4 2f 74 f3""")
RFC8448_SERVER_FINISHED = h("""
    14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30 95 72 cb 7f ff ee 54 54 b7 8f
    07 18""")

# {server} send handshake record: complete record (679 octets)
RFC8448_SERVER_FLIGHT_RECORD = h("""
    17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e
    df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78
    b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
    d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9
    d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e
    d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
    8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94
    5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68
    45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
    44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26
    f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31
    7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
    1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da
    8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4
    61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
    5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb
    99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59
    77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
    eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84
    5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5
    d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
    75 0e dc 53 37 0d 2b""")

# {client} send handshake record: complete record (58 octets), the client Finished; its verify_data is
# "{client} calculate finished": finished (32 octets)
RFC8448_CLIENT_FINISHED_RECORD = h("""
    17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc
    44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46""")
RFC8448_CLIENT_FINISHED = h(
    "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6e9 85 27 b6 42 f2 ed d5 ce 61"
)

# {server} construct a NewSessionTicket handshake message (205 octets): the server's record 0 under the
# application secret, so the server's application_data record below is at sequence 1.
RFC8448_NEW_SESSION_TICKET = h("""
    04 00 00 c9 00 00 00 1e fa d6 aa c5 02 00 00 00 b2 2c 03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00
    00 26 2a 64 94 dc 48 6d 2c 8a 34 cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be 78 5a
    bc 55 cd 22 60 97 a3 a9 82 11 72 83 f8 2a 03 a1 43 ef d3 ff 5d d3 6d 64 e8 61 be 7f d6 1d 28 27
    db 27 9c ce 14 50 77 d4 54 a3 66 4d 4e 6d a4 d2 9e e0 37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29
    51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d 8f 92 f2 28 bd a4 0d da 72 14 70 f9 fb f2 97 b5 ae a6 17 64
    6f ac 5c 03 27 2e 97 07 27 c6 21 a7 91 41 ef 5f 7d e6 50 5e 5b fb c3 88 e9 33 43 69 40 93 93 4a
    e4 d3 57 00 08 00 2a 00 04 00 00 04 00""")

# {client} / {server} send application_data record: payload (50 octets) 00 01 .. 31, complete record
RFC8448_APP_PAYLOAD = bytes(range(50))
RFC8448_CLIENT_APP_RECORD = h("""
    17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f
    2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6
    3a ee bb 21 69 49 15 e4""")
RFC8448_SERVER_APP_RECORD = h("""
    17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36
    e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54
    0d d0 32 e1 67 c2 95 5d""")


def split_record(record: bytes) -> tuple[bytes, bytes]:
    return record[:5], record[5:]


@pytest.mark.parametrize("name", sorted(RFC8448_TRAFFIC_KEYS))
def test_rfc8448_traffic_keys(name: str) -> None:
    secret, key, iv = RFC8448_TRAFFIC_KEYS[name]
    assert hkdf_expand_label(secret, b"key", b"", 16, "sha256") == key
    assert hkdf_expand_label(secret, b"iv", b"", 12, "sha256") == iv
    keys = derive_traffic_keys(0x1301, secret)
    assert (keys.key, keys.iv) == (key, iv)
    assert secret.hex() not in repr(keys) and key.hex() not in repr(keys)


def test_rfc8448_expand_label_with_context_and_finished_key() -> None:
    # "derive secret tls13 c ap traffic": a non-empty context (the transcript hash).
    assert (
        hkdf_expand_label(RFC8448_MASTER_SECRET, b"c ap traffic", RFC8448_SERVER_FINISHED_HASH, 32, "sha256")
        == RFC8448_CLIENT_AP_SECRET
    )
    assert (
        hkdf_expand_label(RFC8448_MASTER_SECRET, b"s ap traffic", RFC8448_SERVER_FINISHED_HASH, 32, "sha256")
        == RFC8448_SERVER_AP_SECRET
    )
    # "{server} calculate finished tls13 finished": expanded (32 octets)
    assert hkdf_expand_label(RFC8448_SERVER_HS_SECRET, b"finished", b"", 32, "sha256") == h(
        "00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8"
    )


def test_rfc8448_server_flight() -> None:
    decryptor = Tls13RecordDecryptor(0x1301, RFC8448_SERVER_HS_SECRET)
    result = decryptor.decrypt(*split_record(RFC8448_SERVER_FLIGHT_RECORD))
    expected = RFC8448_ENCRYPTED_EXTENSIONS + RFC8448_CERTIFICATE + RFC8448_CERTIFICATE_VERIFY + RFC8448_SERVER_FINISHED
    assert len(expected) == 657  # "{server} send handshake record: payload (657 octets)"
    assert result == Decrypted(content_type=22, plaintext=expected, padding=0)
    assert decryptor.sequence == 1


def test_rfc8448_client_records() -> None:
    handshake = Tls13RecordDecryptor(0x1301, RFC8448_CLIENT_HS_SECRET)
    assert handshake.decrypt(*split_record(RFC8448_CLIENT_FINISHED_RECORD)) == Decrypted(22, RFC8448_CLIENT_FINISHED, 0)
    application = Tls13RecordDecryptor(0x1301, RFC8448_CLIENT_AP_SECRET)
    assert application.decrypt(*split_record(RFC8448_CLIENT_APP_RECORD)) == Decrypted(23, RFC8448_APP_PAYLOAD, 0)


def test_rfc8448_server_application_data_at_sequence_1() -> None:
    decryptor = Tls13RecordDecryptor(0x1301, RFC8448_SERVER_AP_SECRET)
    with pytest.raises(DecryptError):  # it is the server's second record under this key
        decryptor.decrypt(*split_record(RFC8448_SERVER_APP_RECORD))
    assert decryptor.sequence == 0
    # Record 0 is the RFC's NewSessionTicket. Its ciphertext is not transcribed here, so seal the RFC's
    # plaintext with the RFC's printed key and IV (AES-GCM is deterministic: these are the RFC's bytes).
    _, key, iv = RFC8448_TRAFFIC_KEYS["server application"]
    body = AESGCM(key).encrypt(iv, RFC8448_NEW_SESSION_TICKET + b"\x16", bytes.fromhex("17030300de"))
    assert decryptor.decrypt(bytes.fromhex("17030300de"), body) == Decrypted(22, RFC8448_NEW_SESSION_TICKET, 0)
    assert decryptor.decrypt(*split_record(RFC8448_SERVER_APP_RECORD)) == Decrypted(23, RFC8448_APP_PAYLOAD, 0)
    assert decryptor.sequence == 2


def test_tag_failure_does_not_advance_the_sequence() -> None:
    header, body = split_record(RFC8448_SERVER_FLIGHT_RECORD)
    decryptor = Tls13RecordDecryptor(0x1301, RFC8448_SERVER_HS_SECRET)
    for tampered in (body[:-1] + bytes([body[-1] ^ 1]), bytes([body[0] ^ 0x80]) + body[1:]):
        with pytest.raises(DecryptError, match="authentication failed"):
            decryptor.decrypt(header, tampered)
        assert decryptor.sequence == 0
    with pytest.raises(DecryptError):  # the header is authenticated too
        decryptor.decrypt(b"\x17\x03\x01" + header[3:], body)
    assert decryptor.decrypt(header, body).content_type == 22  # still at sequence 0


def test_wrong_secret_is_a_decrypt_error_without_the_secret_in_it() -> None:
    wrong = Tls13RecordDecryptor(0x1301, RFC8448_CLIENT_HS_SECRET)
    with pytest.raises(DecryptError) as info:
        wrong.decrypt(*split_record(RFC8448_SERVER_FLIGHT_RECORD))
    assert wrong.sequence == 0
    for secret in (RFC8448_CLIENT_HS_SECRET, RFC8448_TRAFFIC_KEYS["client handshake"][1]):
        assert secret.hex() not in str(info.value) and secret.hex() not in repr(wrong)
    assert repr(wrong) == "Tls13RecordDecryptor(suite=TLS_AES_128_GCM_SHA256, sequence=0)"


def test_suite_and_secret_checks() -> None:
    with pytest.raises(DecryptError, match="0x1306"):
        Tls13RecordDecryptor(0x1306, bytes(32))
    with pytest.raises(DecryptError, match="48"):  # a SHA-256-sized secret for a SHA-384 suite
        Tls13RecordDecryptor(0x1302, bytes(32))
    with pytest.raises(DecryptError, match="not a supported TLS 1.2 AEAD suite"):
        Tls12RecordDecryptor(0xC013, bytes(48), bytes(32), bytes(32), True)  # CBC
    with pytest.raises(DecryptError, match="48"):
        Tls12RecordDecryptor(0xC02F, bytes(32), bytes(32), bytes(32), True)
    with pytest.raises(DecryptError, match="randoms"):
        Tls12RecordDecryptor(0xC02F, bytes(48), bytes(31), bytes(32), True)
    with pytest.raises(ValueError):
        hkdf_expand_label(bytes(32), b"x" * 250, b"", 16, "sha256")
    with pytest.raises(ValueError):
        hkdf_expand_label(bytes(32), b"key", b"", 16, "md5")


@given(
    secret=st.binary(min_size=1, max_size=64),
    context=st.binary(max_size=64),
    hash_name=st.sampled_from(["sha256", "sha384"]),
    length=st.sampled_from([1, 12, 16, 32, 33, 48, 49, 64, 100, 1000]),
)
def test_hkdf_expand_label_agrees_with_cryptography_for_every_length(
    secret: bytes, context: bytes, hash_name: str, length: int
) -> None:
    """Ours runs on hmac's one-shot digest; cryptography's HKDFExpand is the reference, over block bounds."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    label = b"tls13 c hs traffic"
    info = length.to_bytes(2, "big") + bytes([len(label)]) + label + bytes([len(context)]) + context
    algorithm = hashes.SHA256() if hash_name == "sha256" else hashes.SHA384()
    expected = HKDFExpand(algorithm, length, info).derive(secret)
    assert hkdf_expand_label(secret, b"c hs traffic", context, length, hash_name) == expected


def _seal13(suite: int, secret: bytes, inner: bytes, sequence: int = 0) -> tuple[bytes, bytes]:
    """Encrypt a TLSInnerPlaintext by hand (test oracle for paths the captures never take)."""
    keys = derive_traffic_keys(suite, secret)
    length = len(inner) + TLS13_SUITES[suite].tag_length
    header = bytes([23, 3, 3]) + length.to_bytes(2, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ sequence).to_bytes(12, "big")
    return header, AESGCM(keys.key).encrypt(nonce, inner, header)


def test_padding_is_stripped_and_counted() -> None:
    secret = bytes(range(32))
    decryptor = Tls13RecordDecryptor(0x1301, secret)
    header, body = _seal13(0x1301, secret, b"\x01\x00" + b"\x15" + bytes(100))
    assert decryptor.decrypt(header, body) == Decrypted(content_type=21, plaintext=b"\x01\x00", padding=100)


def test_all_zero_inner_plaintext_is_an_error_after_authentication() -> None:
    secret = bytes(range(32))
    decryptor = Tls13RecordDecryptor(0x1301, secret)
    with pytest.raises(DecryptError, match="no content type"):
        decryptor.decrypt(*_seal13(0x1301, secret, bytes(20)))
    # The tag verified, so the sender used up sequence 0: the next record is at 1.
    assert decryptor.sequence == 1
    assert decryptor.decrypt(*_seal13(0x1301, secret, b"ok\x17", sequence=1)).plaintext == b"ok"


def test_framing_errors_are_parse_errors() -> None:
    decryptor = Tls13RecordDecryptor(0x1301, RFC8448_SERVER_HS_SECRET)
    header, body = split_record(RFC8448_SERVER_FLIGHT_RECORD)
    with pytest.raises(ParseError, match="5 bytes"):
        decryptor.decrypt(header[:4], body)
    with pytest.raises(ParseError, match="says 674"):
        decryptor.decrypt(header, body[:-1])
    with pytest.raises(ParseError, match="outer type 22"):
        decryptor.decrypt(b"\x16" + header[1:], body)
    with pytest.raises(DecryptError, match="shorter than the AEAD tag"):
        decryptor.decrypt(bytes.fromhex("1703030003"), b"abc")
    assert decryptor.sequence == 0


def test_tls12_prf_sha256_vector() -> None:
    # The TLS 1.2 PRF test vector posted to the IETF TLS list (msg03416), "TLS1.2PRF-SHA256".
    out = tls12_prf(
        h("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
        b"test label",
        h("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
        100,
        "sha256",
    )
    assert out == h("""
        e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
        6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
        4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
        87 34 7b 66""")


def test_suite_tables() -> None:
    assert sorted(TLS13_SUITES) == [0x1301, 0x1302, 0x1303, 0x1304, 0x1305]
    assert TLS13_SUITES[0x1305].tag_length == 8 and TLS13_SUITES[0x1302].hash_length == 48
    assert {0x009C, 0x009D, 0x009E, 0x009F, 0xC02B, 0xC02C, 0xC02F, 0xC030, 0xCCA8, 0xCCA9, 0xCCAA} <= set(
        TLS12_AEAD_SUITES
    )
    assert TLS12_AEAD_SUITES[0xC030].name == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert TLS12_AEAD_SUITES[0xCCA8].name == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"


# --- robustness: arbitrary records only ever raise ParseError (DecryptError included) -------------


@given(st.sampled_from(sorted(TLS13_SUITES)), st.binary(max_size=8), st.binary(max_size=64), st.booleans())
def test_tls13_arbitrary_records(suite: int, header: bytes, body: bytes, fix_length: bool) -> None:
    decryptor = Tls13RecordDecryptor(suite, bytes(TLS13_SUITES[suite].hash_length))
    if fix_length:  # also reach the AEAD, not only the framing checks
        header = b"\x17\x03\x03" + len(body).to_bytes(2, "big")
    try:
        decryptor.decrypt(header, body)
    except ParseError:
        assert decryptor.sequence == 0


@given(
    st.sampled_from(sorted(TLS12_AEAD_SUITES)),
    st.binary(max_size=8),
    st.binary(max_size=64),
    st.booleans(),
    st.booleans(),
)
def test_tls12_arbitrary_records(suite: int, header: bytes, body: bytes, fix_length: bool, from_client: bool) -> None:
    decryptor = Tls12RecordDecryptor(suite, bytes(48), bytes(32), bytes(32), from_client)
    if fix_length:
        header = b"\x17\x03\x03" + len(body).to_bytes(2, "big")
    try:
        decryptor.decrypt(header, body)
    except ParseError:
        assert decryptor.sequence == 0


# --- real traffic: a test-only TCP/TLS walker ---------------------------------------------------


@dataclass
class Direction:
    """What one side of a connection sent, as the walker saw it after decryption."""

    content_types: list[int] = field(default_factory=list)  # inner types for TLS 1.3
    handshake_types: list[int] = field(default_factory=list)
    application_data: bytearray = field(default_factory=bytearray)
    decrypted: int = 0
    first_protected: tuple[bytes, bytes] | None = None  # (header, fragment) for negative tests


@dataclass
class Connection:
    stream: int
    client_port: int
    server_port: int
    client_random: bytes
    server_random: bytes
    cipher_suite: int
    version: int
    compression: int  # 1 = DEFLATE (RFC 3749): 2013-era OpenSSL negotiated it for TLS 1.2
    client: Direction = field(default_factory=Direction)
    server: Direction = field(default_factory=Direction)


def _tcp_payloads(capture: Path) -> dict[int, dict[int, bytes]]:
    """Per tcp.stream, per source port: the in-order payload bytes (retransmissions dropped, stop at a gap)."""
    segments: dict[tuple[int, int], list[tuple[int, bytes]]] = defaultdict(list)
    for stream, port, seq, payload in tshark_fields(
        capture, "tcp.len > 0", ["tcp.stream", "tcp.srcport", "tcp.seq", "tcp.payload"]
    ):
        segments[int(stream), int(port)].append((int(seq), bytes.fromhex(payload.replace(":", ""))))
    streams: dict[int, dict[int, bytes]] = defaultdict(dict)
    for (stream, port), parts in segments.items():
        parts.sort(key=lambda part: part[0])
        data = bytearray()
        end = parts[0][0]
        for seq, payload in parts:
            if seq > end:
                break
            data += payload[end - seq :]
            end = max(end, seq + len(payload))
        streams[stream][port] = bytes(data)
    return streams


def _records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos + 5 <= len(data):
        end = pos + 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
        if end > len(data):
            return
        yield data[pos : pos + 5], data[pos + 5 : end]
        pos = end


class _Handshakes:
    """Handshake messages across record boundaries: (type, message) as each one completes."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= 4:
            end = 4 + int.from_bytes(self._buffer[1:4], "big")
            if len(self._buffer) < end:
                break
            messages.append((self._buffer[0], self._buffer[:end]))
            self._buffer = self._buffer[end:]
        return messages


def _server_hello(message: bytes) -> tuple[bytes, int, int, int]:
    """(server_random, cipher_suite, compression, negotiated version) from a ServerHello message."""
    random = message[6:38]
    pos = 39 + message[38]
    suite = int.from_bytes(message[pos : pos + 2], "big")
    compression = message[pos + 2]
    version = int.from_bytes(message[4:6], "big")
    pos += 3
    if pos + 2 <= len(message):
        pos += 2
        while pos + 4 <= len(message):
            kind = int.from_bytes(message[pos : pos + 2], "big")
            size = int.from_bytes(message[pos + 2 : pos + 4], "big")
            if kind == 0x002B:  # supported_versions
                version = int.from_bytes(message[pos + 4 : pos + 6], "big")
            pos += 4 + size
    return random, suite, compression, version


def _walk(
    records: list[tuple[bytes, bytes]],
    out: Direction,
    stages: list[Tls13RecordDecryptor] | Tls12RecordDecryptor,
    compression: int = 0,
) -> None:
    """Decrypt one direction. TLS 1.3: every type-23 record is protected, first under the handshake
    secret, then (after this side's Finished) the application secret. TLS 1.2: everything after
    this side's ChangeCipherSpec is protected (and maybe DEFLATE-compressed, one stream per side)."""
    handshakes = _Handshakes()
    inflater = zlib.decompressobj() if compression == 1 else None
    protected = False
    for header, fragment in records:
        if isinstance(stages, list):
            protected = header[0] == 23
        if not protected:
            out.content_types.append(header[0])
            if header[0] == 22:
                out.handshake_types += [kind for kind, _ in handshakes.feed(fragment)]
            protected = header[0] == 20
            continue
        out.first_protected = out.first_protected or (header, fragment)
        if isinstance(stages, list):
            result = stages[0].decrypt(header, fragment)
            content_type, plaintext = result.content_type, result.plaintext
        else:
            content_type, plaintext = header[0], stages.decrypt(header, fragment)
            if inflater is not None:
                plaintext = inflater.decompress(plaintext)
        out.decrypted += 1
        out.content_types.append(content_type)
        if content_type == 22:
            for kind, _ in handshakes.feed(plaintext):
                out.handshake_types.append(kind)
                if kind == 20 and isinstance(stages, list) and len(stages) > 1:
                    stages.pop(0)  # Finished is the last message under the handshake secret
        elif content_type == 23:
            out.application_data += plaintext


def decrypt_capture(capture: Path, log: KeyLog) -> list[Connection]:
    """Every TCP connection of the capture that the key log (and our suites) can decrypt."""
    connections = []
    for stream, sides in sorted(_tcp_payloads(capture).items()):
        client_port = next((port for port, data in sides.items() if data[:1] == b"\x16" and data[5:6] == b"\x01"), None)
        if client_port is None or len(sides) != 2:
            continue  # no ClientHello at the start of the stream (mid-stream capture, not TLS)
        server_port = next(port for port in sides if port != client_port)
        client_records = list(_records(sides[client_port]))
        server_records = list(_records(sides[server_port]))
        client_random = client_records[0][1][6:38]  # after handshake header (4) and version (2)
        hello = next(
            message
            for kind, message in _Handshakes().feed(
                b"".join(body for header, body in server_records if header[0] == 22)
            )
            if kind == 2
        )
        server_random, suite, compression, version = _server_hello(hello)
        conn = Connection(stream, client_port, server_port, client_random, server_random, suite, version, compression)
        if version == 0x0304:
            secrets = [
                log.secret(label, client_random)
                for label in (
                    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
                    CLIENT_TRAFFIC_SECRET_0,
                    SERVER_HANDSHAKE_TRAFFIC_SECRET,
                    SERVER_TRAFFIC_SECRET_0,
                )
            ]
            if None in secrets:
                continue
            c_hs, c_ap, s_hs, s_ap = (s for s in secrets if s is not None)
            _walk(client_records, conn.client, [Tls13RecordDecryptor(suite, c_hs), Tls13RecordDecryptor(suite, c_ap)])
            _walk(server_records, conn.server, [Tls13RecordDecryptor(suite, s_hs), Tls13RecordDecryptor(suite, s_ap)])
        else:
            master = log.secret(CLIENT_RANDOM, client_random)
            if master is None or suite not in TLS12_AEAD_SUITES:
                continue
            for records, out, from_client in (
                (client_records, conn.client, True),
                (server_records, conn.server, False),
            ):
                decryptor = Tls12RecordDecryptor(suite, master, client_random, server_random, from_client)
                _walk(records, out, decryptor, compression)
        connections.append(conn)
    return connections


def tshark_view(capture: Path, keylog: Path) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
    """Per (tcp.stream, srcport): tshark's record content types and handshake types, in order."""
    view: dict[tuple[int, int], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    rows = tshark_fields(
        capture,
        "tls",
        ["tcp.stream", "tcp.srcport", "tls.record.content_type", "tls.handshake.type"],
        "-o",
        f"tls.keylog_file:{keylog}",
    )
    for stream, port, content_types, handshake_types in rows:
        types, handshakes = view[int(stream), int(port)]
        types += [int(t) for t in content_types.split(",") if t]
        handshakes += [int(t) for t in handshake_types.split(",") if t]
    return view


def check_capture(capture: Path, keylog: Path) -> list[Connection]:
    """Decrypt every connection we have keys for; tshark must agree record by record."""
    log, problems = parse_keylog_text(keylog.read_text())
    assert problems == []
    connections = decrypt_capture(capture, log)
    view = tshark_view(capture, keylog)
    for conn in connections:
        for port, side in ((conn.client_port, conn.client), (conn.server_port, conn.server)):
            assert side.decrypted > 0
            assert (side.content_types, side.handshake_types) == view[conn.stream, port], (
                f"stream {conn.stream} port {port}"
            )
        check_wrong_keys(conn, log)
    return connections


def check_wrong_keys(conn: Connection, log: KeyLog) -> None:
    """A wrong secret fails authentication on real records and leaves the sequence at 0."""
    assert conn.server.first_protected is not None
    header, fragment = conn.server.first_protected
    wrong: Tls13RecordDecryptor | Tls12RecordDecryptor
    if conn.version == 0x0304:
        # The client's handshake secret is a real secret of the right size, just for the other direction.
        client_secret = log.secret(CLIENT_HANDSHAKE_TRAFFIC_SECRET, conn.client_random)
        assert client_secret is not None
        wrong = Tls13RecordDecryptor(conn.cipher_suite, client_secret)
    else:
        master = log.secret(CLIENT_RANDOM, conn.client_random)
        assert master is not None
        wrong = Tls12RecordDecryptor(
            conn.cipher_suite,
            bytes([master[0] ^ 1]) + master[1:],
            conn.client_random,
            conn.server_random,
            from_client=False,
        )
    with pytest.raises(DecryptError):
        wrong.decrypt(header, fragment)
    assert wrong.sequence == 0


def test_illustrated_tls13(corpus: Path) -> None:
    folder = corpus / "illustrated-tls13/captures"
    [conn] = check_capture(folder / "capture.pcap", folder / "keylog.txt")
    assert conn.cipher_suite == 0x1302
    assert conn.server.handshake_types == [2, 8, 11, 15, 20, 4, 4]
    assert (bytes(conn.client.application_data), bytes(conn.server.application_data)) == (b"ping", b"pong")


def test_illustrated_tls13_archive(corpus: Path) -> None:
    folder = corpus / "illustrated-tls13/archive/captures"
    [conn] = check_capture(folder / "capture.pcap", folder / "keylog.txt")
    assert conn.cipher_suite == 0x1301


def test_mercury_test_decrypt(corpus: Path) -> None:
    folder = corpus / "mercury/test/data"
    connections = check_capture(folder / "test_decrypt.pcap", folder / "sslkeylogfile.log")
    # 16 TLS 1.3 connections have keys; the 4 TLS 1.2 ones (0xc02f, 0xc030) have no CLIENT_RANDOM line.
    assert len(connections) == 16
    assert {conn.cipher_suite for conn in connections} == {0x1301}


def test_illustrated_tls12_is_cbc(corpus: Path) -> None:
    # The TLS 1.2 illustrated capture uses TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: not an AEAD suite.
    folder = corpus / "illustrated-tls12/captures"
    log, _ = parse_keylog_text((folder / "keylog.txt").read_text())
    assert decrypt_capture(folder / "capture.pcap", log) == []
    with pytest.raises(DecryptError, match="0xc013"):
        Tls12RecordDecryptor(
            0xC013, log.secret(CLIENT_RANDOM, bytes(range(32))) or b"", bytes(range(32)), bytes(32), True
        )


def test_wireshark_notes_tls12_gcm(corpus: Path) -> None:
    folder = corpus / "wireshark-notes/all"
    connections = check_capture(folder / "dump.pcapng", folder / "premaster.txt")
    # One connection per GCM suite that OpenSSL 1.0.1 offered in 2013 (RSA, DHE, ECDH and ECDHE).
    assert sorted(conn.cipher_suite for conn in connections) == [
        0x009C,
        0x009D,
        0x009E,
        0x009F,
        0x00A2,
        0x00A3,
        0xC02B,
        0xC02C,
        0xC02D,
        0xC02E,
        0xC02F,
        0xC030,
        0xC031,
        0xC032,
    ]
    for conn in connections:
        assert conn.compression == 1  # DEFLATE: the decryptor yields TLSCompressed fragments
        assert conn.client.handshake_types[-1] == 20 and conn.server.handshake_types[-1] == 20
        assert conn.client.application_data == b"GET / HTTP/1.0\r\n\r\n"
        assert conn.server.application_data.startswith(b"HTTP/1.0 200 ok\r\n")


# --- real traffic made here: OpenSSL over loopback, for suites the corpus lacks ------------------

# (OpenSSL protocol switch, suite option, suite name, IANA code, certificate key type)
OPENSSL_CASES = {
    "tls13-aes128gcm": ("-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256", 0x1301, "rsa"),
    "tls13-aes256gcm": ("-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384", 0x1302, "rsa"),
    "tls13-chacha20": ("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", 0x1303, "rsa"),
    "tls13-aes128ccm": ("-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256", 0x1304, "rsa"),
    "tls13-aes128ccm8": ("-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_8_SHA256", 0x1305, "ec"),
    "tls12-ecdhe-rsa-chacha20": ("-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305", 0xCCA8, "rsa"),
    "tls12-ecdhe-ecdsa-chacha20": ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA9, "ec"),
    "tls12-dhe-rsa-chacha20": ("-tls1_2", "-cipher", "DHE-RSA-CHACHA20-POLY1305", 0xCCAA, "rsa"),
    "tls12-ecdhe-ecdsa-aes128gcm": ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02B, "ec"),
}
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
STEP_TIMEOUT = 15.0


class _Lines:
    """Collect a child's output lines on a thread, so waiting for a banner has a timeout."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._changed:
                self.lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()

    def wait_for(self, needle: str, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: any(needle in line for line in self.lines), timeout):
                raise TimeoutError(f"{needle!r} not seen; output so far: {''.join(self.lines)[-500:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def openssl_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("capturing loopback traffic with tcpdump needs root")
    for tool in ("openssl", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    folder = tmp_path_factory.mktemp("certs")
    certs = {}
    for kind, key_options in (
        ("rsa", ["-newkey", "rsa:2048"]),
        ("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ):
        key, cert = folder / f"{kind}.key", folder / f"{kind}.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                *key_options,
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-subj",
                "/CN=localhost",
                "-days",
                "1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        certs[kind] = (key, cert)
    return certs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def openssl_session(folder: Path, certs: dict[str, tuple[Path, Path]], case: str) -> tuple[Path, Path]:
    """One HTTP/1.0 exchange between s_client and s_server -www, captured by tcpdump; (pcap, keylog)."""
    protocol, option, suite_name, _, kind = OPENSSL_CASES[case]
    key, cert = certs[kind]
    port = _free_port()
    capture, keylog = folder / "capture.pcap", folder / "keylog.txt"
    # --immediate-mode: otherwise packets wait in the kernel ring for a buffer timeout and are lost
    # when tcpdump is stopped right after the exchange.
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-w", str(capture), f"tcp port {port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _Lines(tcpdump.stderr).wait_for("listening on", STEP_TIMEOUT)
        # CCM suites are not enabled by default: both sides need the explicit suite option.
        server = subprocess.Popen(
            [
                "openssl",
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-cert",
                str(cert),
                "-key",
                str(key),
                "-naccept",
                "1",
                "-www",
                "-keylogfile",
                str(keylog),
                protocol,
                option,
                suite_name,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            _Lines(server.stdout).wait_for("ACCEPT", STEP_TIMEOUT)
            subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-ign_eof",
                    "-quiet",
                    protocol,
                    option,
                    suite_name,
                ],
                input=HTTP_REQUEST,
                capture_output=True,
                timeout=STEP_TIMEOUT,
                check=True,
            )
            server.wait(timeout=STEP_TIMEOUT)
        finally:
            _stop(server)
        time.sleep(0.3)  # let the last FIN/ACK segments reach the capture
    finally:
        _stop(tcpdump)  # SIGTERM makes tcpdump flush and close the file
    return capture, keylog


@pytest.mark.parametrize("case", sorted(OPENSSL_CASES))
def test_openssl_loopback(case: str, tmp_path: Path, openssl_certs: dict[str, tuple[Path, Path]]) -> None:
    capture, keylog = openssl_session(tmp_path, openssl_certs, case)
    [conn] = check_capture(capture, keylog)
    assert conn.cipher_suite == OPENSSL_CASES[case][3]
    assert conn.client.application_data == HTTP_REQUEST
    assert conn.server.application_data.startswith(b"HTTP/1.0 200 ok\r\n")
    assert conn.client.content_types[-1] == conn.server.content_types[-1] == 21  # close_notify, decrypted
