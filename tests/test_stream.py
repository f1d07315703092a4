"""Packets -> events: 10% loss, duplicates, reordering, corrupt payloads, demultiplexing."""

from __future__ import annotations

import random

import numpy as np

from codec.bitstream.config import AudioCodec, StreamConfig, encode_config
from codec.bitstream.identity_codec import encode_identity
from codec.bitstream.lowres_codec import LowResEncoder, LowResParams
from codec.bitstream.packet import Packet, PacketFlag, StreamKind
from codec.bitstream.redundancy import with_previous
from codec.bitstream.stream import LowResStreamDecoder, StreamDecoder
from codec.types import IdentityFrame
from tests.test_lowres_codec import moving_face

PARAMS = LowResParams()


def lowres_packets(n: int, seq0: int = 0) -> tuple[list[Packet], list[np.ndarray]]:
    enc = LowResEncoder(PARAMS)
    packets, recon = [], []
    for i, f in enumerate(moving_face(n)):
        payload, intra = enc.encode(f)
        flags = PacketFlag.INTRA if intra else PacketFlag.NONE
        packets.append(Packet(StreamKind.LOWRES, (seq0 + i) % 65536, 200 * i, flags, payload))
        recon.append(enc.reconstruction())
    return packets, recon


def run(dec: LowResStreamDecoder, packets: list[Packet]) -> list:
    out = []
    for p in packets:
        out += dec.push(p)
    return out + dec.flush()


def test_in_order_stream_decodes_every_frame_exactly() -> None:
    packets, recon = lowres_packets(30)
    frames = run(LowResStreamDecoder(PARAMS), packets)
    assert [f.timestamp_ms for f in frames] == [200 * i for i in range(30)]
    assert all(np.array_equal(f.pixels, recon[i]) for i, f in enumerate(frames))
    # each frame says the quantiser it was coded with (the receiver's back-projection uses it)
    assert {f.quant for f in frames} == {PARAMS.quant}
    coarse = LowResParams(quant=9.5)
    enc = LowResEncoder(coarse)
    payload, _ = enc.encode(moving_face(1)[0])
    got = LowResStreamDecoder(coarse).push(Packet(StreamKind.LOWRES, 0, 0, PacketFlag.INTRA, payload))
    assert [f.quant for f in got] == [9.5]


def test_ten_percent_loss_skips_until_next_intra_then_exact() -> None:
    packets, recon = lowres_packets(200)
    rng = random.Random(1234)
    lost = {p.seq for p in packets if rng.random() < 0.10}
    assert 10 <= len(lost) <= 30
    dec = LowResStreamDecoder(PARAMS)
    frames = run(dec, [p for p in packets if p.seq not in lost])
    got = {f.timestamp_ms // 200: f for f in frames}
    for i in range(200):
        gop_start = i - i % PARAMS.intra_period
        broken = any(j in lost for j in range(gop_start, i + 1))
        if broken:
            assert i not in got  # skipped, never a wrong frame
        else:
            assert np.array_equal(got[i].pixels, recon[i])  # exact from the next intra on
    assert dec.stats.decoded == len(got) and dec.stats.skipped > 0


def test_duplicates_and_reordering() -> None:
    packets, recon = lowres_packets(60, seq0=65530)  # also crosses the seq wrap
    noisy = list(packets)
    for k in range(0, 60, 10):  # swap inter frames inside each GOP, delay one by three
        noisy[k + 2], noisy[k + 3] = noisy[k + 3], noisy[k + 2]
        noisy.insert(k + 8, noisy.pop(k + 5))
    noisy += [packets[3], packets[17], packets[40]]
    dec = LowResStreamDecoder(PARAMS)
    frames = run(dec, noisy)
    assert [f.timestamp_ms for f in frames] == [200 * i for i in range(60)]
    assert all(np.array_equal(f.pixels, recon[i]) for i, f in enumerate(frames))
    assert dec.stats.duplicates == 3


def test_intra_frame_is_decoded_at_once_after_a_loss() -> None:
    packets, recon = lowres_packets(25)
    dec = LowResStreamDecoder(PARAMS)
    for p in packets[:8]:
        dec.push(p)
    out = dec.push(packets[10])  # 8 and 9 lost: the intra frame must not wait for them
    assert [f.timestamp_ms for f in out] == [2000]
    assert np.array_equal(out[0].pixels, recon[10])
    assert dec.push(packets[9]) == []  # overtaken by the intra frame: dropped as late


def test_random_jitter_stays_exact_and_ordered() -> None:
    packets, recon = lowres_packets(100)
    rng = random.Random(5)
    noisy = sorted(packets, key=lambda p: p.seq + rng.uniform(-2.5, 2.5))
    frames = run(LowResStreamDecoder(PARAMS), noisy)
    times = [f.timestamp_ms for f in frames]
    assert times == sorted(times) and len(times) >= 80
    assert all(np.array_equal(f.pixels, recon[f.timestamp_ms // 200]) for f in frames)


def test_corrupt_payload_is_skipped_not_fatal() -> None:
    packets, recon = lowres_packets(25)
    bad = Packet(StreamKind.LOWRES, packets[4].seq, packets[4].timestamp_ms, packets[4].flags,
                 b"\xff" * 40)
    frames = run(LowResStreamDecoder(PARAMS), packets[:4] + [bad] + packets[5:])
    got = {f.timestamp_ms // 200 for f in frames}
    assert {0, 1, 2, 3, 10, 24} <= got
    assert all(np.array_equal(f.pixels, recon[f.timestamp_ms // 200])
               for f in frames if f.timestamp_ms // 200 >= 10)


def test_stream_decoder_demultiplexes_and_waits_for_config() -> None:
    config = StreamConfig(lowres=PARAMS, audio_codec=AudioCodec.NONE, audio_bitrate=0)
    img = np.zeros((256, 256, 3), np.uint8)
    img[64:192, 64:192] = 200
    identity = Packet(StreamKind.IDENTITY, 0, 0, PacketFlag.NONE,
                      encode_identity(IdentityFrame(img)))
    cfg = Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, encode_config(config))
    lows, _ = lowres_packets(12)
    dec = StreamDecoder()
    assert dec.push(lows[0]).lowres == []  # no CONFIG yet: cannot decode
    ev = dec.push(cfg)
    assert ev.config == config
    assert len(dec.push(identity).identities) == 1
    assert dec.push(identity).identities == []  # same refresh id: duplicate
    n = sum(len(dec.push(p).lowres) for p in lows[1:])
    n += len(dec.flush().lowres)
    assert n == 2  # frames 1..9 lost their intra (sent before CONFIG); 10 and 11 decode
    assert dec.waiting_for_config == 1


def _decode_with_loss(packets: list[Packet], lost: set[int]) -> tuple[StreamDecoder, list]:
    config = StreamConfig(lowres=PARAMS, audio_codec=AudioCodec.NONE, audio_bitrate=0)
    dec = StreamDecoder(reorder_window=1)  # as on a live link
    dec.push(Packet(StreamKind.CONFIG, 0, 0, PacketFlag.NONE, encode_config(config)))
    frames = []
    for p in packets:
        if p.seq not in lost:
            frames += dec.push(p).lowres
    return dec, frames + dec.flush().lowres


def test_redundant_copy_recovers_single_losses_that_plain_packets_lose() -> None:
    """Every 4th 8x8 packet dropped (never two in a row): without the copy each loss costs
    the frames up to the next intra frame; with it (issue 16) every frame decodes, exactly."""
    plain, recon = lowres_packets(40)
    redundant = [with_previous(p, plain[i - 1] if i else None) for i, p in enumerate(plain)]
    lost = {s for s in range(40) if s % 4 == 2}
    _, old = _decode_with_loss(plain, lost)
    dec, new = _decode_with_loss(redundant, lost)
    assert len(old) <= 12  # intra frames 0, 10, 20, 30 and the few before each loss
    assert len(new) == 40 and dec.recovered == len(lost)
    assert [f.timestamp_ms for f in new] == [200 * i for i in range(40)]
    assert all(np.array_equal(f.pixels, recon[f.timestamp_ms // 200]) for f in new)
    # Two in a row: the first is gone for good, the stream waits for the next intra frame.
    dec, burst = _decode_with_loss(redundant, {12, 13})
    assert len(burst) == 40 - 8 and dec.recovered == 1


def test_redundant_copy_of_a_received_packet_is_ignored_and_motion_groups_once() -> None:
    """The copy of a packet that did arrive is not decoded again; a duplicate's bundled
    motion group does not reach the code's decoder (it would stop the code)."""
    from codec.bitstream.redundancy import split_previous

    plain, _ = lowres_packets(5)
    p = with_previous(plain[3], plain[2])
    own, prev = split_previous(p)
    assert own == plain[3] and prev == plain[2]
    assert split_previous(with_previous(plain[3], plain[1])) == (plain[3], None)  # not adjacent
    _, frames = _decode_with_loss([with_previous(q, plain[i - 1] if i else None)
                                   for i, q in enumerate(plain)], set())
    assert len(frames) == 5


def test_live_sender_sends_the_copy_after_a_loss_report_only() -> None:
    """The copy costs ~1.4 kbit/s: a live sender adds it for ``redundancy_hold_s`` after
    the receiver reports a loss (``request_intra``), not on a link that loses nothing."""
    from dataclasses import replace

    from codec.sender.sender import Sender, SenderConfig

    config = replace(SenderConfig.live(), motion=False, redundancy_hold_s=1.0)
    sender = Sender(config, with_audio=False)
    frame = np.full((256, 256, 3), 120, np.uint8)
    sender.start(frame)

    def flags(t0: int, n: int) -> list[bool]:
        packets = [p for k in range(n) for p in sender.push_canvas_frame(frame, t0 + 40 * k)
                   if p.kind is StreamKind.LOWRES]
        return [bool(p.flags & PacketFlag.REDUNDANT) for p in packets]

    assert not any(flags(0, 25))  # no loss reported: no copy
    sender.request_intra()
    assert all(flags(1000, 25))  # the next second: every packet carries its predecessor
    assert not any(flags(2200, 25))  # hold over
