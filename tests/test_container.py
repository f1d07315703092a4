"""The file container: round trip, streaming reads, strict ends, bounded metadata."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from codec.bitstream.container import (
    FILE_MAGIC,
    ContainerReader,
    ContainerWriter,
    container_bytes,
    parse_container,
    read_container,
    write_container,
)
from codec.bitstream.packet import Packet, PacketFlag, StreamKind, encode_varint
from codec.errors import (
    BitstreamError,
    CorruptError,
    LimitExceededError,
    TruncatedError,
    UnsupportedVersionError,
)

PACKETS = [
    Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, b"\x01\x80\x02\x08\x05\x18\x10\x0a\x01"),
    Packet(StreamKind.IDENTITY, 0, 0, PacketFlag.NONE, b"\x00\x00" + b"img" * 50),
    Packet(StreamKind.LOWRES, 0, 0, PacketFlag.INTRA, b"\x42" * 60),
    Packet(StreamKind.AUDIO, 0, 0, PacketFlag.NONE, b"\x08" * 15),
    Packet(StreamKind.LOWRES, 1, 200, PacketFlag.NONE, b""),
    Packet(StreamKind.CONFIG, 1, 240, PacketFlag.END, b"\x01"),
]
META = {"encoder": "talkcodec test", "source": "clip.mp4"}


def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.tc"
    size = write_container(path, PACKETS, META)
    assert size == path.stat().st_size
    meta, packets = read_container(path)
    assert meta == META and packets == PACKETS


def test_streaming_reader_yields_as_it_reads() -> None:
    data = container_bytes(PACKETS, META)
    fh = io.BytesIO(data)
    reader = ContainerReader(fh)
    assert reader.metadata == META
    it = iter(reader)
    assert next(it) == PACKETS[0]
    assert fh.tell() < len(data)  # not slurped
    assert list(it) == PACKETS[1:] and reader.ended and reader.bytes_read == len(data)


def test_truncation_at_every_byte_offset() -> None:
    data = container_bytes(PACKETS, META)
    for n in range(len(data)):
        with pytest.raises(TruncatedError):
            parse_container(data[:n])


def test_trailing_garbage_is_reported() -> None:
    with pytest.raises(CorruptError, match="trailing"):
        parse_container(container_bytes(PACKETS) + b"\x00")


def test_header_checks() -> None:
    data = container_bytes(PACKETS)
    with pytest.raises(CorruptError, match="magic"):
        parse_container(b"RIFF" + data[4:])
    with pytest.raises(UnsupportedVersionError):
        parse_container(FILE_MAGIC + b"\x07" + data[5:])
    with pytest.raises(LimitExceededError):
        parse_container(FILE_MAGIC + b"\x01" + encode_varint(10**6) + b"{}")
    for meta in (b"[1]", b"\xff\xfe", b"{", b"[" * 5000 + b"]" * 5000):
        raw = FILE_MAGIC + b"\x01" + encode_varint(len(meta)) + meta + b"\x00"
        with pytest.raises(CorruptError):
            parse_container(raw)


def test_records_must_hold_exactly_one_valid_packet() -> None:
    head = container_bytes([])[:-1]
    one = container_bytes([PACKETS[2]])
    record = one[len(head):-1]
    with pytest.raises(CorruptError):  # record length one byte too long: trailing byte
        parse_container(head + encode_varint(record[0] + 1) + record[1:] + b"\x00\x00")
    with pytest.raises(LimitExceededError):
        parse_container(head + encode_varint(1 << 26) + b"\x00")
    flipped = bytearray(one)
    flipped[-3] ^= 0x40  # inside the packet: caught by its CRC
    with pytest.raises(BitstreamError):
        parse_container(bytes(flipped))


def test_writer_counts_and_refuses_huge_metadata() -> None:
    buf = io.BytesIO()
    writer = ContainerWriter(buf, META)
    for p in PACKETS:
        writer.write(p)
    writer.close()
    assert writer.count == len(PACKETS) and writer.bytes_written == len(buf.getvalue())
    with pytest.raises(ValueError):
        ContainerWriter(io.BytesIO(), {"x": "y" * 70_000})
