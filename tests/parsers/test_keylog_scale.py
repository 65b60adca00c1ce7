"""Key logs at scale: the store stays compact, and the fast path reads lines exactly as the full parser.

Time is measured by bench/keylog_scale.py; here the store's traced memory and its contents are asserted.
"""

from __future__ import annotations

import os
import tracemalloc

from helloscope.parsers.keylog import CLIENT_RANDOM, KEYLOG_LABELS, KeyLog, parse_keylog_text
from hypothesis import given
from hypothesis import strategies as st

TLS13 = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
)


def _log(connections: int) -> tuple[str, dict[tuple[bytes, str], bytes]]:
    lines, expected = [], {}
    for _ in range(connections):
        random = os.urandom(32)
        for label in TLS13:
            secret = os.urandom(48)
            lines.append(f"{label} {random.hex()} {secret.hex()}")
            expected[random, label] = secret
    return "\n".join(lines) + "\n", expected


def test_a_tls13_connection_costs_a_few_hundred_bytes():
    # Five secrets of 48 bytes are 240 bytes of payload; the per-line dict-and-object store cost ~1,300.
    text, expected = _log(20_000)
    tracemalloc.start()
    try:
        log, problems = parse_keylog_text(text)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert problems == [] and len(log) == len(expected)
    assert held / 20_000 < 600
    assert all(log.secret(label, random) == secret for (random, label), secret in expected.items())
    assert log.labels(next(iter(expected))[0]) == frozenset(TLS13)


def test_a_whole_file_and_small_pieces_give_the_same_store():
    text, expected = _log(3_000)
    log = KeyLog()
    problems = []
    for start in range(0, len(text), 4093):  # pieces that cut lines, and CRLF pairs, anywhere
        problems += log.feed(text[start : start + 4093])
    problems += log.finish()
    assert problems == []
    assert set(log.entries()) == {(random, label, secret) for (random, label), secret in expected.items()}


def test_replacing_a_secret_keeps_the_others_and_names_the_line():
    random = os.urandom(32)
    first, second = os.urandom(48), os.urandom(48)
    text = "\n".join(
        [
            f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {random.hex()} {first.hex()}",
            f"SERVER_HANDSHAKE_TRAFFIC_SECRET {random.hex()} {first.hex()}",
            f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {random.hex()} {second.hex()}",
        ]
    )
    log, problems = parse_keylog_text(text)
    assert [(p.line, p.reason) for p in problems] == [
        (3, "CLIENT_HANDSHAKE_TRAFFIC_SECRET for this client_random replaces a different secret from line 1")
    ]
    assert log.secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", random) == second
    assert log.secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", random) == first
    assert len(log) == 2
    assert log.discard(random) == 2 and len(log) == 0


_FIELD = st.sampled_from([" ", "\t", "  ", " \t"])
_HEXISH = st.text(alphabet="0123456789abcdefABCDEF \t\x0b\x0cg", min_size=0, max_size=100)


@given(
    label=st.sampled_from(sorted(KEYLOG_LABELS) + ["FUTURE_LABEL", "client_random"]),
    random=st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex), _HEXISH),
    secret=st.one_of(st.binary(min_size=1, max_size=64).map(bytes.hex), _HEXISH),
    separators=st.tuples(_FIELD, _FIELD),
)
def test_odd_lines_read_as_the_full_parser_reads_them(label, random, secret, separators):
    """The fast path must take only lines it reads exactly as the field-by-field parser does."""
    line = f"{label}{separators[0]}{random}{separators[1]}{secret}"
    fast = KeyLog()
    fast_problems = fast.feed(line + "\n")
    slow = KeyLog()
    slow._line = 1
    reason = slow._parse_line(line)
    assert [p.reason for p in fast_problems] == ([reason] if reason is not None else [])
    assert set(fast.entries()) == set(slow.entries())


def test_unknown_labels_are_stored_beside_the_known_ones():
    random = os.urandom(32)
    text = f"FUTURE_LABEL {random.hex()} abcd\n{CLIENT_RANDOM} {random.hex()} {'ab' * 48}\n"
    log, problems = parse_keylog_text(text)
    assert problems == []
    assert log.labels(random) == {"FUTURE_LABEL", CLIENT_RANDOM}
    assert log.secret("FUTURE_LABEL", random) == b"\xab\xcd"
    assert "ab" not in repr(log)
