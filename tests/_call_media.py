"""Fake-camera media for the call tests: a ../shared/data clip as Y4M video + WAV audio."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from codec.data import data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = data_dir()
CALL_CLIP = DATA / "clips" / "OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


def write_y4m(src: Path, dst: Path, size: int = 320, seconds: float = 6.0) -> Path:
    """The clip's first ``seconds`` as 25 fps 4:2:0 Y4M (Chromium's fake camera format)."""
    with av.open(str(src)) as container, dst.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size} H{size} F25:1 Ip A1:1 C420jpeg\n".encode())
        n = 0
        for frame in container.decode(video=0):
            yuv = frame.reformat(width=size, height=size, format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())
            n += 1
            if n >= seconds * 25:
                break
    return dst


def write_wav(src: Path, dst: Path, seconds: float = 6.0) -> Path:
    from codec.sender.video_io import read_audio

    pcm = read_audio(src, max_seconds=seconds)
    pcm = np.zeros(16000, np.float32) if pcm is None else pcm
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return dst
