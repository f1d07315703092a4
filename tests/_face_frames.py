"""Real face frames for the metric tests, read from the shared data set (skip when absent)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from codec.data import data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = data_dir()

# Tight 160x160 LRS2 face crops (val split), two different people.
CLIP_A = "clips/smeetrs__deep_avsr__audio__demo__00001.mp4"
CLIP_B = "clips/Hangz-nju-cuhk__Talking-Face_PC-AVS__misc__Audio_Source__00015.mp4"


@lru_cache(maxsize=4)
def face_frames(clip: str, n: int = 30) -> np.ndarray:
    """The first n frames of a data clip, resized to 256x256 RGB uint8."""
    path = DATA / clip
    if not path.exists():
        pytest.skip(f"shared data not found at {DATA}")
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            img = frame.to_image().convert("RGB").resize((256, 256), Image.BICUBIC)
            frames.append(np.asarray(img))
            if len(frames) == n:
                break
    return np.stack(frames)
