"""The sender: packet order and kinds, the low-res grid, CONFIG resends, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from codec.bitstream.config import AudioCodec, decode_config
from codec.bitstream.packet import PacketFlag, StreamKind
from codec.bitstream.stream import StreamDecoder, StreamEvents
from codec.errors import InputError
from codec.sender.downsample import box_downsample
from codec.sender.sender import Sender, SenderConfig
from codec.types import FaceClip


def canvas_clip(n: int, with_audio: bool = True) -> FaceClip:
    yy, xx = np.mgrid[0:256, 0:256] / 256
    frames = []
    for t in range(n):
        blob = np.exp(-((xx - 0.5 - 0.05 * np.sin(t / 4)) ** 2 + (yy - 0.45) ** 2) / 0.05)
        frames.append(np.stack([40 + 180 * blob, 30 + 140 * blob, 30 + 110 * blob], axis=-1))
    audio = None
    if with_audio:
        t = np.arange(n * 640) / 16000
        audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2)
        audio = audio.astype(np.float32)
    return FaceClip(frames=np.array(frames, dtype=np.uint8), audio=audio)


def test_encode_clip_packet_plan() -> None:
    clip = canvas_clip(125)  # 5 s
    packets = Sender(SenderConfig(config_period_s=4.0)).encode_clip(clip)
    kinds = [p.kind for p in packets]
    assert kinds[:2] == [StreamKind.CONFIG, StreamKind.IDENTITY]
    lowres = [p for p in packets if p.kind is StreamKind.LOWRES]
    assert [p.timestamp_ms for p in lowres] == list(range(0, 5000, 200))  # 5 fps grid
    assert [p.seq for p in lowres] == list(range(25))
    assert [i for i, p in enumerate(lowres) if p.flags & PacketFlag.INTRA] == [0, 10, 20]
    configs = [p for p in packets if p.kind is StreamKind.CONFIG]
    assert [p.timestamp_ms for p in configs] == [0, 4000, 5000]  # start, resend, END
    assert configs[-1].flags & PacketFlag.END and packets[-1] is configs[-1]
    audio = [p for p in packets if p.kind is StreamKind.AUDIO]
    assert 82 <= len(audio) <= 85  # one 60 ms Opus packet each (default audio_frame_ms)
    assert all(a.seq == i for i, a in enumerate(audio))


def test_packets_decode_back_to_the_stream() -> None:
    clip = canvas_clip(50)
    packets = Sender().encode_clip(clip)
    dec, ev = StreamDecoder(), StreamEvents()
    for p in packets:
        ev.extend(dec.push(p))
    ev.extend(dec.flush())
    assert ev.ended and ev.config is not None and ev.config.audio_codec is AudioCodec.OPUS
    assert len(ev.identities) == 1
    assert np.abs(ev.identities[0].image.astype(int) - clip.frames[0]).mean() < 3
    assert len(ev.lowres) == 10
    for f in ev.lowres:
        truth = box_downsample(clip.frames[f.timestamp_ms // 40], 32)
        assert np.sqrt(np.mean((f.pixels - truth) ** 2)) < 3.5
    heard = sum(len(c.samples) for c in ev.audio)
    assert abs(heard - len(clip.audio)) <= 16000 * 0.12  # up to two 60 ms frames of padding


@pytest.mark.parametrize("fps,expected", [(10, 10), (25, 25)])
def test_other_lowres_rates(fps: int, expected: int) -> None:
    sender = Sender(SenderConfig(lowres_size=16, lowres_fps=fps), with_audio=False)
    clip = canvas_clip(25, with_audio=False)
    packets = sender.encode_clip(clip)
    assert decode_config(packets[0].payload).lowres.size == 16
    assert sum(p.kind is StreamKind.LOWRES for p in packets) == expected


def test_streaming_api_guards() -> None:
    sender = Sender(with_audio=False)
    img = canvas_clip(1, with_audio=False).frames[0]
    with pytest.raises(RuntimeError):
        sender.push_canvas_frame(img, 0)
    with pytest.raises(InputError):
        sender.start(np.zeros((2160, 3840, 3), np.uint8))  # a 4K frame is not a canvas
    sender = Sender(with_audio=False)
    sender.start(img)
    assert sender.push_audio(np.zeros(320, np.float32), 0) == []
    with pytest.raises(InputError):
        sender.push_canvas_frame(img.astype(np.float32), 0)
    refresh = sender.refresh_identity(img, 1000)
    assert refresh[1].flags & PacketFlag.REFRESH and refresh[1].payload[0] == 1
    with pytest.raises(ValueError):
        Sender(SenderConfig(lowres_size=12))


def test_requested_intra_comes_next() -> None:
    clip = canvas_clip(30, with_audio=False)
    sender = Sender(with_audio=False)
    sender.start(clip.frames[0])
    flags = []
    for k, img in enumerate(clip.frames):
        if k == 12:
            sender.request_intra()
        flags += [bool(p.flags & PacketFlag.INTRA) for p in sender.push_canvas_frame(img, 40 * k)
                  if p.kind is StreamKind.LOWRES]
    assert [i for i, f in enumerate(flags) if f] == [0, 3]  # frame 15 (t=600 ms) is intra
