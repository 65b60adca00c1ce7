"""Key log (RFC 9850 SSLKEYLOGFILE) store: real key logs from the corpus first, then edge cases."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from helloscope.parsers.keylog import (
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_RANDOM,
    KEYLOG_LABELS,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
    KeyLogProblem,
    parse_keylog_text,
)
from hypothesis import given
from hypothesis import strategies as st

RANDOM_A = bytes(range(32))
RANDOM_B = bytes(range(100, 132))
SECRET_32 = bytes.fromhex("ab" * 32)
SECRET_48 = bytes.fromhex("cd" * 48)


def line(label: str, client_random: bytes, secret: bytes) -> str:
    return f"{label} {client_random.hex()} {secret.hex()}"


# --- real key logs ------------------------------------------------------------------------------


def test_illustrated_tls13_keylog(corpus: Path) -> None:
    text = (corpus / "illustrated-tls13/captures/keylog.txt").read_text()
    log, problems = parse_keylog_text(text)
    assert problems == []
    assert len(log) == 5
    assert log.labels(RANDOM_A) == {
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "EXPORTER_SECRET",
        "SERVER_TRAFFIC_SECRET_0",
        "CLIENT_TRAFFIC_SECRET_0",
    }
    secret = log.secret(SERVER_TRAFFIC_SECRET_0, RANDOM_A)
    assert secret is not None and len(secret) == 48  # TLS_AES_256_GCM_SHA384 capture
    assert log.secret(CLIENT_RANDOM, RANDOM_A) is None


def test_wireshark_notes_keylog_with_comments_and_uppercase_hex(corpus: Path) -> None:
    # 73 "# Cipher Suite ..." comments and secrets in upper-case hex, client randoms in lower case.
    text = (corpus / "wireshark-notes/all/premaster.txt").read_text()
    log, problems = parse_keylog_text(text)
    assert problems == []
    assert len(log) == 146
    first = text.splitlines()[1].split()
    assert log.secret(CLIENT_RANDOM, bytes.fromhex(first[1])) == bytes.fromhex(first[2])


def test_mercury_keylog(corpus: Path) -> None:
    log, problems = parse_keylog_text((corpus / "mercury/test/data/sslkeylogfile.log").read_text())
    assert problems == []
    assert len(log) == 80  # 16 TLS 1.3 connections x 5 labels


# --- line handling ------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_terminators(newline: str) -> None:
    text = (
        newline.join(
            [
                "# comment",
                line(CLIENT_RANDOM, RANDOM_A, SECRET_48),
                "",
                "garbage",
                line(CLIENT_HANDSHAKE_TRAFFIC_SECRET, RANDOM_B, SECRET_32),
            ]
        )
        + newline
    )
    log, problems = parse_keylog_text(text)
    assert len(log) == 2
    assert [p.line for p in problems] == [4]


def test_mixed_terminators_keep_line_numbers() -> None:
    text = "#\r\nbad1\rbad2\n\nbad3\r\n"
    _, problems = parse_keylog_text(text)
    assert [p.line for p in problems] == [2, 3, 5]


def test_mixed_hex_case_is_one_key() -> None:
    mixed = "".join(c.upper() if i % 3 else c for i, c in enumerate(RANDOM_A.hex()))
    log, problems = parse_keylog_text(f"CLIENT_RANDOM {mixed} {SECRET_48.hex().upper()}\n")
    assert problems == []
    assert log.secret(CLIENT_RANDOM, RANDOM_A) == SECRET_48


def test_partial_line_across_feeds() -> None:
    text = line(CLIENT_RANDOM, RANDOM_A, SECRET_48)
    log = KeyLog()
    assert log.feed(text[:40]) == []
    assert len(log) == 0  # nothing parsed before the terminator
    assert log.feed(text[40:]) == []
    assert len(log) == 0
    assert log.feed("\n") == []
    assert log.secret(CLIENT_RANDOM, RANDOM_A) == SECRET_48


def test_finish_flushes_a_last_line_without_newline() -> None:
    log = KeyLog()
    log.feed("bad\n" + line(CLIENT_RANDOM, RANDOM_A, SECRET_48))
    assert len(log) == 0
    assert log.finish() == []
    assert len(log) == 1
    assert log.finish() == []  # idempotent
    assert log.feed("oops") == []
    assert [p.line for p in log.finish()] == [3]  # a feed after finish() starts a new line


def test_crlf_split_between_feeds_is_one_terminator() -> None:
    log = KeyLog()
    assert log.feed("bad\r") == []  # the CR may be half of a CRLF: not decided yet
    assert [p.line for p in log.feed("\nbad\r\n")] == [1, 2]
    assert [p.line for p in log.feed("bad\r")] == []
    assert [p.line for p in log.finish()] == [3]  # end of input: the CR was a terminator


def test_leading_whitespace_comment_and_blank_lines() -> None:
    text = f"   \n\t\n  # indented comment\n {line(CLIENT_RANDOM, RANDOM_A, SECRET_48)} \t\n"
    log, problems = parse_keylog_text(text)
    assert problems == [] and len(log) == 1


def test_byte_order_mark_is_tolerated_at_start_only() -> None:
    log, problems = parse_keylog_text("\ufeff" + line(CLIENT_RANDOM, RANDOM_A, SECRET_48) + "\n")
    assert problems == [] and len(log) == 1
    _, problems = parse_keylog_text("#\n\ufeff" + line(CLIENT_RANDOM, RANDOM_A, SECRET_48) + "\n")
    assert [p.line for p in problems] == [2]


# --- problems -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("CLIENT_RANDOM", "found 1"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()}", "found 2"),
        (f"{line(CLIENT_RANDOM, RANDOM_A, SECRET_48)} extra", "found 4"),
        (f"CLIENT-RANDOM {RANDOM_A.hex()} {SECRET_48.hex()}", "label"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()[:-1]} {SECRET_48.hex()}", "client_random is not"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()[:-1]}g {SECRET_48.hex()}", "client_random is not"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()} {SECRET_48.hex()}0", "secret is not"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()} {SECRET_48.hex()[:-2]}zz", "secret is not"),
        (f"CLIENT_RANDOM {RANDOM_A.hex()} {'٣' * 96}", "secret is not"),  # non-ASCII digits
        (f"CLIENT_RANDOM {RANDOM_A.hex()[2:]} {SECRET_48.hex()}", "must be 32 bytes, found 31"),
        (line(CLIENT_RANDOM, RANDOM_A, SECRET_32), "must be 48 bytes, found 32"),
        (line(SERVER_TRAFFIC_SECRET_0, RANDOM_A, bytes(40)), "must be 32 or 48 bytes, found 40"),
    ],
)
def test_malformed_lines_are_problems_without_the_secret(text: str, reason_part: str) -> None:
    log, problems = parse_keylog_text("# header\n" + text + "\n")
    assert len(log) == 0
    assert len(problems) == 1 and problems[0].line == 2
    assert reason_part in problems[0].reason
    assert SECRET_48.hex() not in problems[0].reason and "abab" not in problems[0].reason


def test_unknown_labels_are_kept_when_well_formed() -> None:
    text = "\n".join(
        [
            line("PMS_CLIENT_RANDOM", RANDOM_A, SECRET_48),  # Wireshark's premaster-by-random extension
            f"RSA {bytes(8).hex()} {SECRET_48.hex()}",  # NSS's legacy form: 8-byte key, not a client random
            f"FUTURE_LABEL {RANDOM_A.hex()} not-hex",
        ]
    )
    log, problems = parse_keylog_text(text)
    assert len(log) == 2
    assert log.secret("PMS_CLIENT_RANDOM", RANDOM_A) == SECRET_48
    assert log.secret("RSA", bytes(8)) == SECRET_48
    assert [(p.line, "secret is not" in p.reason) for p in problems] == [(3, True)]


def test_all_invalid_file_is_recognisable() -> None:
    log, problems = parse_keylog_text("this is not\na key log\r\n")
    assert len(log) == 0 and len(problems) == 2
    empty, none = parse_keylog_text("# only comments\n\n")
    assert len(empty) == 0 and none == []  # empty, but not "invalid"


def test_duplicates_and_conflicts() -> None:
    same = line(CLIENT_RANDOM, RANDOM_A, SECRET_48)
    other = bytes.fromhex("ef" * 48)
    log, problems = parse_keylog_text("\n".join([same, same, line(CLIENT_RANDOM, RANDOM_A, other)]))
    assert len(log) == 1
    assert log.secret(CLIENT_RANDOM, RANDOM_A) == other  # the newest line wins
    assert len(problems) == 1 and problems[0].line == 3 and "line 1" in problems[0].reason


def test_conflict_on_unknown_label_does_not_echo_the_label() -> None:
    # A mangled line can carry a secret where the label belongs; it must not come back in a reason.
    label = SECRET_32.hex()
    _, problems = parse_keylog_text(f"{label} {RANDOM_A.hex()} 00\n{label} {RANDOM_A.hex()} 01\n")
    assert len(problems) == 1 and label not in problems[0].reason


def test_overlong_line_is_reported_once_and_parsing_resumes() -> None:
    good = line(CLIENT_RANDOM, RANDOM_A, SECRET_48)
    log = KeyLog(max_line_chars=200)
    problems = log.feed("x" * 150)
    problems += log.feed("x" * 150)  # still unterminated: the buffer must not keep growing
    problems += log.feed("x" * 1000 + "\n" + good + "\n")
    assert [(p.line, "longer than 200" in p.reason) for p in problems] == [(1, True)]
    assert log.secret(CLIENT_RANDOM, RANDOM_A) == SECRET_48


def test_discard_and_len() -> None:
    log, _ = parse_keylog_text(
        "\n".join(
            [
                line(CLIENT_RANDOM, RANDOM_A, SECRET_48),
                line(CLIENT_HANDSHAKE_TRAFFIC_SECRET, RANDOM_B, SECRET_32),
                line(SERVER_TRAFFIC_SECRET_0, RANDOM_B, SECRET_32),
            ]
        )
    )
    assert len(log) == 3
    assert log.discard(RANDOM_B) == 2
    assert len(log) == 1 and log.secret(SERVER_TRAFFIC_SECRET_0, RANDOM_B) is None
    assert log.discard(RANDOM_B) == 0


def test_repr_hides_secrets() -> None:
    log, _ = parse_keylog_text(line(CLIENT_RANDOM, RANDOM_A, SECRET_48))
    text = repr(log)
    assert text == "KeyLog(secrets=1, connections=1)"
    assert SECRET_48.hex() not in text and RANDOM_A.hex() not in text


def test_labels_constant() -> None:
    assert {
        "CLIENT_RANDOM",
        "CLIENT_EARLY_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EARLY_EXPORTER_SECRET",
        "EXPORTER_SECRET",
        "ECH_SECRET",
        "ECH_CONFIG",
    } == KEYLOG_LABELS


# --- properties ---------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(list("0123456789abcdefABCDEF_ #\r\n\tCLIENT_RANDOMx\ufeff\x00é"))
_TEXT = st.one_of(st.text(), st.text(alphabet=_ALPHABET))


def _snapshot(log: KeyLog, problems: list[KeyLogProblem]) -> tuple[object, ...]:
    entries = set(log.entries())
    return len(log), frozenset(entries), tuple(problems)


@given(_TEXT)
def test_arbitrary_text_never_raises(text: str) -> None:
    log, problems = parse_keylog_text(text)
    assert len(log) >= 0
    assert all(p.line >= 1 for p in problems)


@given(_TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=8), st.integers(4, 40))
def test_feeding_in_pieces_equals_feeding_at_once(text: str, cuts: list[int], max_line: int) -> None:
    whole = KeyLog(max_line_chars=max_line)
    expected = _snapshot(whole, whole.feed(text) + whole.finish())
    pieces = KeyLog(max_line_chars=max_line)
    problems: list[KeyLogProblem] = []
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    for start, end in pairwise(bounds):
        problems += pieces.feed(text[start:end])
    problems += pieces.finish()
    assert _snapshot(pieces, problems) == expected


_ENTRY = st.tuples(
    st.sampled_from(sorted(KEYLOG_LABELS - {CLIENT_RANDOM, "ECH_SECRET", "ECH_CONFIG"})),
    st.binary(min_size=32, max_size=32),
    st.sampled_from([32, 48]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)


@given(st.lists(_ENTRY, max_size=10), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_valid_lines_round_trip(entries: list[tuple[str, bytes, bytes]], newline: str, upper: bool) -> None:
    rendered = [line(label, r, s) for label, r, s in entries]
    log, problems = parse_keylog_text(newline.join(x.upper() if upper else x for x in rendered))
    latest = {(label, r): s for label, r, s in entries}
    assert len(log) == len(latest)
    for (label, r), s in latest.items():
        assert log.secret(label, r) == s
    assert all("replaces" in p.reason for p in problems)


def test_sealed_store_keeps_its_secrets_and_refuses_more() -> None:
    keys = KeyLog()
    assert not keys.sealed  # open by default: a consumer must expect more secrets
    keys.feed(line(CLIENT_RANDOM, RANDOM_A, SECRET_48) + "\n")
    keys.seal()
    assert keys.sealed
    assert keys.secret(CLIENT_RANDOM, RANDOM_A) == SECRET_48
    with pytest.raises(ValueError, match="sealed"):
        keys.feed(line(CLIENT_RANDOM, RANDOM_B, SECRET_48) + "\n")
    assert keys.secret(CLIENT_RANDOM, RANDOM_B) is None
