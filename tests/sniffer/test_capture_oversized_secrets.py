"""An oversized Decryption Secrets Block is passed over: the packets after it are still read.

The captures are a real fixture converted to pcapng by editcap, with DSBs inserted after its interface
block: a 20 MiB one (over the 16 MiB record limit) and, after it, the fixture's real key log in a normal DSB.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from helloscope.sniffer.capture.files import open_capture

from tests.helpers import PCAPS, analyze

FIXTURE = PCAPS / "tls12-noauth.pcap"
KEYLOG = PCAPS / "tls12-noauth.keylog"
HUGE = 20 << 20


def _dsb(secrets: bytes, declared: int | None = None) -> bytes:
    padded = secrets + bytes(-len(secrets) % 4)
    length = 20 + len(padded)
    body = struct.pack("<IIII", 0x0A, length, 0x544C534B, len(secrets) if declared is None else declared)
    return body + padded + struct.pack("<I", length)


def _blocks(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        out.append(data[pos : pos + length])
        pos += length
    return out


@pytest.fixture(scope="module")
def pcapng(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed")
    path = tmp_path_factory.mktemp("dsb") / "fixture.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(FIXTURE), str(path)], check=True, capture_output=True, timeout=60)
    blocks = _blocks(path.read_bytes())
    assert [struct.unpack_from("<I", block)[0] for block in blocks[:2]] == [0x0A0D0D0A, 1]  # SHB, IDB
    return blocks


def _frames(path: Path) -> tuple[list[tuple[float, int, bytes]], object]:
    with open_capture(str(path)) as reader:
        frames = list(reader)
    return frames, reader


def test_a_huge_secrets_block_is_skipped_and_the_rest_is_read(tmp_path, pcapng):
    original, _ = _frames(FIXTURE)
    keylog = KEYLOG.read_bytes()
    huge = _dsb(b"CLIENT_RANDOM " + b"ab" * (HUGE // 2))
    path = tmp_path / "huge-dsb.pcapng"
    path.write_bytes(b"".join(pcapng[:2]) + huge + _dsb(keylog) + b"".join(pcapng[2:]))
    frames, reader = _frames(path)
    assert reader.truncation is None
    assert reader.skipped_secrets == 1
    assert reader.secrets == [keylog]  # the normal DSB after the skipped one is still collected
    assert [frame for _, _, frame in frames] == [frame for _, _, frame in original]
    # The whole pipeline reads it too: the same connection, decrypted with the embedded key log.
    (event,) = analyze(path)
    (plain,) = analyze(FIXTURE)
    assert event["tls"] == plain["tls"]
    assert event["helloscope"]["decryption"]["status"] != "no_keys"


def test_a_huge_secrets_block_cut_short_is_damage_at_its_start(tmp_path, pcapng):
    huge = _dsb(bytes(HUGE))
    path = tmp_path / "cut.pcapng"
    head = b"".join(pcapng[:2])
    path.write_bytes(head + pcapng[2] + huge[: len(huge) // 2])
    frames, reader = _frames(path)
    assert len(frames) == 1
    assert reader.truncation is not None and reader.truncation.offset == len(head) + len(pcapng[2])
    assert reader.skipped_secrets == 0


def test_a_huge_secrets_block_with_a_wrong_trailer_is_damage(tmp_path, pcapng):
    huge = bytearray(_dsb(bytes(HUGE)))
    huge[-4:] = struct.pack("<I", 12)
    path = tmp_path / "trailer.pcapng"
    path.write_bytes(b"".join(pcapng[:2]) + bytes(huge) + b"".join(pcapng[2:]))
    frames, reader = _frames(path)
    assert frames == []
    assert reader.truncation is not None and "trailing copy" in reader.truncation.reason
