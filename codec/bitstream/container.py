"""The talkcodec file: a header, then the packets exactly as they would be sent.

Layout::

    magic        4 bytes  b"TKCF"
    version      1 byte   (1)
    meta length  varint   <= MAX_METADATA bytes
    metadata     UTF-8 JSON object (source name, duration, tool version, ...)
    records      repeated: varint length (>= 1) + one encoded packet of that length
    end marker   varint 0

Reading is streaming and strict: every record must hold exactly one valid packet, counts
and sizes are bounded, a file that stops before the end marker raises ``TruncatedError``
and bytes after the end marker raise ``CorruptError``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from codec.bitstream.packet import (
    MAX_PAYLOAD,
    Packet,
    decode_datagram,
    encode_packet,
    encode_varint,
)
from codec.errors import CorruptError, LimitExceededError, TruncatedError, UnsupportedVersionError

FILE_MAGIC = b"TKCF"
FILE_VERSION = 1
MAX_METADATA = 64 * 1024
MAX_RECORD = MAX_PAYLOAD + 16
MAX_PACKETS = 2_000_000  # > 5 hours of audio + video packets


class ContainerWriter:
    """Streaming writer: ``write(packet)`` as packets come, ``close()`` writes the end."""

    def __init__(self, fh: IO[bytes], metadata: dict[str, Any] | None = None) -> None:
        meta = json.dumps(metadata or {}, sort_keys=True, separators=(",", ":")).encode()
        if len(meta) > MAX_METADATA:
            raise ValueError(f"metadata of {len(meta)} bytes exceeds {MAX_METADATA}")
        self._fh = fh
        self.count = 0
        self.bytes_written = 0
        self._emit(FILE_MAGIC + bytes([FILE_VERSION]) + encode_varint(len(meta)) + meta)

    def _emit(self, data: bytes) -> None:
        self._fh.write(data)
        self.bytes_written += len(data)

    def write(self, packet: Packet) -> None:
        if self.count >= MAX_PACKETS:
            raise ValueError(f"more than {MAX_PACKETS} packets")
        data = encode_packet(packet)
        self._emit(encode_varint(len(data)) + data)
        self.count += 1

    def close(self) -> None:
        self._emit(encode_varint(0))
        self._fh.flush()


def write_container(path: str | os.PathLike[str], packets: Iterable[Packet],
                    metadata: dict[str, Any] | None = None) -> int:
    """Write a file; returns its size in bytes."""
    with open(path, "wb") as fh:
        writer = ContainerWriter(fh, metadata)
        for packet in packets:
            writer.write(packet)
        writer.close()
        return writer.bytes_written


def container_bytes(packets: Iterable[Packet], metadata: dict[str, Any] | None = None) -> bytes:
    buf = io.BytesIO()
    writer = ContainerWriter(buf, metadata)
    for packet in packets:
        writer.write(packet)
    writer.close()
    return buf.getvalue()


class ContainerReader:
    """Streaming reader: the metadata on construction, then iterate for packets."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.bytes_read = 0
        self.count = 0
        self.ended = False
        magic = self._read(4, "file header")
        if magic != FILE_MAGIC:
            raise CorruptError("not a talkcodec file (bad magic)")
        version = self._read(1, "file header")[0]
        if version != FILE_VERSION:
            raise UnsupportedVersionError(f"file version {version} (this reader: {FILE_VERSION})")
        n = self._read_varint(MAX_METADATA, "metadata length")
        self.metadata = _parse_metadata(self._read(n, "metadata"))

    def _read(self, n: int, what: str) -> bytes:
        data = self._fh.read(n)
        self.bytes_read += len(data)
        if len(data) != n:
            raise TruncatedError(f"file ends inside the {what}")
        return data

    def _read_varint(self, limit: int, what: str) -> int:
        value = 0
        for i in range(4):
            byte = self._read(1, what)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise CorruptError(f"non-minimal {what}")
                if value > limit:
                    raise LimitExceededError(f"{what} {value} exceeds {limit}")
                return value
        raise CorruptError(f"{what} varint too long")

    def __iter__(self) -> Iterator[Packet]:
        while not self.ended:
            n = self._read_varint(MAX_RECORD, "packet record length")
            if n == 0:
                self.ended = True
                if self._fh.read(1):
                    raise CorruptError("trailing bytes after the end of the stream")
                return
            if self.count >= MAX_PACKETS:
                raise LimitExceededError(f"more than {MAX_PACKETS} packets")
            packet = decode_datagram(self._read(n, "packet record"))
            self.count += 1
            yield packet


def _parse_metadata(raw: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CorruptError("file metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CorruptError("file metadata is not a JSON object")
    return meta


def read_container(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Packet]]:
    with open(path, "rb") as fh:
        reader = ContainerReader(fh)
        return reader.metadata, list(reader)


def parse_container(data: bytes) -> tuple[dict[str, Any], list[Packet]]:
    reader = ContainerReader(io.BytesIO(data))
    return reader.metadata, list(reader)
