"""Load a data-set clip as the sender sees it: 256x256 25 fps canvas + 16 kHz audio.

Uses the sender's own ``codec.sender.canvas.load_face_clip`` when it is available (so the
training inputs are exactly what the receiver gets). Until it lands, a stand-in: one fixed
square head-and-shoulders crop around the median dlib face box of the clip, resampled to
25 fps by nearest timestamp.
"""

from __future__ import annotations

import importlib.util

import av
import dlib
import numpy as np
from PIL import Image

from codec.types import FaceClip

CANVAS = 256
FPS = 25.0


def sender_loader_available() -> bool:
    return importlib.util.find_spec("codec.sender.canvas") is not None


def load_clip(path: str, max_seconds: float | None) -> FaceClip:
    if sender_loader_available():
        from codec.sender.canvas import load_face_clip

        return load_face_clip(path, max_seconds=max_seconds)
    return _fallback_load(path, max_seconds)


def _decode(path: str, max_seconds: float | None) -> tuple[list[np.ndarray], list[float]]:
    frames: list[np.ndarray] = []
    times: list[float] = []
    with av.open(path) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        for fr in box.decode(stream):
            t = float(fr.time) if fr.time is not None else len(frames) / FPS
            if max_seconds is not None and t >= max_seconds:
                break
            img = fr.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            scale = 640.0 / max(h, w)
            if scale < 1.0:
                img = np.asarray(Image.fromarray(img).resize(
                    (int(round(w * scale)), int(round(h * scale))), Image.BILINEAR))
            frames.append(np.ascontiguousarray(img))
            times.append(t)
    return frames, times


def _read_audio(path: str, max_seconds: float | None) -> np.ndarray | None:
    try:
        with av.open(path) as box:
            if not box.streams.audio:
                return None
            res = av.AudioResampler(format="flt", layout="mono", rate=16000)
            chunks = []
            for fr in box.decode(box.streams.audio[0]):
                for out in res.resample(fr):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in res.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError:
        return None
    if not chunks:
        return None
    a = np.concatenate(chunks).astype(np.float32)
    if max_seconds is not None:
        a = a[: int(max_seconds * 16000)]
    return a


def _face_box(frames: list[np.ndarray]) -> tuple[float, float, float]:
    det = dlib.get_frontal_face_detector()
    boxes = []
    for img in frames[:: max(1, len(frames) // 12)]:
        rects = det(np.ascontiguousarray(img), 1)
        if rects:
            r = max(rects, key=lambda r: r.width() * r.height())
            boxes.append((r.center().x, r.center().y, max(r.width(), r.height())))
    if not boxes:
        h, w = frames[0].shape[:2]
        return w / 2, h / 2, min(h, w) / 2.2
    cx, cy, s = np.median(np.asarray(boxes, np.float64), axis=0)
    return float(cx), float(cy), float(s)


def _fallback_load(path: str, max_seconds: float | None) -> FaceClip:
    frames, times = _decode(path, max_seconds)
    if not frames:
        raise ValueError(f"no frames in {path}")
    cx, cy, s = _face_box(frames)
    side = 2.2 * s
    x0, y0 = cx - side / 2, cy - side / 2 + 0.1 * s
    n_out = int(np.floor(times[-1] * FPS)) + 1
    t_arr = np.asarray(times)
    out = np.empty((n_out, CANVAS, CANVAS, 3), np.uint8)
    for k in range(n_out):
        j = int(np.argmin(np.abs(t_arr - k / FPS)))
        im = Image.fromarray(frames[j]).crop(
            (int(round(x0)), int(round(y0)), int(round(x0 + side)), int(round(y0 + side))))
        out[k] = np.asarray(im.resize((CANVAS, CANVAS), Image.BILINEAR))
    return FaceClip(frames=out, fps=FPS, audio=_read_audio(path, max_seconds), source=path)
