"""tls_flags decoding on both codepoints, with every malformation class."""

from __future__ import annotations

import pytest
from helloscope.parsers.flags import (
    EMPTY,
    LENGTH_MISMATCH,
    NONMINIMAL,
    TRAILING_DATA,
    decode_tls_flags,
    encode_tls_flags,
)
from hypothesis import given
from hypothesis import strategies as st


def test_protocol_examples():
    # PROTOCOL.md: flag 8 is extension_data 02 00 01; flag 80 is an 11-byte vector ending in 01.
    assert encode_tls_flags({8}) == bytes.fromhex("020001")
    assert encode_tls_flags({80}) == bytes.fromhex("0b0000000000000000000001")
    flags = decode_tls_flags(0xFE01, bytes.fromhex("0b0000000000000000000001"))
    assert flags.flags == (80,) and flags.request_mtls and flags.names == ("request_mtls",)
    assert flags.malformations == ()


@pytest.mark.parametrize(
    ("data", "flags", "malformations"),
    [
        (b"", (), (EMPTY,)),
        (b"\x00", (), (EMPTY,)),
        (b"\x00\x01", (), (EMPTY, TRAILING_DATA)),
        (bytes.fromhex("020100"), (0,), (NONMINIMAL,)),
        (bytes.fromhex("0201"), (0,), (LENGTH_MISMATCH,)),
        (bytes.fromhex("0101ff"), (0,), (TRAILING_DATA,)),
        (bytes.fromhex("0180"), (7,), ()),
    ],
)
def test_malformations_are_classified_and_flags_still_read(data, flags, malformations):
    decoded = decode_tls_flags(62, data)
    assert decoded.flags == flags
    assert decoded.malformations == malformations


def test_unknown_flags_are_named_by_number():
    assert decode_tls_flags(62, encode_tls_flags({3, 2039})).names == ("unknown_3", "unknown_2039")


@given(st.frozensets(st.integers(min_value=0, max_value=2039), min_size=1, max_size=40))
def test_encode_decode_round_trip_is_minimal(flags):
    data = encode_tls_flags(flags)
    decoded = decode_tls_flags(62, data)
    assert decoded.flags == tuple(sorted(flags))
    assert decoded.malformations == ()


@given(st.binary(max_size=300))
def test_decoder_never_raises(data):
    decode_tls_flags(0xFE01, data)
