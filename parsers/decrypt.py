"""TLS record decryption from key-log secrets: TLS 1.3 (RFC 8446 §5.2-5.3, §7) and TLS 1.2 AEAD suites,
and their datagram forms: DTLS 1.2 (RFC 6347 §4.1.2.1) and DTLS 1.3 (RFC 9147 §4, §4.2.3, §5.9).

Each decryptor covers one direction of one connection under one key, and is fed whole records in order
(a record reader upstream does the framing). A record that fails authentication leaves the sequence
number where it was, so a caller can try another key or skip the record without desynchronising.
DTLS records carry their own sequence number (datagrams are lost and reordered): the caller passes it
with each record and the implicit counter is not used.

Secrets and derived keys never appear in reprs or exception messages: a sensor's logs are read by people
who must not be able to decrypt its captures.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final, Protocol

from helloscope.parsers.errors import ParseError

# cryptography is imported by the functions that use it, when a key is first used: a run without keys
# and without QUIC never loads it (startup time, issue 13).

RECORD_HEADER_LENGTH: Final = 5
# HKDF-Expand-Label's label prefix: "tls13 " for TLS 1.3 and QUIC, "dtls13" for DTLS 1.3 (RFC 9147 §5.9).
TLS13_LABEL_PREFIX: Final = b"tls13 "
DTLS13_LABEL_PREFIX: Final = b"dtls13"
# RFC 9147 §4.2.3: the record number mask is computed over the first 16 bytes of the ciphertext.
DTLS13_MASK_SAMPLE_LENGTH: Final = 16
_DTLS_SEQUENCE_LIMIT: Final = 1 << 64  # DTLS 1.2: epoch (16 bits) << 48 | sequence (48 bits)
CONTENT_APPLICATION_DATA: Final = 23

AES_GCM: Final = "AES-GCM"
AES_CCM: Final = "AES-CCM"
CHACHA20_POLY1305: Final = "ChaCha20-Poly1305"

# The key schedules' hashes by their hashlib name (what hmac takes) and digest size: looked up, not built
# as cryptography hash objects, as HKDF runs eight times per QUIC connection.
_HASHES: Final = {"sha256": 32, "sha384": 48}
_NONCE_LENGTH: Final = 12  # every AEAD used by TLS here takes a 96-bit nonce
_TLS12_TAG_LENGTH: Final = 16  # no truncated-tag suite is supported for TLS 1.2


class DecryptError(ParseError):
    """Record protection could not be removed: authentication failed, the inner plaintext is malformed,
    or the suite or secret cannot be used. Never carries key material."""


@dataclass(frozen=True, slots=True)
class Tls13Suite:
    """A TLS 1.3 cipher suite: its AEAD, key and tag lengths, and the hash of its key schedule."""

    code: int
    name: str
    aead: str  # AES_GCM, AES_CCM or CHACHA20_POLY1305
    key_length: int
    tag_length: int
    hash_name: str  # a key of _HASHES; also the HKDF hash of the key schedule

    @property
    def hash_length(self) -> int:
        return _digest_size(self.hash_name)


TLS13_SUITES: Final[dict[int, Tls13Suite]] = {
    suite.code: suite
    for suite in (
        Tls13Suite(0x1301, "TLS_AES_128_GCM_SHA256", AES_GCM, 16, 16, "sha256"),
        Tls13Suite(0x1302, "TLS_AES_256_GCM_SHA384", AES_GCM, 32, 16, "sha384"),
        Tls13Suite(0x1303, "TLS_CHACHA20_POLY1305_SHA256", CHACHA20_POLY1305, 32, 16, "sha256"),
        Tls13Suite(0x1304, "TLS_AES_128_CCM_SHA256", AES_CCM, 16, 16, "sha256"),
        Tls13Suite(0x1305, "TLS_AES_128_CCM_8_SHA256", AES_CCM, 16, 8, "sha256"),
    )
}


@dataclass(frozen=True, slots=True)
class Tls12Suite:
    """A TLS 1.2 AEAD cipher suite: how its key block is cut and its nonce built."""

    code: int
    name: str
    aead: str  # AES_GCM or CHACHA20_POLY1305
    key_length: int
    fixed_iv_length: int  # write IV bytes from the key block
    explicit_nonce_length: int  # nonce bytes carried at the start of each record
    prf_hash: str  # a key of _HASHES


# The record protection depends only on the bulk part of the suite name: (aead, key, fixed IV, explicit
# nonce, PRF hash). GCM: RFC 5288 §3 (4-byte salt + 8 explicit bytes); ChaCha20: RFC 7905 §2 (12-byte
# IV XOR sequence, nothing explicit).
_TLS12_BULK: Final[dict[str, tuple[str, int, int, int, str]]] = {
    "AES_128_GCM_SHA256": (AES_GCM, 16, 4, 8, "sha256"),
    "AES_256_GCM_SHA384": (AES_GCM, 32, 4, 8, "sha384"),
    "CHACHA20_POLY1305_SHA256": (CHACHA20_POLY1305, 32, 12, 0, "sha256"),
}

TLS12_AEAD_SUITES: Final[dict[int, Tls12Suite]] = {
    code: Tls12Suite(code, f"TLS_{exchange}_WITH_{bulk}", *_TLS12_BULK[bulk])
    for code, exchange, bulk in (
        (0x009C, "RSA", "AES_128_GCM_SHA256"),
        (0x009D, "RSA", "AES_256_GCM_SHA384"),
        (0x009E, "DHE_RSA", "AES_128_GCM_SHA256"),
        (0x009F, "DHE_RSA", "AES_256_GCM_SHA384"),
        (0x00A2, "DHE_DSS", "AES_128_GCM_SHA256"),
        (0x00A3, "DHE_DSS", "AES_256_GCM_SHA384"),
        (0xC02B, "ECDHE_ECDSA", "AES_128_GCM_SHA256"),
        (0xC02C, "ECDHE_ECDSA", "AES_256_GCM_SHA384"),
        (0xC02D, "ECDH_ECDSA", "AES_128_GCM_SHA256"),
        (0xC02E, "ECDH_ECDSA", "AES_256_GCM_SHA384"),
        (0xC02F, "ECDHE_RSA", "AES_128_GCM_SHA256"),
        (0xC030, "ECDHE_RSA", "AES_256_GCM_SHA384"),
        (0xC031, "ECDH_RSA", "AES_128_GCM_SHA256"),
        (0xC032, "ECDH_RSA", "AES_256_GCM_SHA384"),
        (0xCCA8, "ECDHE_RSA", "CHACHA20_POLY1305_SHA256"),
        (0xCCA9, "ECDHE_ECDSA", "CHACHA20_POLY1305_SHA256"),
        (0xCCAA, "DHE_RSA", "CHACHA20_POLY1305_SHA256"),
    )
}

TLS12_MASTER_SECRET_LENGTH: Final = 48
TLS_RANDOM_LENGTH: Final = 32


def _digest_size(hash_name: str) -> int:
    size = _HASHES.get(hash_name)
    if size is None:
        raise ValueError(f"unsupported hash {hash_name!r}; expected one of {sorted(_HASHES)}")
    return size


def hkdf_expand_label(
    secret: bytes, label: bytes, context: bytes, length: int, hash_name: str, prefix: bytes = TLS13_LABEL_PREFIX
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1). ``label`` is given WITHOUT the prefix, which is added here:
    pass ``b"key"``, ``b"c hs traffic"``, or for QUIC (RFC 9001 §5.1) ``b"quic key"``. ``prefix`` is
    ``tls13 `` (:data:`TLS13_LABEL_PREFIX`) except for DTLS 1.3, whose labels start with ``dtls13``
    (:data:`DTLS13_LABEL_PREFIX`, no space: RFC 9147 §5.9).

    Misuse (over-long label or context, impossible length, unknown hash) raises ValueError: those are
    caller bugs, not properties of captured bytes.
    """
    full_label = prefix + label
    if len(full_label) > 255 or len(context) > 255:
        raise ValueError("HKDF-Expand-Label label and context are limited to 255 bytes")
    digest_size = _digest_size(hash_name)
    if not 0 < length <= min(0xFFFF, 255 * digest_size):
        raise ValueError(f"HKDF-Expand-Label cannot produce {length} bytes with {hash_name}")
    info = length.to_bytes(2, "big") + bytes([len(full_label)]) + full_label + bytes([len(context)]) + context
    # HKDF-Expand (RFC 5869 §2.3) on hmac's one-shot digest: a QUIC connection needs eight of these, and
    # building cryptography's HKDFExpand object for each cost several times the HMAC itself.
    block = output = b""
    for counter in range(1, -(-length // digest_size) + 1):
        block = hmac.digest(secret, block + info + bytes([counter]), hash_name)
        output += block
    return output[:length]


def tls12_prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """The TLS 1.2 PRF, P_<hash>(secret, label + seed) truncated to ``length`` (RFC 5246 §5)."""
    _digest_size(hash_name)  # raises for a hash the suites do not use, as hkdf_expand_label does
    label_seed = label + seed
    out = bytearray()
    a = label_seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + label_seed, hash_name)
    return bytes(out[:length])


@dataclass(frozen=True, slots=True)
class TrafficKeys:
    """Record protection keys derived from one TLS 1.3 traffic secret; never printed."""

    key: bytes = field(repr=False)
    iv: bytes = field(repr=False)
    sn_key: bytes | None = field(default=None, repr=False)  # DTLS 1.3 record number key, else None


def derive_traffic_keys(cipher_suite: int, traffic_secret: bytes, prefix: bytes = TLS13_LABEL_PREFIX) -> TrafficKeys:
    """[sender]_write_key and _iv from a traffic secret (RFC 8446 §7.3) — the one path every suite uses.

    With the DTLS 1.3 ``prefix`` the record number key ``sn_key`` (RFC 9147 §4.2.3) is derived too.
    """
    suite = _tls13_suite(cipher_suite)
    if len(traffic_secret) != suite.hash_length:
        # A 32-byte secret with a SHA-384 suite means the key log line and the ServerHello disagree.
        raise DecryptError(f"traffic secret is {len(traffic_secret)} bytes but {suite.name} uses {suite.hash_length}")
    sn_key = None
    if prefix == DTLS13_LABEL_PREFIX:
        sn_key = hkdf_expand_label(traffic_secret, b"sn", b"", suite.key_length, suite.hash_name, prefix)
    return TrafficKeys(
        key=hkdf_expand_label(traffic_secret, b"key", b"", suite.key_length, suite.hash_name, prefix),
        iv=hkdf_expand_label(traffic_secret, b"iv", b"", _NONCE_LENGTH, suite.hash_name, prefix),
        sn_key=sn_key,
    )


def _tls13_suite(cipher_suite: int) -> Tls13Suite:
    suite = TLS13_SUITES.get(cipher_suite)
    if suite is None:
        raise DecryptError(f"unsupported TLS 1.3 cipher suite 0x{cipher_suite:04x}")
    return suite


class Aead(Protocol):
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def make_aead(kind: str, key: bytes, tag_length: int) -> Aead:
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

    if kind == AES_GCM:
        return AESGCM(key)
    if kind == AES_CCM:
        return AESCCM(key, tag_length=tag_length)
    if kind == CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    raise ValueError(f"unknown AEAD {kind!r}")  # a suite-table typo, not captured input


def _check_header(header: bytes, fragment_length: int) -> None:
    """Check the 5-byte header (type, version, length) against the fragment it came with."""
    if len(header) != RECORD_HEADER_LENGTH:
        raise ParseError(f"record header must be {RECORD_HEADER_LENGTH} bytes, got {len(header)}", 0)
    length = int.from_bytes(header[3:5], "big")
    if length != fragment_length:
        raise ParseError(f"record header says {length} bytes but the fragment has {fragment_length}", 3)


@dataclass(frozen=True, slots=True)
class Decrypted:
    """An opened TLS 1.3 or DTLS 1.3 record: the inner content type and the content, padding removed."""

    content_type: int  # the real (inner) content type
    plaintext: bytes  # content without type and padding
    padding: int  # zero bytes stripped


class _Direction:
    """What both versions share: one AEAD key, a sequence number, and authenticate-then-advance."""

    __slots__ = ("_aead", "_sequence", "_tag_length")

    def __init__(self, aead: Aead, tag_length: int) -> None:
        self._aead = aead
        self._tag_length = tag_length
        self._sequence = 0

    @property
    def sequence(self) -> int:
        """Sequence number of the next record (the count of records decrypted so far)."""
        return self._sequence

    def _open(self, nonce: bytes, data: bytes, aad: bytes, advance: bool = True) -> bytes:
        """AEAD-open; ``advance`` moves the implicit counter (TLS), not done for explicit (DTLS) numbers."""
        if len(data) < self._tag_length:
            raise DecryptError(f"protected fragment of {len(data)} bytes is shorter than the AEAD tag", 0)
        from cryptography.exceptions import InvalidTag

        try:
            plaintext = self._aead.decrypt(nonce, data, aad)
        except InvalidTag:
            # Wrong secret, wrong suite, a lost or reordered record, or tampering: indistinguishable here.
            raise DecryptError("record authentication failed (wrong key, sequence or data)") from None
        if advance:
            self._sequence += 1
        return plaintext


def _xor_nonce(iv: int, sequence: int) -> bytes:
    """RFC 8446 §5.3 / RFC 7905 §2: the IV XOR the sequence number left-padded to the IV length."""
    return (iv ^ sequence).to_bytes(_NONCE_LENGTH, "big")


class Tls13RecordDecryptor(_Direction):
    """One direction, one traffic secret. Sequence number starts at 0 and advances per successful record.

    A record whose tag verifies but whose inner plaintext has no content type still consumed its
    sequence number at the sender, so the sequence advances before that DecryptError is raised.
    """

    __slots__ = ("_iv", "_suite")

    def __init__(self, cipher_suite: int, traffic_secret: bytes) -> None:
        suite = _tls13_suite(cipher_suite)
        keys = derive_traffic_keys(cipher_suite, traffic_secret)
        super().__init__(make_aead(suite.aead, keys.key, suite.tag_length), suite.tag_length)
        self._suite = suite
        self._iv = int.from_bytes(keys.iv, "big")

    @property
    def suite(self) -> Tls13Suite:
        return self._suite

    def decrypt(self, header: bytes, ciphertext: bytes) -> Decrypted:
        """Remove protection from one TLSCiphertext; ``header`` is its 5-byte header (the AAD)."""
        _check_header(header, len(ciphertext))
        if header[0] != CONTENT_APPLICATION_DATA:
            # RFC 8446 §5.2: every protected record is disguised as application_data; CCS, alerts
            # before the keys, and hellos are plaintext and must not reach the decryptor.
            raise ParseError(f"protected TLS 1.3 record has outer type {header[0]}, not 23", 0)
        inner = self._open(_xor_nonce(self._iv, self._sequence), ciphertext, header)
        return _inner_plaintext(inner)

    def __repr__(self) -> str:
        return f"Tls13RecordDecryptor(suite={self._suite.name}, sequence={self._sequence})"


def _inner_plaintext(inner: bytes) -> Decrypted:
    """TLSInnerPlaintext (RFC 8446 §5.2, and DTLS 1.3's): content, real type, zero padding."""
    content = inner.rstrip(b"\x00")
    if not content:
        raise DecryptError("inner plaintext is all zero padding: no content type (RFC 8446 §5.4)")
    return Decrypted(content_type=content[-1], plaintext=content[:-1], padding=len(inner) - len(content))


def dtls13_sequence_mask(aead: str, sn_key: bytes, sample: bytes) -> bytes:
    """RFC 9147 §4.2.3's mask from ``sn_key`` and a 16-byte ciphertext sample (QUIC's header protection
    function, RFC 9001 §5.4.3-5.4.4): AES-ECB of the sample for the AES suites; for ChaCha20, the
    keystream with the sample's first 4 bytes as (little-endian) block counter and the rest as nonce."""
    if len(sample) != DTLS13_MASK_SAMPLE_LENGTH:
        raise ParseError(f"record number mask needs a {DTLS13_MASK_SAMPLE_LENGTH}-byte sample, got {len(sample)}", 0)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if aead == CHACHA20_POLY1305:
        cipher = Cipher(algorithms.ChaCha20(sn_key, bytes(sample)), None)
        return cipher.encryptor().update(bytes(DTLS13_MASK_SAMPLE_LENGTH))
    return Cipher(algorithms.AES(sn_key), modes.ECB()).encryptor().update(bytes(sample))


class Dtls13RecordDecryptor(_Direction):
    """DTLS 1.3 (RFC 9147): one direction, one epoch's traffic secret, every label prefixed ``dtls13``.

    A unified-header record hides the low bits of its sequence number under a mask (§4.2.3): the caller
    takes :meth:`sequence_mask` of the first 16 ciphertext bytes, XORs it into the header's sequence
    bits, rebuilds the full 48-bit sequence number (§4.2.2), and passes the unmasked header (the AEAD
    additional data, as the sender built it before masking) with that number to :meth:`decrypt`.
    The nonce is the IV XOR the sequence number alone: unlike DTLS 1.2, no epoch (§4). The inner
    plaintext (real content type, zero padding) is TLS 1.3's.
    """

    __slots__ = ("_iv", "_sn_key", "_suite")

    def __init__(self, cipher_suite: int, traffic_secret: bytes) -> None:
        suite = _tls13_suite(cipher_suite)
        keys = derive_traffic_keys(cipher_suite, traffic_secret, DTLS13_LABEL_PREFIX)
        assert keys.sn_key is not None
        super().__init__(make_aead(suite.aead, keys.key, suite.tag_length), suite.tag_length)
        self._suite = suite
        self._iv = int.from_bytes(keys.iv, "big")
        self._sn_key = keys.sn_key

    @property
    def suite(self) -> Tls13Suite:
        return self._suite

    def sequence_mask(self, sample: bytes) -> bytes:
        """The 16-byte mask whose first 1 or 2 bytes are XORed into the header's sequence bits."""
        return dtls13_sequence_mask(self._suite.aead, self._sn_key, sample)

    def decrypt(self, header: bytes, ciphertext: bytes, sequence: int) -> Decrypted:
        """Remove protection from one DTLSCiphertext: ``header`` unmasked, ``sequence`` its full number."""
        if not 0 <= sequence < _DTLS_SEQUENCE_LIMIT:
            raise ParseError(f"DTLS sequence number {sequence} does not fit in 64 bits", 0)
        inner = self._open(_xor_nonce(self._iv, sequence), ciphertext, header, advance=False)
        return _inner_plaintext(inner)

    def __repr__(self) -> str:
        return f"Dtls13RecordDecryptor(suite={self._suite.name})"


class Tls12RecordDecryptor(_Direction):
    """TLS 1.2 AEAD suites (AES-GCM with 8-byte explicit nonce, ChaCha20-Poly1305 RFC 7905) from
    CLIENT_RANDOM's master secret. The sequence starts at 0 with the first record after this
    direction's ChangeCipherSpec (its Finished).

    The output is TLSCompressed.fragment: if the ServerHello chose a compression method other than
    null (DEFLATE, RFC 3749, in pre-CRIME captures), the caller still has to inflate it.
    """

    __slots__ = ("_fixed_iv", "_iv", "_suite")

    def __init__(
        self,
        cipher_suite: int,
        master_secret: bytes,
        client_random: bytes,
        server_random: bytes,
        from_client: bool,
    ) -> None:
        suite = TLS12_AEAD_SUITES.get(cipher_suite)
        if suite is None:
            raise DecryptError(f"cipher suite 0x{cipher_suite:04x} is not a supported TLS 1.2 AEAD suite")
        if len(master_secret) != TLS12_MASTER_SECRET_LENGTH:
            raise DecryptError(f"master secret is {len(master_secret)} bytes, not 48")
        if len(client_random) != TLS_RANDOM_LENGTH or len(server_random) != TLS_RANDOM_LENGTH:
            raise DecryptError("client and server randoms must be 32 bytes each")
        # RFC 5246 §6.3: client key, server key, client IV, server IV (AEAD suites have no MAC keys).
        key_len, iv_len = suite.key_length, suite.fixed_iv_length
        block = tls12_prf(
            master_secret, b"key expansion", server_random + client_random, 2 * (key_len + iv_len), suite.prf_hash
        )
        side = 0 if from_client else 1
        key = block[side * key_len : (side + 1) * key_len]
        iv = block[2 * key_len + side * iv_len : 2 * key_len + (side + 1) * iv_len]
        super().__init__(make_aead(suite.aead, key, _TLS12_TAG_LENGTH), _TLS12_TAG_LENGTH)
        self._suite = suite
        self._fixed_iv = iv
        self._iv = int.from_bytes(iv, "big")

    @property
    def suite(self) -> Tls12Suite:
        return self._suite

    def decrypt(self, header: bytes, fragment: bytes, sequence: int | None = None) -> bytes:
        """Plaintext of one record; AAD = seq(8) || type || version || plaintext length (RFC 5246 §6.2.3.3).

        ``header`` is the 5-byte (type, version, length) header. ``sequence`` is an explicit record
        sequence number for nonce and AAD: DTLS 1.2 (RFC 6347 §4.1.2.1) passes ``epoch << 48 |
        sequence_number`` from the record's own header, and the implicit counter is neither used nor
        advanced. None (TLS) uses and advances the counter.
        """
        _check_header(header, len(fragment))
        if sequence is not None and not 0 <= sequence < _DTLS_SEQUENCE_LIMIT:
            raise ParseError(f"record sequence number {sequence} does not fit in 64 bits", 0)
        number = self._sequence if sequence is None else sequence
        explicit = self._suite.explicit_nonce_length
        if explicit:
            if len(fragment) < explicit:
                raise DecryptError(f"fragment of {len(fragment)} bytes has no room for the explicit nonce", 0)
            nonce = self._fixed_iv + fragment[:explicit]
        else:
            nonce = _xor_nonce(self._iv, number)
        data = fragment[explicit:]
        plaintext_length = max(len(data) - self._tag_length, 0)  # too short is rejected by _open
        aad = number.to_bytes(8, "big") + header[:3] + plaintext_length.to_bytes(2, "big")
        return self._open(nonce, data, aad, advance=sequence is None)

    def __repr__(self) -> str:
        return f"Tls12RecordDecryptor(suite={self._suite.name}, sequence={self._sequence})"
