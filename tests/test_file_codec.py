"""File decoding keeps sound and picture in sync: a tone burst stays where it was sent."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from codec.bitstream.container import write_container
from codec.errors import CorruptError
from codec.file_codec import decode_file
from codec.receiver.registry import get_receiver
from codec.sender.sender import Sender
from codec.types import FaceClip


def burst_clip(n: int = 75, onset_s: float = 1.0) -> FaceClip:
    frames = np.full((n, 256, 256, 3), 100, np.uint8)
    frames[int(onset_s * 25):, 96:160, 96:160] = 230  # a flash at the same instant
    t = np.arange(n * 640) / 16000
    audio = np.where(t >= onset_s, 0.5 * np.sin(2 * np.pi * 440 * t), 0).astype(np.float32)
    return FaceClip(frames=frames, audio=audio)


def test_tone_burst_and_flash_stay_in_sync(tmp_path: Path) -> None:
    src, out = tmp_path / "sync.tc", tmp_path / "sync.mp4"
    write_container(src, Sender().encode_clip(burst_clip()), {})
    summary = decode_file(src, out, get_receiver("bicubic"))
    assert summary["frames"] == 75
    with av.open(str(out)) as c:
        sound = None
        for f in c.decode(audio=0):
            loud = np.flatnonzero(np.abs(f.to_ndarray()[0]) > 0.1)
            if loud.size:
                sound = float(f.pts * f.time_base) + loud[0] / f.sample_rate
                break
    with av.open(str(out)) as c:
        light = next(float(f.pts * f.time_base) for f in c.decode(video=0)
                     if f.to_ndarray(format="rgb24")[128, 128].mean() > 165)
    assert sound == pytest.approx(1.0, abs=0.02)
    # the 8x8 stream samples at 5 fps, so the flash shows within one low-res interval
    assert 0.8 <= light <= 1.2


def test_stream_without_pictures_is_a_named_error(tmp_path: Path) -> None:
    from codec.bitstream.packet import StreamKind

    packets = [p for p in Sender(with_audio=False).encode_clip(burst_clip(25))
               if p.kind is StreamKind.CONFIG]
    src = tmp_path / "empty.tc"
    write_container(src, packets, {})
    with pytest.raises(CorruptError):
        decode_file(src, tmp_path / "empty.mp4", get_receiver("bicubic"))
    assert not (tmp_path / "empty.mp4").exists() and not (tmp_path / "empty.mp4.part").exists()
