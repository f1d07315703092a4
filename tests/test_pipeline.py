"""Packets -> receiver -> frames + audio, through the real sender and bitstream decoders."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from codec.bitstream.identity_codec import ImageFormat
from codec.bitstream.packet import Packet, PacketFlag, StreamKind
from codec.receiver.pipeline import assemble_audio, decode_packets
from codec.receiver.registry import get_receiver
from codec.sender.sender import Sender
from codec.types import AudioChunk, FaceClip
from tests._canvas_clip import canvas_frames, clip_audio

N_FRAMES = 40  # 1.6 s


def _packets() -> tuple[np.ndarray, np.ndarray, list[Packet]]:
    canvas = np.array(canvas_frames(N_FRAMES))
    audio = np.array(clip_audio(N_FRAMES / 25))
    packets = Sender().encode_clip(FaceClip(frames=canvas, audio=audio))
    return canvas, audio, packets


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_clip_round_trip_through_the_bitstream() -> None:
    canvas, audio, packets = _packets()
    video = decode_packets(packets, get_receiver("backproject"))
    assert [f.timestamp_ms for f in video.frames] == [40 * k for k in range(N_FRAMES)]
    assert video.images.shape == (N_FRAMES, 256, 256, 3) and video.images.dtype == np.uint8
    # quantised 8x8 + coded identity frame: close to the canvas, far better than grey
    quality = np.mean([_psnr(f.image, c) for f, c in zip(video.frames, canvas, strict=True)])
    assert quality > 22.0
    assert video.stats["corrupt_packets"] == 0 and video.stats["placeholder_frames"] == 0
    # speech comes back aligned with the video (Opus at 8 kbit/s: correlated, not equal)
    assert video.audio_start_ms == 0 and len(video.audio) == N_FRAMES * 640
    a, b = video.audio[1600:-1600], audio[1600 : len(video.audio) - 1600]
    assert np.corrcoef(a, b)[0, 1] > 0.5


def test_loss_duplicates_reordering_and_corruption_degrade_gracefully() -> None:
    canvas, _, packets = _packets()
    rng = np.random.default_rng(3)
    messy: list[Packet] = []
    for p in packets:
        if p.kind is StreamKind.LOWRES and p.seq % 3 == 1:
            continue  # a third of the low-res packets lost
        if p.kind is StreamKind.AUDIO and rng.random() < 0.1:
            p = Packet(p.kind, p.seq, p.timestamp_ms, p.flags, rng.bytes(len(p.payload)))
        messy.append(p)
        if rng.random() < 0.2:
            messy.append(p)  # duplicated
    for i in range(1, len(messy) - 1, 7):
        messy[i], messy[i + 1] = messy[i + 1], messy[i]  # reordered
    video = decode_packets(messy, get_receiver("align"))
    assert [f.timestamp_ms for f in video.frames] == [40 * k for k in range(N_FRAMES)]
    assert video.stats["lowres_skipped"] > 0
    quality = np.mean([_psnr(f.image, c) for f, c in zip(video.frames, canvas, strict=True)])
    assert quality > 20.0
    assert np.all(np.isfinite(video.audio)) and len(video.audio) == N_FRAMES * 640


def test_lost_identity_frame_gives_placeholder_frames() -> None:
    _, _, packets = _packets()
    kept = [p for p in packets if p.kind is not StreamKind.IDENTITY]
    video = decode_packets(kept, get_receiver("backproject"))
    assert len(video.frames) == N_FRAMES
    assert video.stats["placeholder_frames"] == N_FRAMES


def test_no_video_packets_gives_no_frames_and_audio_only() -> None:
    _, _, packets = _packets()
    audio_only = [p for p in packets if p.kind in (StreamKind.AUDIO, StreamKind.CONFIG)]
    video = decode_packets(audio_only, get_receiver("bicubic"))
    assert video.frames == [] and 0 < len(video.audio) <= 2 * N_FRAMES * 640
    assert decode_packets([], get_receiver("bicubic")).frames == []


def test_end_packet_sets_the_duration() -> None:
    _, _, packets = _packets()
    end = packets[-1]
    assert end.flags & PacketFlag.END
    for end_ms, n_frames in [(1500, 38), (2000, 50)]:  # the last 8x8 frame is at 1400 ms
        moved = [*packets[:-1], Packet(end.kind, end.seq, end_ms, end.flags, end.payload)]
        for low_latency in (False, True):
            video = decode_packets(moved, get_receiver("identity", low_latency=low_latency))
            assert len(video.frames) == n_frames
            assert len(video.audio) == n_frames * 640


def test_assemble_audio_places_chunks_and_fills_gaps() -> None:
    ones = np.ones(160, np.float32)
    out = assemble_audio([AudioChunk(ones, 0), AudioChunk(2 * ones, 20), AudioChunk(ones, 10**9)],
                         0, 40)
    assert len(out) == 640
    assert np.all(out[:160] == 1) and np.all(out[160:320] == 0) and np.all(out[320:480] == 2)
    assert np.all(out[480:] == 0)


def test_hostile_identity_frame_is_skipped_not_fatal() -> None:
    _, _, packets = _packets()
    buf = io.BytesIO()  # a well-formed JPEG of the wrong size
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(buf, format="JPEG")
    payload = bytes([0, int(ImageFormat.JPEG)]) + buf.getvalue()
    hostile = [
        Packet(p.kind, p.seq, p.timestamp_ms, p.flags, payload)
        if p.kind is StreamKind.IDENTITY
        else p
        for p in packets
    ]
    video = decode_packets(hostile, get_receiver("align"))
    assert len(video.frames) == N_FRAMES
    assert video.stats["placeholder_frames"] == N_FRAMES
    assert video.stats["rejected_inputs"] + video.stats["corrupt_packets"] >= 1
