"""A real 256x256, 25 fps face canvas for the receiver tests (skip when the data is absent)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from codec.data import data_dir
from codec.sender.downsample import box_downsample
from codec.sender.video_io import iter_video_frames
from codec.types import IdentityFrame, LowResFrame

ROOT = Path(__file__).resolve().parents[1]
DATA = data_dir()
# A tight 160x160 LRS2 face crop at 25 fps (val split): already a head-and-shoulders canvas.
CLIP = "clips/smeetrs__deep_avsr__audio__demo__00001.mp4"


@lru_cache(maxsize=2)
def canvas_frames(n: int = 40) -> np.ndarray:
    """The first n frames of the clip resized to 256x256 (read-only)."""
    path = DATA / CLIP
    if not path.exists():
        pytest.skip(f"shared data not found at {DATA}")
    frames = [
        cv2.resize(f.image, (256, 256), interpolation=cv2.INTER_CUBIC)
        for f in iter_video_frames(path, max_seconds=n / 25.0)
    ]
    out = np.stack(frames[:n])
    out.flags.writeable = False
    return out


def stream(n: int = 40, every: int = 5) -> tuple[IdentityFrame, list[LowResFrame]]:
    """Identity frame (canvas frame 0) and the 8x8 frames of every ``every``-th frame."""
    canvas = canvas_frames(n)
    identity = IdentityFrame(image=np.array(canvas[0]))
    lowres = [
        LowResFrame(box_downsample(canvas[k], 32), timestamp_ms=k * 40)
        for k in range(0, len(canvas), every)
    ]
    return identity, lowres


@lru_cache(maxsize=2)
def clip_audio(seconds: float) -> np.ndarray:
    """The clip's first seconds of speech, 16 kHz mono float32 (read-only)."""
    from codec.sender.video_io import read_audio

    canvas_frames(1)  # skips when the data is absent
    audio = read_audio(DATA / CLIP, max_seconds=seconds)
    assert audio is not None
    audio.flags.writeable = False
    return audio
