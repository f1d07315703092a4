"""Offline crop planning: the crop box of every frame of a whole clip from its detections.

``plan_crop_track`` is what ``canvas.py`` uses for files. Knowing the whole clip lets it do
better than the live ``FaceTracker``:
- a lone detection between two jumps is a false positive and is dropped;
- positions get a running median over 5 detections, sizes over ``size_median`` (dlib's HOG
  pyramid quantises sizes in ~20 % steps);
- frames between detections are interpolated (short gaps) or hold the last face;
- the same hysteresis follower as live (``CropFollower``) decides when to move; each
  detected cut snaps at the cut itself;
- a forward-backward low-pass rounds off the start and end of every move, without lag.

``canvas_jitter`` is the stability figure the tests and the benchmark report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from codec import CANVAS_SIZE
from codec.sender.face_detector import FaceBox
from codec.sender.face_tracker import (
    CropBox,
    CropFollower,
    TrackerConfig,
    clamp_box,
    is_cut,
    target_crop,
    unclamped_crop,
)


def _segments(faces: Sequence[FaceBox | None], cfg: TrackerConfig) -> list[list[int]]:
    """Frame indices of detections, split where the face jumps (cut / another person).

    A lone detection between two jumps is a false positive, not a scene: it is dropped and
    the detections around it are joined again.
    """

    def split(idx: list[int]) -> list[list[int]]:
        segs: list[list[int]] = []
        prev: FaceBox | None = None
        for i in idx:
            f = faces[i]
            assert f is not None
            if prev is None or is_cut(unclamped_crop(prev, cfg), unclamped_crop(f, cfg), cfg):
                segs.append([])
            segs[-1].append(i)
            prev = f
        return segs

    segs = split([i for i, f in enumerate(faces) if f is not None])
    if len(segs) > 1 and any(len(s) < 2 for s in segs):
        kept = [i for s in segs if len(s) >= 2 for i in s]
        segs = split(kept) if kept else [max(segs, key=len)]
    return segs


def _median(x: np.ndarray, k: int = 5) -> np.ndarray:
    if len(x) < 3:
        return x
    r = min(k // 2, (len(x) - 1) // 2)
    pad = np.pad(x, (r, r), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * r + 1), axis=-1)


def _zero_phase(x: np.ndarray, tau: float) -> np.ndarray:
    """Forward-backward first-order low-pass (no lag, no overshoot)."""
    if tau <= 0 or len(x) < 2:
        return x
    a = 1.0 - math.exp(-1.0 / tau)
    y = x.astype(np.float64).copy()
    for order in (range(1, len(y)), range(len(y) - 2, -1, -1)):
        step = 1 if order.step == 1 else -1
        for i in order:
            y[i] = y[i - step] + a * (y[i] - y[i - step])
    return y


def plan_crop_track(faces: Sequence[FaceBox | None], width: int, height: int,
                    cfg: TrackerConfig | None = None, *, max_gap: int = 12) -> np.ndarray | None:
    """Crop boxes (T, 3) as (cx, cy, side) for a whole clip, from per-frame detections.

    ``faces[i]`` is the face detected on frame i (None where none was looked for or found).
    Returns None when the clip has no face at all.
    """
    cfg = cfg or TrackerConfig()
    n = len(faces)
    segs = _segments(faces, cfg)
    if not segs:
        return None
    # Face track per frame: outlier-free (running median) detections, interpolated across
    # short gaps, held across long ones and before a cut.
    track = np.full((n, 3), np.nan)
    seg_start = np.zeros(n, bool)
    for seg in segs:
        idx = np.array(seg)
        seen = [f for f in (faces[i] for i in seg) if f is not None]
        vals = np.array([[f.cx, f.cy, f.size] for f in seen])
        # HOG sizes come from a pyramid with ~20 % steps: the size gets a long median.
        vals = np.stack([_median(vals[:, 0]), _median(vals[:, 1]),
                         _median(vals[:, 2], cfg.size_median)], axis=1)
        track[idx] = vals
        seg_start[idx[0]] = True
        for a, b, va, vb in zip(idx[:-1], idx[1:], vals[:-1], vals[1:]):
            if 1 < b - a <= max_gap:
                w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
                track[a + 1:b] = (1 - w) * va + w * vb
    first = int(np.flatnonzero(~np.isnan(track[:, 0]))[0])
    track[:first] = track[first]
    for i in range(first + 1, n):  # hold the last face where it is not seen
        if np.isnan(track[i, 0]):
            track[i] = track[i - 1]
    follower = CropFollower(cfg)
    boxes = np.zeros((n, 3))
    for i in range(n):
        cx, cy, size = track[i]
        fb = FaceBox(cx - size / 2, cy - size / 2, size, size)
        box = follower.step(target_crop(fb, width, height, cfg),
                            snap=bool(seg_start[i]) and i > first,
                            confirm_cuts=False)
        assert box is not None
        boxes[i] = (box.cx, box.cy, box.side)
    # Zero-phase smoothing between snaps rounds off the start and end of each move.
    jumps = [i for i in range(1, n) if is_cut(CropBox(*boxes[i - 1]), CropBox(*boxes[i]), cfg)]
    cuts = [0, *jumps, n]
    for a, b in zip(cuts[:-1], cuts[1:]):
        for k in range(3):
            boxes[a:b, k] = _zero_phase(boxes[a:b, k], cfg.smooth_frames)
    for i in range(n):
        c = clamp_box(CropBox(*boxes[i]), width, height)
        boxes[i] = (c.cx, c.cy, c.side)
    return boxes


def canvas_jitter(boxes_xys: np.ndarray, size: int = CANVAS_SIZE) -> float:
    """Mean frame-to-frame movement of the crop centre, in canvas pixels per frame.

    ``boxes_xys`` is (T, 3) as (x0, y0, side), the layout of ``FaceClip.boxes``.
    """
    b = np.asarray(boxes_xys, dtype=np.float64)
    if len(b) < 2:
        return 0.0
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 2] / 2
    d = np.hypot(np.diff(cx), np.diff(cy)) * size / b[1:, 2]
    return float(d.mean())
