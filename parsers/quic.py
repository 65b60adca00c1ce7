"""QUIC v1/v2 packet protection, frames and CRYPTO reassembly for a passive observer (RFC 9000, 9001, 9369).

Sans-IO like the rest of :mod:`parsers`: bytes in, frozen values out, and :class:`ParseError` (or its
:class:`~helloscope.parsers.decrypt.DecryptError` subclass when authentication fails) for anything malformed.

Initial packets are protected with keys derived from the Destination Connection ID of the client's first
Initial, which travels in clear: anyone on the path can read the ClientHello and ServerHello they carry.
Handshake and 1-RTT packets open with the TLS 1.3 traffic secrets of a key log. Long headers are parsed
on their own; a short header's DCID length is known only to the peers, so the caller names the DCID it
expects. Frames are read as far as an observer needs: CRYPTO data and CONNECTION_CLOSE, every other
frame skipped by type.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from helloscope.parsers.buffer import Reader
from helloscope.parsers.decrypt import (
    AES_GCM,
    CHACHA20_POLY1305,
    TLS13_SUITES,
    Aead,
    DecryptError,
    hkdf_expand_label,
    make_aead,
)
from helloscope.parsers.errors import ParseError
from helloscope.parsers.registry import QUIC_V1, QUIC_V2

# Packet types, named the same for both versions; the wire bits differ (RFC 9369 §3.2).
INITIAL: Final = "initial"
ZERO_RTT: Final = "0rtt"
HANDSHAKE: Final = "handshake"
ONE_RTT: Final = "1rtt"  # short header
RETRY: Final = "retry"
VERSION_NEGOTIATION: Final = "version_negotiation"
_TYPE_BITS: Final = {
    QUIC_V1: {0: INITIAL, 1: ZERO_RTT, 2: HANDSHAKE, 3: RETRY},
    QUIC_V2: {1: INITIAL, 2: ZERO_RTT, 3: HANDSHAKE, 0: RETRY},
}
_SALTS: Final = {
    QUIC_V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
# The "quic key/iv/hp" labels of RFC 9001 §5.1 become "quicv2 ..." in v2; hkdf_expand_label adds "tls13 ".
_LABEL_PREFIX: Final = {QUIC_V1: b"quic ", QUIC_V2: b"quicv2 "}
CLIENT_IN: Final = b"client in"
SERVER_IN: Final = b"server in"

MAX_CID_LENGTH: Final = 20  # RFC 9000 §17.2: a v1/v2 endpoint drops longer connection IDs
_SAMPLE_LENGTH: Final = 16
INITIAL_SUITE: Final = 0x1301  # Initial packets always use AEAD_AES_128_GCM (RFC 9001 §5.2)
# QUIC uses every TLS 1.3 suite but TLS_AES_128_CCM_8_SHA256, whose 8-byte tag it forbids (RFC 9001 §5.3).
QUIC_SUITES: Final = frozenset({0x1301, 0x1302, 0x1303, 0x1304})
_MAX_PN_LENGTH: Final = 4
_TAG_LENGTH: Final = 16
_RETRY_TAG_LENGTH: Final = 16

# Frame types an Initial or Handshake packet may carry (RFC 9000 §12.4, Table 3).
PADDING: Final = 0x00
PING: Final = 0x01
ACK: Final = 0x02
ACK_ECN: Final = 0x03
CRYPTO: Final = 0x06
CONNECTION_CLOSE: Final = 0x1C
CONNECTION_CLOSE_APPLICATION: Final = 0x1D
CRYPTO_ERROR_BASE: Final = 0x0100  # CONNECTION_CLOSE error 0x0100 + TLS alert (RFC 9001 §4.8)


def supported(version: int) -> bool:
    return version in _SALTS


# ----- variable-length integers -------------------------------------------------------------------


def pull_varint(reader: Reader, what: str = "varint") -> int:
    """RFC 9000 §16: the two high bits of the first byte give the length (1, 2, 4 or 8 bytes)."""
    first = reader.pull_uint8(what)
    if first < 0x40:  # one byte: most frame types, lengths and parameter ids, read per packet
        return first
    length = 1 << (first >> 6)
    return (first & 0x3F) << (8 * length - 8) | int.from_bytes(reader.pull_bytes(length - 1, what), "big")


# ----- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketKeys:
    """Packet protection for one direction at one encryption level: AEAD key, iv, header protection.

    The AEAD and the AES header-protection cipher are built once here and used for every packet these
    keys open: building them cost more than the decryption itself. An ECB encryptor holds no state
    between whole 16-byte blocks, so one serves every sample; ChaCha20 takes the sample as its nonce
    and needs a new cipher each time.
    """

    key: bytes
    iv: bytes
    hp: bytes
    aead: str = AES_GCM  # helloscope.parsers.decrypt AEAD names; header protection is AES except for ChaCha20
    _opener: Aead = field(init=False, repr=False, compare=False)
    _hp_encryptor: CipherContext | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_opener", make_aead(self.aead, self.key, _TAG_LENGTH))
        encryptor = None
        if self.aead != CHACHA20_POLY1305:
            encryptor = Cipher(algorithms.AES(self.hp), modes.ECB()).encryptor()
        object.__setattr__(self, "_hp_encryptor", encryptor)

    def __repr__(self) -> str:  # key material never reaches logs
        return "PacketKeys(<redacted>)"

    def header_mask(self, sample: bytes) -> bytes:
        """The header protection mask for a 16-byte ciphertext sample (RFC 9001 §5.4.3-5.4.4)."""
        if len(sample) != _SAMPLE_LENGTH:
            # A shorter sample would stay buffered in the shared ECB encryptor and shift every later mask.
            raise ParseError(f"header protection needs a {_SAMPLE_LENGTH}-byte sample, got {len(sample)}")
        if self._hp_encryptor is None:
            # ChaCha20 with the sample as counter (4 bytes, little-endian) and nonce (12): RFC 9001 §5.4.4
            return Cipher(algorithms.ChaCha20(self.hp, sample), None).encryptor().update(bytes(5))
        return self._hp_encryptor.update(sample)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """AEAD-open a packet payload; raises cryptography's InvalidTag when it does not authenticate."""
        return self._opener.decrypt(nonce, ciphertext, aad)


def initial_secret(version: int, dcid: bytes, label: bytes) -> bytes:
    """client_initial_secret (``CLIENT_IN``) or server_initial_secret (``SERVER_IN``) for ``dcid``."""
    salt = _SALTS.get(version)
    if salt is None:
        raise ParseError(f"no Initial salt for QUIC version 0x{version:08x}")
    extract = hmac.digest(salt, dcid, "sha256")  # HKDF-Extract(salt, IKM) = HMAC-Hash(salt, IKM)
    return hkdf_expand_label(extract, label, b"", 32, "sha256")


def packet_keys(version: int, secret: bytes, cipher_suite: int = INITIAL_SUITE) -> PacketKeys:
    """The key, iv and hp of one direction from its traffic secret, with the version's labels.

    Handshake and 1-RTT secrets come from a key log (the TLS 1.3 labels) and the suite from the
    ServerHello.
    """
    prefix = _LABEL_PREFIX.get(version)
    if prefix is None:
        raise ParseError(f"no key labels for QUIC version 0x{version:08x}")
    if cipher_suite not in QUIC_SUITES:
        raise ParseError(f"cipher suite 0x{cipher_suite:04x} cannot protect QUIC packets")
    suite = TLS13_SUITES[cipher_suite]
    if len(secret) != suite.hash_length:
        raise ParseError(f"a {len(secret)}-byte secret does not fit {suite.name}")
    length, hash_name = suite.key_length, suite.hash_name
    return PacketKeys(
        hkdf_expand_label(secret, prefix + b"key", b"", length, hash_name),
        hkdf_expand_label(secret, prefix + b"iv", b"", 12, hash_name),
        hkdf_expand_label(secret, prefix + b"hp", b"", length, hash_name),
        suite.aead,
    )


def initial_keys(version: int, dcid: bytes, label: bytes) -> PacketKeys:
    return packet_keys(version, initial_secret(version, dcid, label))


# ----- long headers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """One packet of a datagram, its protected part not yet opened.

    ``pn_offset`` is where the (protected) packet number starts and ``end`` where the packet ends, both
    relative to the datagram. Retry and Version Negotiation packets have no packet number
    (``pn_offset`` is ``end``); an unsupported version gives type ``None`` and runs to the datagram's end.
    A short header (``ONE_RTT``) has no version or SCID and always runs to the datagram's end.
    """

    packet_type: str | None
    version: int
    dcid: bytes
    scid: bytes
    token: bytes
    start: int
    pn_offset: int
    end: int


def parse_datagram(datagram: bytes) -> tuple[Header, ...]:
    """The long-header packets coalesced in one UDP datagram (RFC 9000 §12.2), in order.

    A short-header packet or the zero padding some stacks add after the last packet ends the list; a
    datagram that does not start with a long header gives ``()``. Malformed headers raise ParseError.
    """
    packets: list[Header] = []
    offset = 0
    while offset < len(datagram) and datagram[offset] & 0x80:
        packet = _long_header(datagram, offset)
        packets.append(packet)
        offset = packet.end
    return tuple(packets)


def short_header(datagram: bytes, start: int, version: int, dcid: bytes) -> Header | None:
    """The 1-RTT packet at ``start`` if it is addressed to ``dcid`` (whose length only the peers know)."""
    end = start + 1 + len(dcid)
    if start >= len(datagram) or datagram[start] & 0x80 or datagram[start + 1 : end] != dcid:
        return None
    return Header(ONE_RTT, version, dcid, b"", b"", start, end, len(datagram))


def _long_header(datagram: bytes, start: int) -> Header:
    reader = Reader(datagram, start)
    first = reader.pull_uint8("long header")
    version = reader.pull_uint32("version")
    dcid = reader.pull_opaque(1, "destination connection id")
    scid = reader.pull_opaque(1, "source connection id")
    if version == 0:
        # Version Negotiation: the rest of the datagram lists the server's versions.
        return Header(VERSION_NEGOTIATION, 0, dcid, scid, b"", start, len(datagram), len(datagram))
    if not supported(version):
        return Header(None, version, dcid, scid, b"", start, len(datagram), len(datagram))
    # The fixed bit (0x40) is not checked: a peer that advertised grease_quic_bit lets it vary (RFC 9287).
    if len(dcid) > MAX_CID_LENGTH or len(scid) > MAX_CID_LENGTH:
        raise ParseError("connection id longer than 20 bytes", start)
    packet_type = _TYPE_BITS[version][(first >> 4) & 0x03]
    if packet_type == RETRY:
        # Retry token, then a 16-byte integrity tag, to the datagram's end (RFC 9000 §17.2.5).
        if reader.remaining < _RETRY_TAG_LENGTH:
            raise ParseError("truncated Retry integrity tag", reader.position)
        token = reader.pull_bytes(reader.remaining - _RETRY_TAG_LENGTH, "retry token")
        return Header(RETRY, version, dcid, scid, token, start, len(datagram), len(datagram))
    token = reader.pull_bytes(pull_varint(reader, "token length"), "token") if packet_type == INITIAL else b""
    length = pull_varint(reader, "packet length")
    pn_offset = reader.position
    reader.pull_bytes(length, "packet payload")
    return Header(packet_type, version, dcid, scid, token, start, pn_offset, pn_offset + length)


# ----- protection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    """An opened QUIC packet: its header, full packet number and frames."""

    header: Header
    packet_number: int  # decoded against the largest packet number seen before (RFC 9000 §A.3)
    payload: bytes  # the frames


def unprotect(datagram: bytes, header: Header, keys: PacketKeys, largest: int = -1) -> Packet:
    """Remove header protection (RFC 9001 §5.4) and open the payload (§5.3).

    ``largest`` is the largest packet number already opened in this packet number space: the
    nonce needs the full number, the header carries only its low 1-4 bytes.
    """
    pn_offset, end = header.pn_offset, header.end
    sample_at = pn_offset + _MAX_PN_LENGTH
    if header.packet_type not in (INITIAL, ZERO_RTT, HANDSHAKE, ONE_RTT) or sample_at + _SAMPLE_LENGTH > end:
        raise ParseError("packet too short to sample for header protection", header.start)
    mask = keys.header_mask(datagram[sample_at : sample_at + _SAMPLE_LENGTH])
    # Long headers protect the low 4 bits of the first byte, short headers 5 (with the key phase).
    first = datagram[header.start] ^ (mask[0] & (0x1F if header.packet_type == ONE_RTT else 0x0F))
    pn_length = (first & 0x03) + 1
    truncated = 0
    for i in range(pn_length):
        truncated = truncated << 8 | (datagram[pn_offset + i] ^ mask[1 + i])
    payload_start = pn_offset + pn_length
    aad = bytes([first]) + datagram[header.start + 1 : pn_offset] + truncated.to_bytes(pn_length, "big")
    packet_number = decode_packet_number(truncated, pn_length * 8, largest)
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(len(keys.iv), "big")
    try:
        payload = keys.open(nonce, datagram[payload_start:end], aad)
    except InvalidTag:
        raise DecryptError("QUIC packet authentication failed", header.start) from None
    return Packet(header, packet_number, payload)


def decode_packet_number(truncated: int, bits: int, largest: int) -> int:
    """The packet number closest to ``largest + 1`` whose low ``bits`` are ``truncated`` (RFC 9000 §A.3)."""
    expected = largest + 1
    window = 1 << bits
    half = window // 2
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


# ----- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    """A CRYPTO frame: handshake bytes at their offset in the packet number space's stream."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClose:
    """A CONNECTION_CLOSE frame, transport (0x1c) or application (0x1d)."""

    error_code: int
    frame_type: int | None  # the frame that triggered a transport error; None for 0x1d (application)
    reason: bytes
    application: bool

    @property
    def tls_alert(self) -> int | None:
        """The TLS alert a CRYPTO_ERROR (0x0100-0x01ff) carries, else None."""
        if self.application or not CRYPTO_ERROR_BASE <= self.error_code <= CRYPTO_ERROR_BASE + 0xFF:
            return None
        return self.error_code - CRYPTO_ERROR_BASE


@dataclass(frozen=True, slots=True)
class Frames:
    """What the frames of one packet hold that the observer uses."""

    crypto: tuple[CryptoFrame, ...]
    close: ConnectionClose | None
    types: frozenset[int]  # every frame type present: tells what else the packet did (PING, HANDSHAKE_DONE)


HANDSHAKE_DONE: Final = 0x1E
NEW_TOKEN: Final = 0x07
NEW_CONNECTION_ID: Final = 0x18
# 1-RTT frames the observer skips, by how many varints their body holds (RFC 9000 §19, RFC 9221).
_VARINT_FRAMES: Final = {
    0x04: 3,  # RESET_STREAM
    0x05: 2,  # STOP_SENDING
    0x10: 1,  # MAX_DATA
    0x11: 2,  # MAX_STREAM_DATA
    0x12: 1,  # MAX_STREAMS (bidi)
    0x13: 1,  # MAX_STREAMS (uni)
    0x14: 1,  # DATA_BLOCKED
    0x15: 2,  # STREAM_DATA_BLOCKED
    0x16: 1,  # STREAMS_BLOCKED (bidi)
    0x17: 1,  # STREAMS_BLOCKED (uni)
    0x19: 1,  # RETIRE_CONNECTION_ID
    HANDSHAKE_DONE: 0,
}
_PATH_FRAMES: Final = frozenset({0x1A, 0x1B})  # PATH_CHALLENGE, PATH_RESPONSE: 8 bytes of data
_STREAM_FRAMES: Final = range(0x08, 0x10)  # low bits: OFF (0x04), LEN (0x02), FIN (0x01)
_DATAGRAM_FRAMES: Final = frozenset({0x30, 0x31})  # 0x31 has a length


def parse_frames(payload: bytes, application: bool = False) -> Frames:
    """The frames of a packet. Initial and Handshake packets may carry only PADDING, PING, ACK, CRYPTO
    and CONNECTION_CLOSE (RFC 9000 §12.4); ``application`` (1-RTT) allows the rest, which are skipped.
    An unknown frame type is a ParseError: frames carry no length, so nothing after it can be read."""
    reader = Reader(payload)
    crypto: list[CryptoFrame] = []
    close: ConnectionClose | None = None
    types: set[int] = set()
    while not reader.eof():
        frame_type = pull_varint(reader, "frame type")
        types.add(frame_type)
        if frame_type in (PADDING, PING):
            continue
        if frame_type in (ACK, ACK_ECN):
            _skip_ack(reader, frame_type == ACK_ECN)
        elif frame_type == CRYPTO:
            offset = pull_varint(reader, "CRYPTO offset")
            data = reader.pull_bytes(pull_varint(reader, "CRYPTO length"), "CRYPTO data")
            crypto.append(CryptoFrame(offset, data))
        elif frame_type in (CONNECTION_CLOSE, CONNECTION_CLOSE_APPLICATION):
            is_application = frame_type == CONNECTION_CLOSE_APPLICATION
            error_code = pull_varint(reader, "CONNECTION_CLOSE error code")
            trigger = None if is_application else pull_varint(reader, "CONNECTION_CLOSE frame type")
            reason = reader.pull_bytes(pull_varint(reader, "CONNECTION_CLOSE reason length"), "reason")
            close = ConnectionClose(error_code, trigger, reason, is_application)
        elif application:
            _skip_application_frame(reader, frame_type)
        else:
            raise ParseError(f"frame type 0x{frame_type:x} not allowed in Initial/Handshake", reader.position)
    return Frames(tuple(crypto), close, frozenset(types))


def _skip_application_frame(reader: Reader, frame_type: int) -> None:
    if frame_type in _VARINT_FRAMES:
        for _ in range(_VARINT_FRAMES[frame_type]):
            pull_varint(reader, "frame field")
    elif frame_type in _STREAM_FRAMES:
        pull_varint(reader, "STREAM id")
        if frame_type & 0x04:
            pull_varint(reader, "STREAM offset")
        if frame_type & 0x02:
            reader.pull_bytes(pull_varint(reader, "STREAM length"), "STREAM data")
        else:
            reader.pull_rest()  # no length: the data runs to the end of the packet
    elif frame_type == NEW_TOKEN:
        reader.pull_bytes(pull_varint(reader, "NEW_TOKEN length"), "NEW_TOKEN token")
    elif frame_type == NEW_CONNECTION_ID:
        pull_varint(reader, "NEW_CONNECTION_ID sequence")
        pull_varint(reader, "NEW_CONNECTION_ID retire prior to")
        reader.pull_opaque(1, "NEW_CONNECTION_ID connection id")
        reader.pull_bytes(16, "NEW_CONNECTION_ID stateless reset token")
    elif frame_type in _PATH_FRAMES:
        reader.pull_bytes(8, "PATH data")
    elif frame_type in _DATAGRAM_FRAMES:
        if frame_type & 0x01:
            reader.pull_bytes(pull_varint(reader, "DATAGRAM length"), "DATAGRAM data")
        else:
            reader.pull_rest()
    else:
        raise ParseError(f"unknown frame type 0x{frame_type:x}", reader.position)


def _skip_ack(reader: Reader, ecn: bool) -> None:
    """ACK: largest, delay, range count, first range, count x (gap, length), then ECN counts for 0x03."""
    pull_varint(reader, "ACK largest")
    pull_varint(reader, "ACK delay")
    ranges = pull_varint(reader, "ACK range count")
    pull_varint(reader, "ACK first range")
    for _ in range(ranges):  # each range needs at least two bytes, so a bogus count fails fast
        pull_varint(reader, "ACK gap")
        pull_varint(reader, "ACK range length")
    if ecn:
        for what in ("ECT0", "ECT1", "ECN-CE"):
            pull_varint(reader, f"ACK {what} count")


# ----- CRYPTO stream ------------------------------------------------------------------------------


class CryptoStream:
    """Reorders CRYPTO frame data by offset: any order, duplicates and overlaps, within ``max_bytes``.

    Data beyond ``max_bytes`` from the stream's start is dropped and ``capped`` set: a handshake flight
    the sensor follows (hellos, certificates) fits well below the default.
    """

    __slots__ = ("_chunks", "_pending", "capped", "delivered", "duplicates", "max_bytes")

    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self.delivered = 0  # offset of the first byte not yet handed out
        self._chunks: dict[int, bytes] = {}  # offset -> data beyond ``delivered``, waiting for a gap
        self._pending = 0  # bytes in _chunks: overlapping chunks could otherwise hold more than max_bytes
        self.duplicates = 0
        self.capped = False

    def add(self, offset: int, data: bytes) -> bytes:
        """The bytes that became contiguous thanks to this frame (possibly empty)."""
        end = offset + len(data)
        if end > self.max_bytes:
            self.capped = True
            data = data[: max(0, self.max_bytes - offset)]
            end = offset + len(data)
        if end <= self.delivered:
            self.duplicates += bool(data)
            return b""
        held = len(self._chunks.get(offset, b""))
        if held >= len(data):
            self.duplicates += 1  # a retransmission of data still waiting for an earlier gap
        else:
            if self._pending - held + len(data) > self.max_bytes:
                self.capped = True
                return b""
            self._chunks[offset] = data
            self._pending += len(data) - held
        out = bytearray()
        for start in sorted(self._chunks):  # ascending: one pass follows every chunk the new data joins
            if start > self.delivered:
                break
            chunk = self._chunks.pop(start)
            self._pending -= len(chunk)
            if start + len(chunk) > self.delivered:
                out += chunk[self.delivered - start :]
                self.delivered = start + len(chunk)
        return bytes(out)

    @property
    def pending_bytes(self) -> int:
        return self._pending


# ----- transport parameters -----------------------------------------------------------------------

# RFC 9000 §18.2, RFC 9221 (datagrams), RFC 9368 (version information), RFC 9287 (grease_quic_bit).
TRANSPORT_PARAMETER_NAMES: Final = {
    0x00: "original_destination_connection_id",
    0x01: "max_idle_timeout",
    0x02: "stateless_reset_token",
    0x03: "max_udp_payload_size",
    0x04: "initial_max_data",
    0x05: "initial_max_stream_data_bidi_local",
    0x06: "initial_max_stream_data_bidi_remote",
    0x07: "initial_max_stream_data_uni",
    0x08: "initial_max_streams_bidi",
    0x09: "initial_max_streams_uni",
    0x0A: "ack_delay_exponent",
    0x0B: "max_ack_delay",
    0x0C: "disable_active_migration",
    0x0D: "preferred_address",
    0x0E: "active_connection_id_limit",
    0x0F: "initial_source_connection_id",
    0x10: "retry_source_connection_id",
    0x11: "version_information",
    0x20: "max_datagram_frame_size",
    0x2AB2: "grease_quic_bit",
}
_INTEGER_PARAMETERS: Final = frozenset({0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x20})


@dataclass(frozen=True, slots=True)
class TransportParameter:
    """One QUIC transport parameter of a ClientHello: integer values decoded, the others as sent."""

    id: int
    value: int | bytes  # integer parameters decoded, the others raw (empty for flags)

    @property
    def name(self) -> str:
        if self.id % 31 == 27:  # reserved ids 31 * N + 27 (RFC 9000 §18.1) are GREASE
            return "GREASE"
        return TRANSPORT_PARAMETER_NAMES.get(self.id, f"unknown_0x{self.id:x}")


def parse_transport_parameters(data: bytes) -> tuple[TransportParameter, ...]:
    """The quic_transport_parameters extension (0x39) body: (id varint, length varint, value)*."""
    reader = Reader(data)
    parameters: list[TransportParameter] = []
    while not reader.eof():
        parameter_id = pull_varint(reader, "transport parameter id")
        value = reader.pull_bytes(pull_varint(reader, "transport parameter length"), "transport parameter")
        if parameter_id in _INTEGER_PARAMETERS:
            inner = Reader(value)
            number = pull_varint(inner, TRANSPORT_PARAMETER_NAMES[parameter_id])
            if not inner.eof():
                raise ParseError(f"trailing bytes in {TRANSPORT_PARAMETER_NAMES[parameter_id]}", reader.position)
            parameters.append(TransportParameter(parameter_id, number))
        else:
            parameters.append(TransportParameter(parameter_id, value))
    return tuple(parameters)
