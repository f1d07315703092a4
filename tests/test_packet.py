"""Packets: round trips, compact header, self-delimiting, strict rejection of bad bytes."""

from __future__ import annotations

import pytest

from codec.bitstream.packet import (
    MAGIC,
    MAX_PAYLOAD,
    Packet,
    PacketFlag,
    StreamKind,
    decode_datagram,
    decode_packet,
    decode_varint,
    encode_packet,
    encode_varint,
    header_size,
    parse_packets,
    seq_after,
)
from codec.errors import (
    BitstreamError,
    CorruptError,
    LimitExceededError,
    TruncatedError,
    UnsupportedVersionError,
)

SAMPLES = [
    Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, b"\x01\x02"),
    Packet(StreamKind.IDENTITY, 1, 0, PacketFlag.REFRESH, bytes(range(256)) * 40),
    Packet(StreamKind.LOWRES, 65535, 1_999_800, PacketFlag.INTRA, b"\x7f" * 30),
    Packet(StreamKind.AUDIO, 1234, 2**32 - 1, PacketFlag.END, b""),
]


@pytest.mark.parametrize("packet", SAMPLES)
def test_round_trip(packet: Packet) -> None:
    data = encode_packet(packet)
    assert decode_datagram(data) == packet
    assert len(data) == header_size(packet) + len(packet.payload)


def test_lowres_header_is_eleven_bytes_below_34_minutes() -> None:
    p = Packet(StreamKind.LOWRES, 300, 34 * 60 * 1000, PacketFlag.NONE, b"x" * 20)
    assert header_size(p) == 11


def test_concatenation_parses_back() -> None:
    data = b"".join(encode_packet(p) for p in SAMPLES)
    assert parse_packets(data) == SAMPLES
    first, end = decode_packet(data)
    assert first == SAMPLES[0] and end == len(encode_packet(SAMPLES[0]))


def test_datagram_rejects_trailing_bytes() -> None:
    with pytest.raises(CorruptError):
        decode_datagram(encode_packet(SAMPLES[0]) + b"\x00")


def test_truncation_at_every_offset() -> None:
    data = encode_packet(SAMPLES[2])
    for n in range(len(data)):
        with pytest.raises(TruncatedError):
            decode_datagram(data[:n])


def test_bad_magic_version_kind_and_crc() -> None:
    data = bytearray(encode_packet(SAMPLES[2]))
    bad = bytearray(data)
    bad[0] ^= 0xFF
    with pytest.raises(CorruptError):
        decode_datagram(bytes(bad))
    bad = bytearray(data)
    bad[1] = (2 << 4) | int(StreamKind.LOWRES)
    with pytest.raises(UnsupportedVersionError):
        decode_datagram(bytes(bad))
    bad = bytearray(data)
    bad[1] = (1 << 4) | 9
    with pytest.raises(CorruptError, match="kind"):
        decode_datagram(bytes(bad))
    for i in range(2, len(data)):  # every single-byte change after the kind byte
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(BitstreamError):
            decode_datagram(bytes(bad))


def test_oversized_length_is_a_limit_error() -> None:
    head = bytes([MAGIC, 0x12, 0, 0, 0, 0]) + encode_varint(MAX_PAYLOAD + 1)
    with pytest.raises(LimitExceededError):
        decode_packet(head + b"\x00" * 16)


def test_varints_are_minimal() -> None:
    for v in (0, 1, 127, 128, 16383, 16384, 2**32 - 1):
        assert decode_varint(encode_varint(v), 0) == (v, len(encode_varint(v)))
    with pytest.raises(CorruptError):
        decode_varint(b"\x80\x00", 0)
    with pytest.raises(CorruptError):
        decode_varint(b"\xff" * 6, 0)


def test_encoder_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        encode_packet(Packet(StreamKind.LOWRES, 65536, 0))
    with pytest.raises(ValueError):
        encode_packet(Packet(StreamKind.LOWRES, 0, -1))
    with pytest.raises(ValueError):
        encode_packet(Packet(StreamKind.LOWRES, 0, 0, PacketFlag.NONE, b"x" * (MAX_PAYLOAD + 1)))


def test_sequence_numbers_wrap() -> None:
    assert seq_after(0, 65535)
    assert seq_after(5, 3) and not seq_after(3, 5) and not seq_after(7, 7)
