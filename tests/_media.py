"""Small media files made on the fly with PyAV, and the shared data folder, for sender tests."""

from __future__ import annotations

import csv
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from codec.data import data_dir

REPO = Path(__file__).resolve().parents[1]


def manifest() -> list[dict[str, str]]:
    path = data_dir() / "manifest.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def clip_path(match: Callable[[dict[str, str]], bool]) -> Path | None:
    """The first manifest clip for which ``match(row)`` holds, if the data is present."""
    for row in manifest():
        if match(row):
            p = data_dir() / row["file"]
            if p.is_file():
                return p
    return None


def write_video(
    path: Path,
    frame_at: Callable[[int], np.ndarray],
    n_frames: int,
    fps: Fraction,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 48000,
    codec: str = "libx264",
    display_rotation: int = 0,
    gop: int | None = None,
) -> Path:
    """Encode frames ``frame_at(k)`` (RGB uint8, even sizes) at ``fps``, with mono audio;
    ``display_rotation`` (counter-clockwise degrees) goes into the display matrix."""
    with av.open(str(path), "w") as out:
        first = frame_at(0)
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height = first.shape[1], first.shape[0]
        vs.pix_fmt = "yuv420p"
        vs.time_base = 1 / fps
        vs.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        if gop is not None:
            vs.codec_context.gop_size = gop
        if display_rotation:
            vs.set_display_rotation(display_rotation)
        a_s = None
        if audio is not None:
            a_s = out.add_stream("aac", rate=audio_rate)
            a_s.layout = "mono"
        for k in range(n_frames):
            img = first if k == 0 else frame_at(k)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = k
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if a_s is not None and audio is not None:
            n = 1024
            x = np.asarray(audio, np.float32)
            for i in range(0, len(x), n):
                block = np.zeros(n, np.float32)
                block[: len(x[i:i + n])] = x[i:i + n]
                af = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
                af.sample_rate = audio_rate
                af.pts = i
                for p in a_s.encode(af):
                    out.mux(p)
            for p in a_s.encode(None):
                out.mux(p)
    return path


def noise_frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def ramp_frame(w: int, h: int, k: int = 0) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    img = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), (k * 7) % 256, np.float32)], axis=2)
    return img.astype(np.uint8)


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            return np.ascontiguousarray(f.to_ndarray(format="rgb24"))
    raise ValueError(f"{path}: no frames")
