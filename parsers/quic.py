"""QUIC v1/v2 long-header packets: Initial unprotection and CRYPTO-frame reassembly (RFC 9000, 9001, 9369).

Sans-IO like the rest of :mod:`parsers`: bytes in, frozen values out, and :class:`ParseError` (or its
:class:`~parsers.decrypt.DecryptError` subclass when authentication fails) for anything malformed.

Initial packets are protected with keys derived from the Destination Connection ID of the client's first
Initial, which travels in clear: anyone on the path can read the ClientHello and ServerHello they carry.
Only what a passive observer needs is here: the long header (short-header 1-RTT packets end a datagram,
since their length is implicit), header protection with AES, AES-128-GCM payloads, and the frames an
Initial or Handshake packet may carry (RFC 9000 §12.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from parsers.buffer import Reader
from parsers.decrypt import DecryptError, hkdf_expand_label
from parsers.errors import ParseError

QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF
VERSION_NAMES: Final = {QUIC_V1: "v1", QUIC_V2: "v2"}

# Packet types, named the same for both versions; the wire bits differ (RFC 9369 §3.2).
INITIAL: Final = "initial"
ZERO_RTT: Final = "0rtt"
HANDSHAKE: Final = "handshake"
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
_TAG_LENGTH: Final = 16
_MAX_PN_LENGTH: Final = 4
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
    length = 1 << (first >> 6)
    value = first & 0x3F
    for byte in reader.pull_bytes(length - 1, what):
        value = value << 8 | byte
    return value


# ----- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketKeys:
    """AES-128-GCM packet protection for one direction (key 16, iv 12, header protection 16)."""

    key: bytes
    iv: bytes
    hp: bytes

    def __repr__(self) -> str:  # key material never reaches logs
        return "PacketKeys(<redacted>)"


def initial_secret(version: int, dcid: bytes, label: bytes) -> bytes:
    """client_initial_secret (``CLIENT_IN``) or server_initial_secret (``SERVER_IN``) for ``dcid``."""
    salt = _SALTS.get(version)
    if salt is None:
        raise ParseError(f"no Initial salt for QUIC version 0x{version:08x}")
    extract = hmac.HMAC(salt, hashes.SHA256())  # HKDF-Extract(salt, IKM) = HMAC-Hash(salt, IKM)
    extract.update(dcid)
    return hkdf_expand_label(extract.finalize(), label, b"", 32, "sha256")


def packet_keys(version: int, secret: bytes, key_length: int = 16) -> PacketKeys:
    """The key, iv and hp of one direction from its traffic secret, with the version's labels."""
    prefix = _LABEL_PREFIX.get(version)
    if prefix is None:
        raise ParseError(f"no key labels for QUIC version 0x{version:08x}")
    return PacketKeys(
        hkdf_expand_label(secret, prefix + b"key", b"", key_length, "sha256"),
        hkdf_expand_label(secret, prefix + b"iv", b"", 12, "sha256"),
        hkdf_expand_label(secret, prefix + b"hp", b"", key_length, "sha256"),
    )


def initial_keys(version: int, dcid: bytes, label: bytes) -> PacketKeys:
    return packet_keys(version, initial_secret(version, dcid, label))


# ----- long headers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LongHeader:
    """One long-header packet of a datagram, its protected part not yet opened.

    ``pn_offset`` is where the (protected) packet number starts and ``end`` where the packet ends, both
    relative to the datagram. Retry and Version Negotiation packets have no packet number
    (``pn_offset`` is ``end``); an unsupported version gives type ``None`` and runs to the datagram's end.
    """

    packet_type: str | None
    version: int
    dcid: bytes
    scid: bytes
    token: bytes
    start: int
    pn_offset: int
    end: int


def parse_datagram(datagram: bytes) -> tuple[LongHeader, ...]:
    """The long-header packets coalesced in one UDP datagram (RFC 9000 §12.2), in order.

    A short-header packet or the zero padding some stacks add after the last packet ends the list; a
    datagram that does not start with a long header gives ``()``. Malformed headers raise ParseError.
    """
    packets: list[LongHeader] = []
    offset = 0
    while offset < len(datagram) and datagram[offset] & 0x80:
        packet = _long_header(datagram, offset)
        packets.append(packet)
        offset = packet.end
    return tuple(packets)


def _long_header(datagram: bytes, start: int) -> LongHeader:
    reader = Reader(datagram, start)
    first = reader.pull_uint8("long header")
    version = reader.pull_uint32("version")
    dcid = reader.pull_opaque(1, "destination connection id")
    scid = reader.pull_opaque(1, "source connection id")
    if version == 0:
        # Version Negotiation: the rest of the datagram lists the server's versions.
        return LongHeader(VERSION_NEGOTIATION, 0, dcid, scid, b"", start, len(datagram), len(datagram))
    if not supported(version):
        return LongHeader(None, version, dcid, scid, b"", start, len(datagram), len(datagram))
    if not first & 0x40:
        raise ParseError("QUIC fixed bit is zero", start)
    if len(dcid) > MAX_CID_LENGTH or len(scid) > MAX_CID_LENGTH:
        raise ParseError("connection id longer than 20 bytes", start)
    packet_type = _TYPE_BITS[version][(first >> 4) & 0x03]
    if packet_type == RETRY:
        # Retry token, then a 16-byte integrity tag, to the datagram's end (RFC 9000 §17.2.5).
        if reader.remaining < _RETRY_TAG_LENGTH:
            raise ParseError("truncated Retry integrity tag", reader.position)
        token = reader.pull_bytes(reader.remaining - _RETRY_TAG_LENGTH, "retry token")
        return LongHeader(RETRY, version, dcid, scid, token, start, len(datagram), len(datagram))
    token = reader.pull_bytes(pull_varint(reader, "token length"), "token") if packet_type == INITIAL else b""
    length = pull_varint(reader, "packet length")
    pn_offset = reader.position
    reader.pull_bytes(length, "packet payload")
    return LongHeader(packet_type, version, dcid, scid, token, start, pn_offset, pn_offset + length)


# ----- protection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    header: LongHeader
    packet_number: int  # truncated packet number as sent (the observer does not track the full space)
    payload: bytes  # the frames


def unprotect(datagram: bytes, header: LongHeader, keys: PacketKeys) -> Packet:
    """Remove header protection (AES, RFC 9001 §5.4.3) and open the AES-128-GCM payload (§5.3)."""
    pn_offset, end = header.pn_offset, header.end
    sample_at = pn_offset + _MAX_PN_LENGTH
    if header.packet_type not in (INITIAL, ZERO_RTT, HANDSHAKE) or sample_at + _SAMPLE_LENGTH > end:
        raise ParseError("packet too short to sample for header protection", header.start)
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(datagram[sample_at : sample_at + _SAMPLE_LENGTH]) + encryptor.finalize()
    first = datagram[header.start] ^ (mask[0] & 0x0F)
    pn_length = (first & 0x03) + 1
    packet_number = 0
    for i in range(pn_length):
        packet_number = packet_number << 8 | (datagram[pn_offset + i] ^ mask[1 + i])
    payload_start = pn_offset + pn_length
    aad = bytes([first]) + datagram[header.start + 1 : pn_offset] + packet_number.to_bytes(pn_length, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(len(keys.iv), "big")
    try:
        payload = AESGCM(keys.key).decrypt(nonce, datagram[payload_start:end], aad)
    except InvalidTag:
        raise DecryptError("QUIC packet authentication failed", header.start) from None
    return Packet(header, packet_number, payload)


# ----- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClose:
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
    crypto: tuple[CryptoFrame, ...]
    close: ConnectionClose | None
    ping: bool


def parse_frames(payload: bytes) -> Frames:
    """The frames of an Initial or Handshake packet; any other frame type is a ParseError there."""
    reader = Reader(payload)
    crypto: list[CryptoFrame] = []
    close: ConnectionClose | None = None
    ping = False
    while not reader.eof():
        frame_type = pull_varint(reader, "frame type")
        if frame_type == PADDING:
            continue
        if frame_type == PING:
            ping = True
        elif frame_type in (ACK, ACK_ECN):
            _skip_ack(reader, frame_type == ACK_ECN)
        elif frame_type == CRYPTO:
            offset = pull_varint(reader, "CRYPTO offset")
            data = reader.pull_bytes(pull_varint(reader, "CRYPTO length"), "CRYPTO data")
            crypto.append(CryptoFrame(offset, data))
        elif frame_type in (CONNECTION_CLOSE, CONNECTION_CLOSE_APPLICATION):
            application = frame_type == CONNECTION_CLOSE_APPLICATION
            error_code = pull_varint(reader, "CONNECTION_CLOSE error code")
            trigger = None if application else pull_varint(reader, "CONNECTION_CLOSE frame type")
            reason = reader.pull_bytes(pull_varint(reader, "CONNECTION_CLOSE reason length"), "reason")
            close = ConnectionClose(error_code, trigger, reason, application)
        else:
            raise ParseError(f"frame type 0x{frame_type:x} not allowed in Initial/Handshake", reader.position)
    return Frames(tuple(crypto), close, ping)


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
