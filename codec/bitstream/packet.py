"""talkcodec packets: a compact, versioned, self-delimiting header with a CRC.

Built for an unreliable, unordered WebRTC data channel (one datagram = one packet) and for
files (a concatenation of packets parses back). Layout, in order::

    magic      1 byte   0xC5
    ver|kind   1 byte   format version (high nibble, 1) | StreamKind (low nibble)
    flags      1 byte   PacketFlag bits
    seq        2 bytes  little endian, counted per stream kind, wraps at 65536
    timestamp  varint   milliseconds since call start (LEB128, < 2**32)
    length     varint   payload length in bytes (LEB128, <= MAX_PAYLOAD)
    payload    length bytes
    crc        2 bytes  CRC-16/CCITT-FALSE of everything before it, big endian

An 8x8 frame packet pays 11 header bytes for timestamps below 34.9 minutes (2**21 ms). Varints must be
minimal, so a packet that parses re-encodes to exactly the same bytes.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from codec.errors import CorruptError, LimitExceededError, TruncatedError, UnsupportedVersionError

MAGIC = 0xC5
VERSION = 1
MAX_PAYLOAD = 1 << 20
MAX_TIMESTAMP_MS = (1 << 32) - 1
SEQ_MODULO = 1 << 16
CRC_SIZE = 2


class StreamKind(IntEnum):
    CONFIG = 0
    IDENTITY = 1
    LOWRES = 2
    AUDIO = 3
    MOTION = 4  # the motion code's anchor (and groups sent on their own)


class PacketFlag(IntFlag):
    NONE = 0
    INTRA = 1  # a low-res frame decodable on its own (keyframe)
    REFRESH = 2  # an identity frame replacing an earlier one
    END = 4  # the last packet of the stream
    MOTION = 8  # a LOWRES payload that carries a motion group after the 8x8 frame
    REDUNDANT = 16  # a LOWRES payload that also carries the previous one (redundancy.py)


@dataclass(frozen=True)
class Packet:
    kind: StreamKind
    seq: int
    timestamp_ms: int
    flags: PacketFlag = PacketFlag.NONE
    payload: bytes = b""

    @property
    def is_intra(self) -> bool:
        return bool(self.flags & PacketFlag.INTRA)


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Minimal LEB128 at data[pos:]; returns (value, next position)."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise TruncatedError("bytes end inside a varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CorruptError("non-minimal varint")
            return value, pos + i + 1
    raise CorruptError("varint too long")


def crc16(data: bytes | memoryview) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def encode_packet(packet: Packet) -> bytes:
    if not 0 <= packet.seq < SEQ_MODULO:
        raise ValueError(f"seq {packet.seq} out of range")
    if not 0 <= packet.timestamp_ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp {packet.timestamp_ms} out of range")
    if len(packet.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(packet.payload)} bytes exceeds {MAX_PAYLOAD}")
    if not 0 <= int(packet.flags) < 256:
        raise ValueError("flags must fit one byte")
    head = bytes(
        [MAGIC, (VERSION << 4) | int(packet.kind), int(packet.flags), packet.seq & 0xFF,
         packet.seq >> 8]
    )
    body = (
        head
        + encode_varint(packet.timestamp_ms)
        + encode_varint(len(packet.payload))
        + bytes(packet.payload)
    )
    return body + crc16(body).to_bytes(2, "big")


def decode_packet(data: bytes | memoryview, pos: int = 0) -> tuple[Packet, int]:
    """Parse one packet at data[pos:]; returns (packet, position after it)."""
    data = memoryview(data)
    if pos >= len(data):
        raise TruncatedError("no packet: bytes end")
    if data[pos] != MAGIC:
        raise CorruptError(f"bad packet magic 0x{data[pos]:02x}")
    if pos + 5 > len(data):
        raise TruncatedError("bytes end inside a packet header")
    version, kind_code = data[pos + 1] >> 4, data[pos + 1] & 0x0F
    if version != VERSION:
        raise UnsupportedVersionError(f"packet format version {version} (this decoder: {VERSION})")
    try:
        kind = StreamKind(kind_code)
    except ValueError:
        raise CorruptError(f"unknown stream kind {kind_code}") from None
    flags = PacketFlag(data[pos + 2])
    seq = data[pos + 3] | (data[pos + 4] << 8)
    timestamp, p = decode_varint(data, pos + 5, max_bytes=5)
    if timestamp > MAX_TIMESTAMP_MS:
        raise CorruptError("timestamp out of range")
    length, p = decode_varint(data, p, max_bytes=3)
    if length > MAX_PAYLOAD:
        raise LimitExceededError(f"packet payload of {length} bytes exceeds {MAX_PAYLOAD}")
    end = p + length
    if end + CRC_SIZE > len(data):
        raise TruncatedError(f"packet needs {end + CRC_SIZE - pos} bytes, {len(data) - pos} left")
    expected = int.from_bytes(data[end : end + CRC_SIZE], "big")
    if crc16(data[pos:end]) != expected:
        raise CorruptError("packet checksum mismatch")
    packet = Packet(kind, seq, timestamp, flags, bytes(data[p:end]))
    return packet, end + CRC_SIZE


def decode_datagram(data: bytes | memoryview) -> Packet:
    """Exactly one packet (a data-channel message); trailing bytes are an error."""
    packet, end = decode_packet(data)
    if end != len(data):
        raise CorruptError(f"{len(data) - end} trailing bytes after the packet")
    return packet


def parse_packets(data: bytes | memoryview) -> list[Packet]:
    """A concatenation of packets, back into packets."""
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        packet, pos = decode_packet(data, pos)
        packets.append(packet)
    return packets


def header_size(packet: Packet) -> int:
    """Bytes this packet costs beyond its payload (header and CRC)."""
    return (
        5 + len(encode_varint(packet.timestamp_ms)) + len(encode_varint(len(packet.payload)))
        + CRC_SIZE
    )


def seq_after(a: int, b: int) -> bool:
    """True when sequence number a comes after b (modulo 2**16, serial-number arithmetic)."""
    d = (a - b) % SEQ_MODULO
    return 0 < d < SEQ_MODULO // 2
