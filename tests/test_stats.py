"""Bit breakdown: parts add up, duration from the END packet, rates and bits per pixel."""

from __future__ import annotations

import pytest

from codec.bitstream.container import container_bytes
from codec.bitstream.packet import Packet, PacketFlag, StreamKind, encode_packet
from codec.bitstream.stats import format_stats, stream_stats

PACKETS = [
    Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, b"c" * 12),
    Packet(StreamKind.IDENTITY, 0, 0, PacketFlag.NONE, b"i" * 4000),
    *[Packet(StreamKind.LOWRES, k, 200 * k, PacketFlag.NONE, b"l" * 20) for k in range(10)],
    *[Packet(StreamKind.AUDIO, k, 20 * k, PacketFlag.NONE, b"a" * 20) for k in range(100)],
    Packet(StreamKind.CONFIG, 1, 2000, PacketFlag.END, b"c" * 12),
]


def test_parts_add_up_and_rates() -> None:
    size = len(container_bytes(PACKETS))
    st = stream_stats(iter(PACKETS), file_bytes=size)
    assert st["duration_s"] == 2.0
    assert st["identity"]["bits"] == 8 * 4000
    assert st["lowres"]["kbit_per_s"] == pytest.approx(10 * 20 * 8 / 2 / 1000)
    lowres_packets = sum(len(encode_packet(p)) for p in PACKETS if p.kind is StreamKind.LOWRES)
    assert st["lowres_with_headers"]["bits"] == 8 * lowres_packets
    parts = st["identity"]["bits"] + st["lowres"]["bits"] + st["audio"]["bits"]
    assert parts + st["overhead"]["bits"] == st["total"]["bits"] == 8 * size
    assert st["total"]["bits_per_pixel"] == pytest.approx(8 * size / (256 * 256 * 50))
    assert st["packets"] == {"config": 2, "identity": 1, "lowres": 10, "audio": 100,
                             "motion": 0}
    assert "total without identity" in format_stats(st)


def test_duration_without_end_packet_or_from_metadata() -> None:
    assert stream_stats(PACKETS[:-1])["duration_s"] == pytest.approx(1.98 + 0.04)
    assert stream_stats(PACKETS, {"duration_s": 4.0})["duration_s"] == 4.0


def test_the_motion_code_is_split_out_of_the_8x8_packets() -> None:
    from codec.bitstream.motion_codec import GROUP_TYPE, bundle, encode_anchor

    anchor = encode_anchor(0, 1, __import__("numpy").zeros((68, 2)))
    packets = [
        Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, b"c" * 12),
        Packet(StreamKind.IDENTITY, 0, 0, PacketFlag.NONE, b"i" * 4000),
        Packet(StreamKind.MOTION, 0, 0, PacketFlag.NONE, anchor),
        *[Packet(StreamKind.LOWRES, k, 200 * k, PacketFlag.MOTION, bundle(b"l" * 20, b"m" * 9))
          for k in range(10)],
        Packet(StreamKind.MOTION, 1, 1990, PacketFlag.NONE, bytes([GROUP_TYPE]) + b"m" * 4),
        Packet(StreamKind.CONFIG, 1, 2000, PacketFlag.END, b"c" * 12),
    ]
    st = stream_stats(iter(packets))
    assert st["lowres"]["bits"] == 8 * 10 * 20
    assert st["motion"]["bits"] == 8 * (10 * (9 + 1) + 5)  # groups + their length prefixes
    assert st["identity"]["bits"] == 8 * (4000 + len(anchor))  # the anchor is one-time
    lowres_packets = sum(len(encode_packet(p)) for p in packets if p.kind is StreamKind.LOWRES)
    assert st["video"]["bits"] == 8 * (lowres_packets + len(encode_packet(packets[-2])))
