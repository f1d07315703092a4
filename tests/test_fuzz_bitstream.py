"""Property tests: hostile bytes never raise anything but BitstreamError, mutations of
valid packets are rejected or parse consistently."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.bitstream.config import StreamConfig, decode_config, encode_config
from codec.bitstream.container import container_bytes, parse_container
from codec.bitstream.identity_codec import decode_identity
from codec.bitstream.lowres_codec import LowResDecoder, LowResParams
from codec.bitstream.packet import (
    Packet,
    PacketFlag,
    StreamKind,
    decode_datagram,
    decode_packet,
    encode_packet,
    parse_packets,
)
from codec.bitstream.redundancy import split_previous, with_previous
from codec.bitstream.stream import StreamDecoder
from codec.errors import BitstreamError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

packets = st.builds(
    Packet,
    kind=st.sampled_from(list(StreamKind)),
    seq=st.integers(0, 65535),
    timestamp_ms=st.integers(0, 2**32 - 1),
    flags=st.sampled_from([PacketFlag.NONE, PacketFlag.INTRA, PacketFlag.REFRESH,
                           PacketFlag.END, PacketFlag.INTRA | PacketFlag.END,
                           PacketFlag.REDUNDANT, PacketFlag.REDUNDANT | PacketFlag.INTRA,
                           PacketFlag.REDUNDANT | PacketFlag.MOTION]),
    payload=st.binary(max_size=300),
)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_packet_parsers(data: bytes) -> None:
    for parse in (decode_datagram, parse_packets, decode_packet):
        try:
            parse(data)
        except BitstreamError:
            pass


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_container_and_payload_parsers(data: bytes) -> None:
    for parse in (parse_container, decode_config, decode_identity):
        try:
            parse(data)
        except BitstreamError:
            pass
    try:
        parse_container(b"TKCF\x01\x00" + data)
    except BitstreamError:
        pass
    for intra in (True, False):
        dec = LowResDecoder(LowResParams())
        try:
            dec.decode(data, intra=True)
            out = dec.decode(data, intra=intra)
            assert out.shape == (8, 8, 3)
        except BitstreamError:
            pass


@FUZZ
@given(packets)
def test_packet_round_trip(packet: Packet) -> None:
    assert decode_datagram(encode_packet(packet)) == packet


@FUZZ
@given(packets, st.data())
def test_mutated_packets_rejected_or_consistent(packet: Packet, data: st.DataObject) -> None:
    raw = bytearray(encode_packet(packet))
    n_changes = data.draw(st.integers(1, 4))
    for _ in range(n_changes):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    try:
        parsed, end = decode_packet(mutated)
    except BitstreamError:
        return
    assert encode_packet(parsed) == mutated[:end]  # what parses re-encodes byte for byte


@FUZZ
@given(st.lists(packets, max_size=6), st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_containers_rejected_or_consistent(plist: list[Packet], pos: int,
                                                   value: int) -> None:
    raw = bytearray(container_bytes(plist, {"k": 1}))
    raw[pos % len(raw)] = value
    try:
        meta, parsed = parse_container(bytes(raw))
    except BitstreamError:
        return
    assert container_bytes(parsed, meta) == bytes(raw) or meta != {"k": 1}


@FUZZ
@given(st.lists(packets, max_size=12))
def test_stream_decoder_survives_any_packets(plist: list[Packet]) -> None:
    dec = StreamDecoder()
    dec.push(Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, encode_config(StreamConfig())))
    for p in plist:
        if p.kind is StreamKind.AUDIO:
            continue  # Opus bytes are the audio module's to fuzz
        ev = dec.push(p)
        for f in ev.lowres:
            assert f.pixels.shape == (8, 8, 3) and np.isfinite(f.pixels).all()
    dec.flush()


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 65535), st.integers(0, 2**32 - 1),
       st.integers(0, 31))
def test_arbitrary_redundant_lowres_payloads(data: bytes, seq: int, ts: int, flags: int) -> None:
    """The REDUNDANT extension (issue 16): any payload splits or raises BitstreamError, and
    a stream decoder fed it (after a valid stream start) survives."""
    packet = Packet(StreamKind.LOWRES, seq, ts, PacketFlag(flags) | PacketFlag.REDUNDANT, data)
    try:
        own, prev = split_previous(packet)
    except BitstreamError:
        pass
    else:
        assert not own.flags & PacketFlag.REDUNDANT and own.seq == seq
        if prev is not None:
            assert prev.seq == (seq - 1) % 65536 and 0 <= prev.timestamp_ms <= ts
    dec = StreamDecoder()
    dec.push(Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, encode_config(StreamConfig())))
    for p in (packet, with_previous(Packet(StreamKind.LOWRES, (seq + 1) % 65536, ts,
                                           PacketFlag.NONE, data), packet)):
        for f in dec.push(p).lowres:
            assert f.pixels.shape == (8, 8, 3) and np.isfinite(f.pixels).all()
    dec.flush()
